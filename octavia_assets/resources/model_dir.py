"""The local model directory: production engines load weights from here only, never from a hub.

Layout: one subfolder per model id under ``OCTAVIA_MODEL_DIR`` (default ``$DAGSTER_HOME/models``),
holding that model's files exactly as its upstream repository names them::

    $OCTAVIA_MODEL_DIR/
      htdemucs_ft/                      htdemucs_ft.yaml + 4 x <sig>-<checksum>.th (demucs local repo)
      nllb-200-distilled-600M/          config.json, tokenizer files, weights (Hugging Face layout)
      pyannote-speaker-diarization-3.1/ config.yaml ...
      whisper-large-v3-turbo/           CTranslate2 weights (faster-whisper layout)
      wav2vec2-<lang>/                  alignment model per language
      xtts_v2/                          config.json, model.pth, vocab.json, ...

``octavia models fetch [MODEL ...]`` fills it on a machine with internet access; ``octavia models list``
shows what is present. Engines call :func:`require` before importing their library, which also turns
the Hugging Face libraries offline (they read these variables when they are first imported).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

FETCH_HINT = "octavia models fetch"


def go_offline() -> None:
    """Forbid hub downloads in this process (huggingface_hub / transformers read these at import)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None and hasattr(hub, "HF_HUB_OFFLINE"):
        hub.HF_HUB_OFFLINE = True   # already imported: its constant was frozen from the old value


go_offline()


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and which files an engine needs.

    ``files``: paths inside the model's folder that must exist; ``"a|b"`` means either one (for example
    safetensors or the legacy pickle). ``repo``: a Hugging Face repo id (downloaded with
    ``allow_patterns``); ``urls``: file name -> URL for models published outside the hub; ``inline``:
    small files written from this registry (demucs bag definitions). ``default``: fetched by a bare
    ``octavia models fetch``.
    """
    repo: str | None
    files: tuple[str, ...]
    licence: str
    stage: str
    urls: dict[str, str] = field(default_factory=dict)
    allow_patterns: tuple[str, ...] = ()
    revision: str | None = None
    gated: bool = False
    note: str = ""
    inline: dict[str, str] = field(default_factory=dict)
    default: bool = False


_DEMUCS = "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"


def _demucs(name: str, sigs: list[str], bag: str, default: bool = False) -> ModelSpec:
    """A demucs "local repo": ``<sig>-<sha256 prefix>.th`` checkpoints and the ``<name>.yaml`` bag."""
    weights = tuple(f"{s}.th" for s in sigs)
    return ModelSpec(repo=None, files=(f"{name}.yaml",) + weights, urls={f: _DEMUCS + f for f in weights},
                     inline={f"{name}.yaml": bag}, licence="MIT", stage="separation", default=default,
                     note="Demucs v4 (Meta); checkpoints from dl.fbaipublicfiles.com")


def _wav2vec2(repo: str, licence: str, weights: str = "pytorch_model.bin", default: bool = False) -> ModelSpec:
    """``weights``: the one weights file to fetch (some repos hold both formats; the jonatasgrosman ones
    also hold a language_model/ folder the aligner never reads)."""
    return ModelSpec(repo=repo, stage="asr", licence=licence, default=default,
                     files=("config.json", "preprocessor_config.json", "vocab.json",
                            "model.safetensors|pytorch_model.bin"),
                     allow_patterns=("*.json", weights),
                     note="word alignment (WhisperX)")


MODELS: dict[str, ModelSpec] = {
    # bag definitions as shipped in demucs 4.1.0 (demucs/remote/*.yaml)
    "htdemucs": _demucs("htdemucs", ["955717e8-8726e21a"], "models: ['955717e8']\n"),
    "htdemucs_ft": _demucs("htdemucs_ft", ["f7e0c4bc-ba3fe64a", "d12395a8-e57c48e6", "92cfc3b6-ef3bcb9c",
                                           "04573f0d-f3cf25b2"],
                           "models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']\n"
                           "weights: [\n  [1., 0., 0., 0.],\n  [0., 1., 0., 0.],\n  [0., 0., 1., 0.],\n"
                           "  [0., 0., 0., 1.],\n]\n", default=True),
    "htdemucs_6s": _demucs("htdemucs_6s", ["5c90dfd2-34c22ccb"], "models: ['5c90dfd2']\n"),
    "nllb-200-distilled-600M": ModelSpec(
        repo="facebook/nllb-200-distilled-600M", stage="translation", licence="CC-BY-NC-4.0 (non-commercial)",
        default=True,
        files=("config.json", "model.safetensors|pytorch_model.bin", "tokenizer.json"),
        allow_patterns=("*.json", "*.safetensors", "pytorch_model.bin", "sentencepiece.bpe.model")),
    "nllb-200-distilled-1.3B": ModelSpec(
        repo="facebook/nllb-200-distilled-1.3B", stage="translation", licence="CC-BY-NC-4.0 (non-commercial)",
        files=("config.json", "model.safetensors|pytorch_model.bin", "tokenizer.json"),
        allow_patterns=("*.json", "*.safetensors", "pytorch_model.bin", "sentencepiece.bpe.model")),
    "pyannote-speaker-diarization-3.1": ModelSpec(
        default=True,
        repo="pyannote/speaker-diarization-3.1", stage="diarization", licence="MIT (gated: accept terms on HF)",
        files=("config.yaml",), allow_patterns=("config.yaml",), gated=True,
        note="its config.yaml names pyannote-segmentation-3.0 and wespeaker-voxceleb-resnet34-LM"),
    "pyannote-segmentation-3.0": ModelSpec(
        default=True,
        repo="pyannote/segmentation-3.0", stage="diarization", licence="MIT (gated: accept terms on HF)",
        files=("pytorch_model.bin",), allow_patterns=("pytorch_model.bin", "config.yaml"), gated=True),
    "wespeaker-voxceleb-resnet34-LM": ModelSpec(
        default=True,
        repo="pyannote/wespeaker-voxceleb-resnet34-LM", stage="diarization", licence="CC-BY-4.0",
        files=("pytorch_model.bin",), allow_patterns=("pytorch_model.bin", "config.yaml")),
    "whisper-large-v3-turbo": ModelSpec(
        default=True,
        repo="mobiuslabsgmbh/faster-whisper-large-v3-turbo", stage="asr", licence="MIT",
        files=("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "vocabulary.json"),
        allow_patterns=("model.bin", "*.json", "vocabulary.*"),   # faster_whisper.utils.download_model's set
        note="CTranslate2 conversion of openai/whisper-large-v3-turbo (faster-whisper / WhisperX)"),
    "wav2vec2-en": _wav2vec2("facebook/wav2vec2-base-960h", "Apache-2.0", "model.safetensors", default=True),
    "wav2vec2-pt": _wav2vec2("jonatasgrosman/wav2vec2-large-xlsr-53-portuguese", "Apache-2.0"),
    "wav2vec2-es": _wav2vec2("jonatasgrosman/wav2vec2-large-xlsr-53-spanish", "Apache-2.0"),
    "wav2vec2-fr": _wav2vec2("jonatasgrosman/wav2vec2-large-xlsr-53-french", "Apache-2.0"),
    "wav2vec2-de": _wav2vec2("jonatasgrosman/wav2vec2-large-xlsr-53-german", "Apache-2.0"),
    "wav2vec2-it": _wav2vec2("jonatasgrosman/wav2vec2-large-xlsr-53-italian", "Apache-2.0"),
    "xtts_v2": ModelSpec(
        default=True,
        repo="coqui/XTTS-v2", stage="tts", licence="Coqui Public Model Licence 1.0 (non-commercial)",
        files=("config.json", "model.pth", "vocab.json", "speakers_xtts.pth"),
        # what coqui-tts itself fetches for inference; dvae.pth / mel_stats.pth are for fine-tuning only
        allow_patterns=("config.json", "model.pth", "vocab.json", "speakers_xtts.pth", "hash.md5"),
        note="CPML: outputs may not be used commercially"),
}


class ModelMissing(FileNotFoundError):
    """A production engine's weights are not in the model directory."""


def model_dir() -> Path:
    """``OCTAVIA_MODEL_DIR``, or ``models/`` inside the Octavia home."""
    raw = os.environ.get("OCTAVIA_MODEL_DIR")
    if raw:
        return Path(raw).expanduser().resolve()
    from ..settings import octavia_home
    return octavia_home() / "models"


def model_path(model_id: str) -> Path:
    if "/" in model_id or model_id in ("", ".", ".."):
        raise ValueError(f"model id {model_id!r} must be a plain folder name (see octavia models list)")
    return model_dir() / model_id


def missing_files(model_id: str, files: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The entries of ``files`` (default: the registry's) absent from the model's folder."""
    if files is None:
        files = MODELS[model_id].files if model_id in MODELS else ()
    root = model_path(model_id)
    return [f for f in files if not any((root / alt).is_file() for alt in f.split("|"))]


def require(model_id: str, files: list[str] | tuple[str, ...] | None = None) -> Path:
    """The model's folder, after checking that every file the engine needs is there.

    Raises :class:`ModelMissing` naming the first missing file and the command that fetches it.
    """
    go_offline()
    root = model_path(model_id)
    known = model_id in MODELS
    fetch = f"`{FETCH_HINT} {model_id}`" if known else "copy the model's files there"
    if not root.is_dir():
        raise ModelMissing(f"model {model_id!r} is not in the model directory: {root} does not exist; "
                           f"run {fetch} on a machine with internet access, or point OCTAVIA_MODEL_DIR at "
                           f"a directory holding {model_id}/")
    missing = missing_files(model_id, files)
    if missing:
        name = " or ".join(missing[0].split("|"))
        raise ModelMissing(f"model {model_id!r} is incomplete: {root / missing[0].split('|')[0]} is missing "
                           f"({name}{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}); "
                           f"run {fetch} on a machine with internet access")
    return root


def weights_fingerprint(model_id: str, patterns: tuple[str, ...] = ("*",)) -> str:
    """A version for the model's files without reading them: sha256 of names and sizes (12 hex).

    Cheap enough for engine_version at definitions load; a re-fetched model with other files or
    sizes gets a new version. ``absent`` when the folder does not exist.
    """
    import hashlib
    root = model_path(model_id)
    if not root.is_dir():
        return "absent"
    h = hashlib.sha256()
    for pattern in patterns:
        for p in sorted(root.rglob(pattern)):
            if p.is_file() and not p.name.startswith("."):
                h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\n".encode())
    return h.hexdigest()[:12]
