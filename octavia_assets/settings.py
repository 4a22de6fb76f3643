"""Run-time settings read from the environment, with the embedded defaults."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Languages the offline kit can dub into: the translation chain has a pair from English and a
#: TTS voice speaks them. pt uses a neural model (best measured); the others are rule-based.
OFFLINE_TARGETS = ("pt", "es", "ca", "fr", "it")
DEFAULT_TARGETS = ("pt",)


def octavia_home() -> Path:
    """The one home for the embedded default: Dagster instance (SQLite) and media store."""
    return Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".octavia").resolve()


def prepare_home() -> Path:
    """Create the home, point DAGSTER_HOME at it and link the repo's dagster.yaml into it."""
    home = octavia_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    repo_config = REPO_ROOT / "dagster.yaml"
    if not config.exists() and repo_config.is_file():
        config.symlink_to(repo_config)
    return home


def media_root() -> Path:
    return Path(os.environ.get("OCTAVIA_MEDIA_ROOT") or octavia_home() / "media").resolve()


def target_languages() -> list[str]:
    """The target-language catalogue: every video is dubbed into each of these."""
    raw = os.environ.get("OCTAVIA_TARGET_LANGUAGES", ",".join(DEFAULT_TARGETS))
    langs = [x.strip().lower() for x in raw.split(",") if x.strip()]
    if not langs:
        raise ValueError("OCTAVIA_TARGET_LANGUAGES is empty: name at least one target language, e.g. 'pt'")
    bad = [x for x in langs if not x.isalpha() or len(x) not in (2, 3)]
    if bad:
        raise ValueError(f"OCTAVIA_TARGET_LANGUAGES: {bad} are not ISO 639 codes (expected e.g. 'pt,es')")
    return list(dict.fromkeys(langs))


def max_upload_seconds() -> float:
    return float(os.environ.get("OCTAVIA_MAX_DURATION_S", 4 * 3600))


def max_upload_bytes() -> int:
    """Largest accepted upload, checked from the store's metadata before anything is downloaded."""
    return int(os.environ.get("OCTAVIA_MAX_UPLOAD_BYTES", 20 * 1024 ** 3))
