"""`octavia dub VIDEO --to pt[,es...] [--out DIR]`: the same path as the upload sensor, run in-process.

Registers the video in the media store, adds its partition, then materializes the three jobs
(ingest per video, dub per language, deliver) on the local Dagster instance, skipping stages
already materialized with the current code version, and copies the results to --out.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path


def _fail(reason: str) -> int:
    print(f"octavia: error: {reason}", file=sys.stderr)
    return 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _stage_plan(instance, job, asset_graph, partition_key: str) -> list:
    """Assets of ``job`` missing for the partition or made by other code/model versions, plus their downstream."""
    import dagster as dg
    keys = _topological(asset_graph, job.asset_layer.selected_asset_keys)
    todo: set = set()
    for key in keys:
        if key in todo:
            continue
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition_key]), limit=1).records
        made_by = (records[0].event_log_entry.asset_materialization.tags or {}).get("dagster/code_version") \
            if records else None
        if made_by is None or made_by != asset_graph.get(key).code_version:
            todo.add(key)
            todo |= _descendants(asset_graph, key) & set(keys)
    return [k for k in keys if k in todo]


def _descendants(asset_graph, key) -> set:
    seen, stack = set(), [key]
    while stack:
        for child in asset_graph.get(stack.pop()).child_keys:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _topological(asset_graph, keys) -> list:
    order: list = []

    def visit(k):
        if k in order or k not in keys:
            return
        for parent in asset_graph.get(k).parent_keys:
            visit(parent)
        order.append(k)

    for k in sorted(keys):
        visit(k)
    return order


def _execute(job, instance, partition_key: str, selection: list, label: str) -> None:
    import dagster as dg
    if not selection:
        print(f"  {label}: up to date, skipped", file=sys.stderr)
        return
    print(f"  {label}: {', '.join(k.to_user_string() for k in selection)}", file=sys.stderr, flush=True)
    result = job.execute_in_process(
        instance=instance, partition_key=partition_key, asset_selection=selection, raise_on_error=False,
        # Dagster's own console output stays quiet; failures are summarised below, in full in the UI.
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        tags={"octavia/trigger": "cli"})
    if not result.success:
        reasons = []
        for event in result.all_events:
            if event.event_type == dg.DagsterEventType.STEP_FAILURE:
                user = event.step_failure_data.user_failure_data
                msg = user.description if user and user.description else _root_cause(event.step_failure_data.error)
                reasons.append(f"{event.step_key}: {msg}")
        raise RuntimeError("; ".join(reasons) + f" (run {result.run_id})" if reasons else
                           f"{label} failed (run {result.run_id})")


def _root_cause(error) -> str:
    """The innermost error of a Dagster step failure, as 'Type: message' on one line."""
    while error.cause is not None:
        error = error.cause
    lines = error.message.strip().splitlines()
    return lines[-1] if lines else error.cls_name or "unknown error"


def dub(video: Path, languages: list[str], out_dir: Path | None) -> int:
    if not video.is_file():
        return _fail(f"{video}: no such file")
    os.environ["OCTAVIA_TARGET_LANGUAGES"] = ",".join(languages)
    os.environ.setdefault("OCTAVIA_PROGRESS", "1")
    from .settings import prepare_home, target_languages
    try:
        target_languages()
    except ValueError as e:
        return _fail(str(e))
    home = prepare_home()

    import warnings

    import dagster as dg
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from .common import output_key
    from .definitions import defs
    from .partitions import video_language_key
    from .registry import UPLOAD_PREFIX, register_upload

    from .delivery import target_languages_of_catalogue
    if target_languages_of_catalogue() != languages:
        # Partitions are fixed when the definitions are imported (a long-lived process that
        # already loaded them with another catalogue cannot switch).
        return _fail(f"definitions were loaded for {target_languages_of_catalogue()}, not {languages}")
    store = defs.resources["media_store"]
    key = UPLOAD_PREFIX + video.name
    # Same bytes under the same name: keep the stored copy, so the video keeps its partition key.
    if not store.exists(key) or store.sha256(key) != _sha256(video):
        store.put_file(video, key)
    video_key = register_upload(store, store.stat(key))
    started = time.perf_counter()
    print(f"octavia: dubbing {video.name} into {', '.join(languages)} (video {video_key}, home {home})",
          file=sys.stderr, flush=True)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", [video_key])
        graph = defs.resolve_asset_graph()
        try:
            ingest = defs.resolve_job_def("ingest_job")
            _execute(ingest, instance, video_key, _stage_plan(instance, ingest, graph, video_key), "ingest")
            dub_job = defs.resolve_job_def("dub_job")
            for lang in languages:
                pk = video_language_key(video_key, lang)
                _execute(dub_job, instance, pk, _stage_plan(instance, dub_job, graph, pk), f"dub {lang}")
            deliver = defs.resolve_job_def("deliver_job")
            _execute(deliver, instance, video_key, _stage_plan(instance, deliver, graph, video_key), "deliver")
        except RuntimeError as e:
            return _fail(f"dub of {video.name} failed: {e}")
    results = [output_key(video_key, f"{video_key}.dubbed.mp4"), output_key(video_key, "quality_report.json")]
    out_dir = out_dir or Path("out")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = video.stem
    names = [f"{stem}.{'-'.join(languages)}.mp4", f"{stem}.quality_report.json"]
    print(f"octavia: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    for key, name in zip(results, names):
        dest = out_dir / name
        with store.open_local(key) as src:
            tmp = dest.with_name(f".{dest.name}.part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        print(f"{'final video' if name.endswith('.mp4') else 'quality report'}: {dest.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="octavia", description="Dub videos into other languages (Dagster assets).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dub", help="dub one video end to end on the local instance")
    p.add_argument("video", type=Path)
    p.add_argument("--to", default=None, help="target languages, comma-separated (default: OCTAVIA_TARGET_LANGUAGES or pt)")
    p.add_argument("--out", type=Path, default=None, help="folder for the final video and report (default ./out)")
    args = parser.parse_args(argv)
    if args.command == "dub":
        from .settings import target_languages
        if args.to:
            os.environ["OCTAVIA_TARGET_LANGUAGES"] = args.to
        try:
            langs = target_languages()
        except ValueError as e:
            return _fail(str(e))
        return dub(args.video, langs, args.out)
    return 2


if __name__ == "__main__":
    sys.exit(main())
