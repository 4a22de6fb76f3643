"""quality_report with and without final_mix's stored figures, back to back on one dubbed video.

final_mix keeps the loudness, true peak and leakage it measured in ``final_mix.json`` beside the mix;
quality_report reuses them, and measures the mix again only when that file is missing or belongs to
another mix. This re-materializes quality_report alternately in both states (``--repeat`` pairs) and
prints wall and CPU seconds (ffmpeg children included) of each.

    DAGSTER_HOME=... OCTAVIA_MEDIA_ROOT=... OCTAVIA_TARGET_LANGUAGES=pt \
        .venv/bin/python benchmarks/report_reuse.py [--repeat 2]

The home must hold one video dubbed by `octavia dub` with this code (so its final_mix.json exists).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_s() -> float:
    """CPU seconds of this process and its waited-for children (ffmpeg), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="pairs of runs (default 2)")
    args = parser.parse_args()
    import dagster as dg
    warnings.filterwarnings("ignore")
    from octavia_assets.common import derived_key
    from octavia_assets.definitions import defs, stage_assets
    from octavia_assets.mix import mix_figures_key
    from octavia_assets.settings import target_languages

    store = defs.resources["media_store"]
    with dg.DagsterInstance.get() as instance:
        (video,) = instance.get_dynamic_partitions("videos")
        keys = [mix_figures_key(video, lang) for lang in target_languages()]
        kept = {key: store.read_json(key) for key in keys}
        try:
            for _ in range(args.repeat):
                for state in ("measured again", "reused"):
                    for key in keys:
                        if state == "measured again":
                            store.delete(key)
                        else:
                            store.put_json(kept[key], key)
                    wall, cpu = time.perf_counter(), cpu_s()
                    run = dg.materialize(stage_assets, selection=["quality_report"], partition_key=video,
                                         instance=instance, resources=defs.resources)
                    if not run.success:
                        raise SystemExit("quality_report failed")
                    print(f"quality_report, figures {state:15s} wall {time.perf_counter() - wall:6.1f} s  "
                          f"CPU {cpu_s() - cpu:6.1f} s", flush=True)
        finally:
            for key in keys:
                store.put_json(kept[key], key)
    print(f"input: {store.read_json(derived_key(video, 'source', 'probe.json'))['duration']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
