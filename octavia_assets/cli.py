"""`octavia dub VIDEO --to pt[,es...] [--out DIR]`: the same path as the upload sensor, run in-process.

Registers the video in the media store, adds its partition, then materializes the three jobs
(ingest per video, dub per language, deliver) on the local Dagster instance, skipping stages
already materialized with the current code version, and copies the results to --out.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path


def _fail(reason: str) -> int:
    print(f"octavia: error: {reason}", file=sys.stderr)
    return 1


def _stage_plan(instance, job, asset_graph, partition_key: str) -> list:
    """Assets of ``job`` to (re)materialize for the partition, plus their downstream: missing ones,
    ones made by another code/model version, and ones older than an upstream materialization."""
    from dagster._core.definitions.partitions.context import partition_loading_context
    from .automation import topological_order
    keys = topological_order(asset_graph, job.asset_layer.selected_asset_keys)
    todo: set = set()
    with partition_loading_context(dynamic_partitions_store=instance):
        for key in keys:
            if key in todo:
                continue
            latest = _latest_materialization(instance, key, partition_key)
            behind = latest is None or (latest.event_log_entry.asset_materialization.tags or {}).get(
                "dagster/code_version") != asset_graph.get(key).code_version
            for parent in asset_graph.get(key).parent_keys:
                if behind:
                    break
                for parent_pk in asset_graph.get_parent_partition_keys_for_child(
                        partition_key, parent, key).partitions_subset.get_partition_keys():
                    upstream = _latest_materialization(instance, parent, parent_pk)
                    if upstream is not None and upstream.storage_id > latest.storage_id:
                        behind = True
                        break
            if behind:
                todo.add(key)
                todo |= _descendants(asset_graph, key) & set(keys)
    return [k for k in keys if k in todo]


def _topological(asset_graph, job) -> list:
    from .automation import topological_order
    return topological_order(asset_graph, job.asset_layer.selected_asset_keys)


def _latest_materialization(instance, key, partition_key: str):
    import dagster as dg
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition_key]), limit=1).records
    return records[0] if records else None


def _descendants(asset_graph, key) -> set:
    seen, stack = set(), [key]
    while stack:
        for child in asset_graph.get(stack.pop()).child_keys:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _execute(job, instance, partition_key: str, selection: list, label: str) -> None:
    from .automation import QUIET_CONSOLE
    if not selection:
        print(f"  {label}: up to date, skipped", file=sys.stderr)
        return
    print(f"  {label}: {', '.join(k.to_user_string() for k in selection)}", file=sys.stderr, flush=True)
    result = job.execute_in_process(
        instance=instance, partition_key=partition_key, asset_selection=selection, raise_on_error=False,
        run_config=QUIET_CONSOLE,
        tags={"octavia/trigger": "cli"})
    if not result.success:
        from .jobs import failure_summary
        raise RuntimeError(f"{failure_summary(result)} (run {result.run_id})")


def dub(video: Path, languages: list[str], out_dir: Path | None, voice_sample: Path | None = None,
        sample_speaker: str = "main") -> int:
    if not video.is_file():
        return _fail(f"{video}: no such file")
    if voice_sample is not None and not voice_sample.is_file():
        return _fail(f"{voice_sample}: no such file (--voice-sample)")
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
    from .resources.media import sha256_file

    from .delivery import target_languages_of_catalogue
    if target_languages_of_catalogue() != languages:
        # Partitions are fixed when the definitions are imported (a long-lived process that
        # already loaded them with another catalogue cannot switch).
        return _fail(f"definitions were loaded for {target_languages_of_catalogue()}, not {languages}")
    store = defs.resources["media_store"]
    key = UPLOAD_PREFIX + video.name
    # Same bytes under the same name: keep the stored copy, so the video keeps its partition key.
    if not store.exists(key) or store.sha256(key) != sha256_file(video):
        store.put_file(video, key)
    video_key = register_upload(store, store.stat(key))
    new_sample = False
    if voice_sample is not None:
        # The user's own voice for a speaker, stored only sealed; a new one re-chooses the voices.
        from .resources.voice_samples import sample_key, store_user_sample
        skey = sample_key(video_key, sample_speaker)
        before = store.read_bytes(skey) if store.exists(skey) else None
        try:
            store_user_sample(store, video_key, voice_sample, sample_speaker)
        except ValueError as e:
            return _fail(str(e))
        new_sample = store.read_bytes(skey) != before
    started = time.perf_counter()
    print(f"octavia: dubbing {video.name} into {', '.join(languages)} (video {video_key}, home {home})",
          file=sys.stderr, flush=True)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", [video_key])
        graph = defs.resolve_asset_graph()
        try:
            ingest = defs.resolve_job_def("ingest_job")
            plan = _stage_plan(instance, ingest, graph, video_key)
            if new_sample:
                voices_key = dg.AssetKey("voices")
                again = {voices_key} | _descendants(graph, voices_key)
                plan = [k for k in _topological(graph, ingest) if k in set(plan) | again]
            _execute(ingest, instance, video_key, plan, "ingest")
            dub_job = defs.resolve_job_def("dub_job")
            for lang in languages:
                pk = video_language_key(video_key, lang)
                _execute(dub_job, instance, pk, _stage_plan(instance, dub_job, graph, pk), f"dub {lang}")
            deliver = defs.resolve_job_def("deliver_job")
            _execute(deliver, instance, video_key, _stage_plan(instance, deliver, graph, video_key), "deliver")
        except RuntimeError as e:
            return _fail(f"dub of {video.name} failed: {e}")
    results = [output_key(video_key, f"{video_key}.dubbed.mp4"), output_key(video_key, "quality_report.json"),
               output_key(video_key, "quality_report.html")]
    out_dir = out_dir or Path("out")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = video.stem
    names = [f"{stem}.{'-'.join(languages)}.mp4", f"{stem}.quality_report.json", f"{stem}.quality_report.html"]
    # Subtitles: SRT and WebVTT for the source language and every target.
    source_lang = store.read_json(f"derived/{video_key}/transcript/transcript.json")["language"]
    for sub_key in sorted(o.key for o in store.list_objects(output_key(video_key, "subtitles") + "/")):
        lang, ext = sub_key.rsplit(".", 2)[-2:]
        if lang in languages or lang == source_lang:
            results.append(sub_key)
            names.append(f"{stem}.{lang}.{ext}")
    print(f"octavia: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    for key, name in zip(results, names):
        dest = out_dir / name
        with store.open_local(key) as src:
            tmp = dest.with_name(f".{dest.name}.part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        kind = {"mp4": "final video", "srt": "subtitles", "vtt": "subtitles"}.get(name.rsplit(".", 1)[-1], "quality report")
        print(f"{kind}: {dest.resolve()}")
    return 0


def redub(stages: list[str] | None, batch: int) -> int:
    """The re-dub schedule's work, in-process: partitions behind their stage's current code version,
    re-materialized in bounded batches; then the automation conditions settle the downstream."""
    from .settings import prepare_home
    home = prepare_home()
    import warnings

    import dagster as dg
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from .automation import partitions_behind, settle
    from .definitions import defs, stage_assets

    by_name = {a.key.to_user_string(): a for a in stage_assets}
    unknown = sorted(set(stages or []) - set(by_name))
    if unknown:
        return _fail(f"unknown stage(s) {unknown}; stages: {', '.join(sorted(by_name))}")
    chosen = [by_name[s] for s in stages] if stages else [a for a in stage_assets if a.partitions_def is not None]
    job = defs.resolve_implicit_global_asset_job_def()
    cursor = home / "automation.cursor"
    with dg.DagsterInstance.get() as instance:
        try:
            # Bring the automation state up to now first, so the re-dubs below count as new changes.
            settle(defs, instance, cursor)
            for asset in chosen:
                current = asset.code_versions_by_key[asset.key]
                for pk in partitions_behind(instance, asset, current)[:batch]:
                    _execute(job, instance, pk, [asset.key], f"redub {asset.key.to_user_string()} [{pk}]")
            done = settle(defs, instance, cursor,
                          on_run=lambda key, pk: print(f"  then {key.to_user_string()} [{pk}]", file=sys.stderr,
                                                        flush=True))
        except RuntimeError as e:
            return _fail(f"re-dub failed: {e}")
    print(f"octavia: re-dub done ({done} downstream partition(s) re-materialized)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="octavia", description="Dub videos into other languages (Dagster assets).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dub", help="dub one video end to end on the local instance")
    p.add_argument("video", type=Path)
    p.add_argument("--to", default=None, help="target languages, comma-separated (default: OCTAVIA_TARGET_LANGUAGES or pt)")
    p.add_argument("--out", type=Path, default=None, help="folder for the final video and report (default ./out)")
    p.add_argument("--voice-sample", type=Path, default=None,
                   help="your own voice (any audio file, a few seconds or more) for the main speaker; stored sealed")
    p.add_argument("--sample-speaker", default="main",
                   help="the speaker the voice sample is for: 'main' (most speech, default) or an id like SPEAKER_01")
    u = sub.add_parser("upload", help="put a video in the media store's uploads/ (OCTAVIA_STORAGE) for the sensor")
    u.add_argument("file", type=Path)
    u.add_argument("--tier", choices=["free", "pro"], default="free", help="run priority tier (pro runs first)")
    u.add_argument("--presign", action="store_true", help="print a presigned PUT URL for a client instead")
    u.add_argument("--expires", type=int, default=None, help="URL lifetime in seconds (default 24 h)")
    r = sub.add_parser("url", help="download URLs of a video's final video and quality report")
    r.add_argument("video", help="the video's partition key")
    r.add_argument("--expires", type=int, default=None, help="URL lifetime in seconds (default 24 h)")
    e = sub.add_parser("eval", help="measure stages against the ground truth in ../shared/media")
    e.add_argument("what", choices=["listen"])
    e.add_argument("--media", default=None, help="media kit folder (default ../shared/media)")
    e.add_argument("--json", default=None, help="also write the tables as JSON to this file")
    rd = sub.add_parser("redub", help="re-run, on this machine, every partition made by an older model, "
                                       "then whatever its new output changes downstream")
    rd.add_argument("--stage", action="append", default=None,
                    help="only this stage (repeatable; default: every stage with a model version)")
    rd.add_argument("--batch", type=int, default=50, help="at most this many partitions per stage (default 50)")
    m = sub.add_parser("metrics", help="serve Prometheus metrics (stage durations, failures, queue depth) "
                                       "of the instance at $DAGSTER_HOME")
    m.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    m.add_argument("--port", type=int, default=9464, help="port of /metrics (default 9464)")
    md = sub.add_parser("models", help="production engines' weights in the model directory (OCTAVIA_MODEL_DIR)")
    msub = md.add_subparsers(dest="models_command", required=True)
    mf = msub.add_parser("fetch", help="download models (needs internet; default: the production set)")
    mf.add_argument("model", nargs="*", help="model ids (see `octavia models list`)")
    mf.add_argument("--all", action="store_true", help="every model in the registry")
    mf.add_argument("--force", action="store_true", help="download again even when present")
    msub.add_parser("list", help="which models are present, their size and licence")
    args = parser.parse_args(argv)
    if args.command == "models":
        from .resources.model_fetch import main as models_main
        if args.models_command == "list":
            return models_main([], listing=True)
        return models_main(args.model, fetch_all=args.all, force=args.force)
    if args.command == "metrics":
        from .observability import serve_metrics
        from .settings import prepare_home
        prepare_home()
        return serve_metrics(args.host, args.port)
    if args.command == "redub":
        return redub(args.stage, args.batch)
    if args.command in ("upload", "url"):
        from .platform import cli_upload, cli_url
        try:
            return (cli_upload(args.file, args.tier, args.presign, args.expires) if args.command == "upload"
                    else cli_url(args.video, args.expires))
        except (OSError, ValueError, NotImplementedError) as e:
            return _fail(str(e))
    if args.command == "eval":
        from .evaluation import main as evaluate
        return evaluate([args.what] + [f for k in ("media", "json") if getattr(args, k)
                                       for f in (f"--{k}", getattr(args, k))])
    if args.command == "dub":
        from .settings import target_languages
        if args.to:
            os.environ["OCTAVIA_TARGET_LANGUAGES"] = args.to
        try:
            langs = target_languages()
        except ValueError as e:
            return _fail(str(e))
        return dub(args.video, langs, args.out, args.voice_sample, args.sample_speaker)
    return 2


if __name__ == "__main__":
    sys.exit(main())
