"""The three stages after the dub (final_mix, final_video, quality_report), re-materialized on one
dubbed video: wall and CPU seconds (ffmpeg children included) of each.

    DAGSTER_HOME=... OCTAVIA_MEDIA_ROOT=... OCTAVIA_TARGET_LANGUAGES=pt \\
        .venv/bin/python benchmarks/tail_stages.py [--repeat 2] [--stages final_video quality_report]

The home must hold one video dubbed by `octavia dub`. Run it from two checkouts (before and after a
change) on the same home, alternately, to compare them on one machine.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = ("final_mix", "final_video", "quality_report")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    args = parser.parse_args()
    import dagster as dg
    warnings.filterwarnings("ignore")
    from benchmarks.report_reuse import cpu_s
    from octavia_assets.definitions import defs, stage_assets
    from octavia_assets.partitions import video_language_key
    from octavia_assets.settings import target_languages

    with dg.DagsterInstance.get() as instance:
        (video,) = instance.get_dynamic_partitions("videos")
        for _ in range(args.repeat):
            for stage in args.stages:
                keys = ([str(video_language_key(video, lang)) for lang in target_languages()]
                        if stage == "final_mix" else [video])
                wall, cpu = time.perf_counter(), cpu_s()
                for key in keys:
                    run = dg.materialize(stage_assets, selection=[stage], partition_key=key, instance=instance,
                                         resources=defs.resources, raise_on_error=True)
                    assert run.success
                print(f"{stage:15s} wall {time.perf_counter() - wall:6.1f} s  CPU {cpu_s() - cpu:6.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
