"""Where assembled model files are cached (weights come from installed packages, never a hub)."""
from __future__ import annotations

import os
from pathlib import Path


def model_cache_dir(name: str) -> Path:
    """A writable folder for one engine's assembled weights: $OCTAVIA_MODEL_CACHE/<name>."""
    root = Path(os.environ.get("OCTAVIA_MODEL_CACHE") or Path.home() / ".cache" / "octavia")
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path
