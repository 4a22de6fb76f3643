"""What the production GPU engines share: their separate environment, device choice and versions.

The production engines (pyannote.audio, WhisperX, Coqui XTTS) need torch 2.8 with torchaudio, which
cannot live beside the offline kit's torch 2.13 CPU build (no torchaudio exists for it). They run in
their own virtualenv, the ``[gpu]`` environment (``requirements-gpu.txt``, ``scripts/install_gpu.sh``
-> ``.venv-gpu``). Their modules import here without those packages: the heavy import happens on
first use, and a missing package names the environment to install.
"""
from __future__ import annotations

import importlib

from .asr import ModelUnavailable
from .model_dir import model_dir, weights_fingerprint

GPU_ENV_HINT = ("needs the [gpu] environment: pip install -r requirements-gpu.txt "
                "(scripts/install_gpu.sh makes .venv-gpu)")


class GpuPackageMissing(ModelUnavailable):
    """A production engine's package is not installed in this environment."""


def import_gpu_package(module: str, engine: str):
    """``importlib.import_module(module)``, or :class:`GpuPackageMissing` saying which environment has it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise GpuPackageMissing(f"engine {engine!r} {GPU_ENV_HINT}; importing {module} failed: {e}") from e


def torch_device(device: str | None = None) -> str:
    """``device`` if given, else ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device:
        return device
    torch = importlib.import_module("torch")
    return "cuda" if torch.cuda.is_available() else "cpu"


def models_version(engine: str, pinned: str, model_ids: list[str] | tuple[str, ...]) -> str:
    """``engine(pinned package)@model:fingerprint+...``: computed from the model directory listing
    alone (names and sizes), so it is the same with or without the package installed."""
    parts = [f"{m}:{weights_fingerprint(m)}" for m in model_ids]
    return f"{engine}({pinned})@" + "+".join(parts)


def present_models(prefix: str) -> list[str]:
    """Model ids in the model directory whose folder name starts with ``prefix`` (sorted)."""
    root = model_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix))
