"""One "deployment" of the code location, for tests/test_redub.py: run in its own process so the
definitions load with this phase's configuration (target languages, engine versions), as a code
server reload would. Drives declarative automation until it settles (octavia_assets.automation.settle) and prints per-asset counts.

    python -m tests.redub_phase --home DIR --langs pt [--register VIDEO] [--bump tts] [--rerun stems]
"""
import argparse
import json
import os
import sys
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--langs", default="pt")
    ap.add_argument("--register", default=None, help="video file to register as an upload first")
    ap.add_argument("--bump", default="", help="comma-separated engine stages whose version changes")
    ap.add_argument("--rerun", default="", help="asset to re-materialize by hand first (every video)")
    args = ap.parse_args()
    home = Path(args.home)
    os.environ.update({"DAGSTER_HOME": str(home), "OCTAVIA_MEDIA_ROOT": str(home / "media"),
                       "OCTAVIA_TARGET_LANGUAGES": args.langs})
    warnings.simplefilter("ignore")

    # A model upgrade, as the code location would see it: the engine reports a new version.
    from octavia_assets.resources import engines
    real_version = engines.engine_version
    bumped = {s for s in args.bump.split(",") if s}
    engines.engine_version = lambda stage: real_version(stage) + ("+upgraded" if stage in bumped else "")

    import dagster as dg

    from octavia_assets.automation import settle
    from octavia_assets.definitions import defs as real_defs
    from octavia_assets.registry import register_upload
    from tests import fakes
    from tests.fakes import FakeSynthesizer, fake_resources
    for stage, engine in [("tts", fakes.FakeSynthesizer), ("asr", fakes.FakeTranscriber),
                          ("separation", fakes.FakeSeparator)]:
        if stage in bumped:
            engine.version += "+upgraded"

    assets = list(real_defs.assets)
    defs = dg.Definitions(assets=assets, jobs=list(real_defs.jobs), resources=fake_resources())
    graph = defs.resolve_asset_graph()
    store = fake_resources()["media_store"]

    with dg.DagsterInstance.get() as instance:
        before = {k: _count(instance, k) for k in graph.get_all_asset_keys()}
        global_job = defs.resolve_implicit_global_asset_job_def()
        cursor = home / "automation.cursor"
        if not cursor.exists():   # the automation sensor was already running when the upload arrived
            settle(defs, instance, cursor)
        if args.register:
            info = store.put_file(args.register, "uploads/" + Path(args.register).name)
            video = register_upload(store, info)
            instance.add_dynamic_partitions("videos", [video])
            # What the upload sensor requests: the ingest job for the new partition.
            assert defs.resolve_job_def("ingest_job").execute_in_process(
                instance=instance, partition_key=video, raise_on_error=True).success
        if args.rerun:
            for video in instance.get_dynamic_partitions("videos"):
                assert global_job.execute_in_process(instance=instance, partition_key=video,
                                                     asset_selection=[dg.AssetKey(args.rerun)]).success

        settle(defs, instance, cursor)
        counts = {k.to_user_string(): _count(instance, k) - before[k] for k in graph.get_all_asset_keys()}
    json.dump({"materializations": counts, "synthesis_calls": FakeSynthesizer.calls}, sys.stdout)


def _count(instance, key) -> int:
    import dagster as dg
    return len(instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=10000).records)


if __name__ == "__main__":
    main()
