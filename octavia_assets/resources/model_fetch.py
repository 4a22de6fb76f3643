"""``octavia models fetch`` / ``octavia models list``: fill the model directory on a machine with internet.

Each model is downloaded into a hidden temporary folder beside its final place, checked (every file
the registry names, demucs checksums), then renamed into place, so an engine never sees a half
downloaded model and a failed re-fetch leaves the previous copy intact.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .model_dir import MODELS, ModelSpec, missing_files, model_dir, model_path

MANIFEST = ".octavia-model.json"


class FetchError(RuntimeError):
    pass


def _go_online() -> None:
    """Undo model_dir.go_offline for this process: fetching is the one place that needs the hub."""
    os.environ["HF_HUB_OFFLINE"] = "0"
    os.environ["TRANSFORMERS_OFFLINE"] = "0"
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None and hasattr(hub, "HF_HUB_OFFLINE"):
        hub.HF_HUB_OFFLINE = False


def _hf_snapshot(spec: ModelSpec, dest: Path) -> None:
    _go_online()
    from huggingface_hub import snapshot_download
    snapshot_download(repo_id=spec.repo, revision=spec.revision, local_dir=str(dest),
                      allow_patterns=list(spec.allow_patterns) or None,
                      token=os.environ.get("HF_TOKEN") or None)


def _download_url(url: str, dest: Path, timeout_s: float = 60.0) -> None:
    """Stream ``url`` to ``dest`` (1 MiB blocks, so multi-GB files never sit in memory)."""
    req = urllib.request.Request(url, headers={"User-Agent": "octavia-models-fetch"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)


def _check_demucs_checksum(path: Path) -> None:
    """demucs names checkpoints ``<sig>-<first hex digits of sha256>.th``: verify them here, not at load."""
    stem = path.stem
    if path.suffix != ".th" or "-" not in stem:
        return
    expected = stem.rsplit("-", 1)[1]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if not h.hexdigest().startswith(expected):
        raise FetchError(f"{path.name}: sha256 {h.hexdigest()[:len(expected)]} != {expected} (corrupt download)")


def fetch(model_id: str, force: bool = False, log=print) -> Path:
    """Download one registry model into the model directory (atomically); returns its folder."""
    if model_id not in MODELS:
        raise FetchError(f"unknown model {model_id!r}; known: {', '.join(MODELS)}")
    spec = MODELS[model_id]
    target = model_path(model_id)
    if target.is_dir() and not missing_files(model_id) and not force:
        log(f"{model_id}: present in {target}, skipped (use --force to fetch again)")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}.partial-", dir=target.parent))
    try:
        if spec.repo:
            log(f"{model_id}: downloading {spec.repo} from the Hugging Face hub"
                + (" (gated: accept its terms on huggingface.co and set HF_TOKEN)" if spec.gated else ""))
            _hf_snapshot(spec, tmp)
            shutil.rmtree(tmp / ".cache", ignore_errors=True)   # huggingface_hub's local_dir bookkeeping
        for name, url in spec.urls.items():
            log(f"{model_id}: downloading {url}")
            _download_url(url, tmp / name)
            _check_demucs_checksum(tmp / name)
        for name, text in spec.inline.items():
            (tmp / name).write_text(text)
        absent = [f for f in spec.files if not any((tmp / alt).is_file() for alt in f.split("|"))]
        if absent:
            raise FetchError(f"{model_id}: the download lacks {', '.join(absent)}")
        files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(
            {"model_id": model_id, "repo": spec.repo, "revision": spec.revision, "urls": spec.urls,
             "licence": spec.licence, "files": files, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                  time.gmtime())}, indent=1))
        # Swap in: the old copy (if any) moves aside first and is deleted only after the rename.
        old = None
        if target.exists():
            old = target.with_name(f".{model_id}.old-{os.getpid()}")
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(files.values())
    log(f"{model_id}: {len(files)} files, {size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s -> {target}")
    log(f"{model_id}: licence {spec.licence}" + (f"; {spec.note}" if spec.note else ""))
    return target


def list_models() -> list[dict]:
    """One row per registry model: present / incomplete / absent, size on disk, licence."""
    rows = []
    for model_id, spec in MODELS.items():
        root = model_path(model_id)
        if not root.is_dir():
            state, size = "absent", 0
        else:
            missing = missing_files(model_id)
            state = "present" if not missing else f"incomplete (missing {', '.join(missing)})"
            size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        rows.append({"model": model_id, "stage": spec.stage, "state": state, "bytes": size,
                     "licence": spec.licence, "source": spec.repo or "urls", "default": spec.default})
    return rows


def main(argv_models: list[str], fetch_all: bool = False, force: bool = False, listing: bool = False) -> int:
    """The ``octavia models`` subcommands; returns the exit status."""
    if listing:
        print(f"model directory: {model_dir()} (OCTAVIA_MODEL_DIR)")
        for r in list_models():
            print(f"  {r['model']:<34} {r['stage']:<12} {r['state']:<10} {r['bytes'] / 1e6:>9.1f} MB  "
                  f"{r['licence']}")
        return 0
    names = list(MODELS) if fetch_all else (argv_models or [m for m, s in MODELS.items() if s.default])
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        print(f"octavia: error: unknown model(s) {unknown}; known: {', '.join(MODELS)}", file=sys.stderr)
        return 1
    failed = []
    for name in names:
        try:
            fetch(name, force=force)
        except Exception as e:  # noqa: BLE001 - report every model, then fail
            failed.append(name)
            print(f"octavia: error: {name}: {type(e).__name__}: {e}", file=sys.stderr)
    if failed:
        print(f"octavia: {len(failed)} model(s) not fetched: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
