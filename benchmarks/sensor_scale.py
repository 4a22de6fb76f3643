"""Sensor scale: 10 000 new uploads → partitions added and runs requested, tick after tick.

    .venv/bin/python -m benchmarks.sensor_scale [--n 10000] [--daemon-n 1000] [--modes sensor daemon]
                                                [--stores local s3] [--instances sqlite postgres]

For each (mode, store, instance) it puts N tiny objects under uploads/ (keys as ``octavia upload``
makes them: uploads/<UTC stamp>-<tier>-<hex>/<name>), then ticks the project's upload sensor until
it reports "no new uploads", on a real DagsterInstance. Two kinds of tick:

* ``sensor``: the sensor evaluated as the code server does (list after the cursor, write upload
  records, build the run requests), then its dynamic-partition request applied to the instance
  exactly as Dagster's daemon applies it (``has_dynamic_partition`` per key, then one
  ``add_dynamic_partitions``). Run requests are counted (one per upload, distinct run keys), not
  turned into Dagster runs.
* ``daemon``: Dagster's own sensor-daemon tick (``dagster._daemon.sensor.execute_sensor_iteration``)
  on an in-process code location with the project's ingest job and upload sensor: everything above
  plus creating each run (execution plan, run row, one "materialization planned" event per ingest
  asset) and queueing it (QueuedRunCoordinator, as deploy/dagster.yaml; nothing is launched), with
  ``sensors.num_submit_workers`` threads (--submit-workers). Slow per run, hence a smaller N.

The 15 s minimum interval between ticks is skipped (Dagster's clock is advanced), so "seconds of
sensor ticks" is the sum of the ticks' wall times. Stores: the local folder store, and
S3MediaStore on moto's S3 server (its own process on 127.0.0.1, as tests/servers.py starts it).
Instances: a fresh SQLite DAGSTER_HOME, and PostgreSQL (127.0.0.1:5432 or $OCTAVIA_TEST_PG_*; a
fresh database, dropped afterwards) when reachable.

Each scenario runs in its own subprocess so its peak RSS (ru_maxrss) is its own. Writes
benchmarks/results/sensor_scale.json and prints a markdown table. Target (issue 10): 10 000
uploads handled within 60 s of sensor ticks.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg

from tests.servers import fresh_postgres_database, moto_s3_server, postgres_unavailable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "sensor_scale.json"
TARGET_S = 60.0
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "octavia-bench", "AWS_SECRET_ACCESS_KEY": "octavia-bench-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}


@dg.definitions
def bench_defs() -> dg.Definitions:
    """The code location the daemon ticks: the project's assets, ingest job and upload sensor, with
    the store chosen by the environment (OCTAVIA_STORAGE), as octavia_assets.definitions does."""
    from octavia_assets.definitions import resources_for_env, stage_assets
    from octavia_assets.jobs import ingest_job
    from sensors.uploads import upload_sensor
    return dg.Definitions(assets=stage_assets, jobs=[ingest_job], sensors=[upload_sensor],
                          resources=resources_for_env())


def upload_keys(n: int) -> list[str]:
    # One upload a second from 2026-11-22 00:00 UTC, alternating tiers as real traffic would.
    t0 = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    return [f"uploads/{(t0 + dt.timedelta(seconds=i)).strftime('%Y%m%dT%H%M%SZ')}-{'pro' if i % 5 == 0 else 'free'}"
            f"-{i:08x}/clip{i}.mp4" for i in range(n)]


def write_instance_yaml(home: Path, pg: dict | None, submit_workers: int) -> None:
    """SQLite (default storage) or the production Postgres storage; both queue runs, as production does."""
    lines = ["telemetry:\n  enabled: false\n",
             "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"]
    if submit_workers:
        lines.append(f"sensors:\n  use_threads: true\n  num_workers: 4\n  num_submit_workers: {submit_workers}\n")
    if pg:
        lines.append("storage:\n  postgres:\n    postgres_db:\n"
                     f"      hostname: {pg['host']}\n      port: {pg['port']}\n      username: {pg['user']}\n"
                     f"      password: '{pg['password']}'\n      db_name: {pg['db_name']}\n"
                     "      scheme: postgresql+psycopg2\n")
    (home / "dagster.yaml").write_text("\n".join(lines))


def put_local(root: Path, keys: list[str]) -> None:
    for key in keys:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())


def put_s3(store, keys: list[str]) -> None:
    client, bucket = store.client, store.bucket
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_scenario(mode: str, store_kind: str, instance_kind: str, n: int, endpoint: str | None,
                 submit_workers: int) -> dict:
    """One (mode, store, instance): N uploads, ticks until caught up; runs in its own process."""
    from dagster._core.storage.dagster_run import RunsFilter

    tmp = Path(tempfile.mkdtemp(prefix="octavia-sensor-scale-"))
    stack = contextlib.ExitStack()
    stack.callback(shutil.rmtree, tmp, ignore_errors=True)
    with stack:
        home = tmp / "home"
        home.mkdir()
        os.environ["DAGSTER_HOME"] = str(home)
        keys = upload_keys(n)
        started = time.perf_counter()
        if store_kind == "local":
            os.environ.update(OCTAVIA_STORAGE="local", OCTAVIA_MEDIA_ROOT=str(tmp / "media"))
            put_local(tmp / "media", keys)
        else:
            from octavia_assets.resources.storage import S3MediaStore
            bucket = f"octavia-bench-{uuid.uuid4().hex[:12]}"
            os.environ.update(S3_CREDENTIALS, OCTAVIA_STORAGE="s3", OCTAVIA_S3_BUCKET=bucket,
                              OCTAVIA_S3_ENDPOINT_URL=endpoint)
            store = S3MediaStore(bucket=bucket, endpoint_url=endpoint, region_name="us-east-1")
            store.client.create_bucket(Bucket=bucket)
            put_s3(store, keys)
        put_s = time.perf_counter() - started
        pg = stack.enter_context(fresh_postgres_database("octavia_bench")) if instance_kind == "postgres" else None
        write_instance_yaml(home, pg, submit_workers if mode == "daemon" else 0)
        instance = stack.enter_context(dg.DagsterInstance.get())
        rss_before = _rss_mib()
        ticker = _daemon_ticks if mode == "daemon" else _sensor_ticks
        tick_s, eval_s, requested = ticker(instance, stack)

        partitions = instance.get_dynamic_partitions("videos")
        if mode == "daemon":
            requested = instance.get_runs_count(RunsFilter(tags={"dagster/sensor_name": "upload_sensor"}))
            queued = instance.get_runs_count(RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
        else:
            queued = 0
        working = tick_s[:-1]  # the last tick found nothing new
        ordered = sorted(working)
        return {
            "mode": mode, "store": store_kind, "instance": instance_kind, "uploads": n,
            "submit_workers": submit_workers if mode == "daemon" else None,
            "ticks": len(working), "caught_up_tick_s": round(tick_s[-1], 3),
            "tick_median_s": round(ordered[len(ordered) // 2], 3) if ordered else 0.0,
            "tick_max_s": round(max(working), 3) if working else 0.0,
            "total_s": round(sum(working), 2),
            "sensor_eval_total_s": round(sum(eval_s[:len(working)]), 2),
            "partitions_added": len(partitions), "distinct_partitions": len(set(partitions)),
            "runs_requested": requested, "runs_queued": queued,
            "put_objects_s": round(put_s, 1),
            "peak_rss_mib": round(_rss_mib(), 1), "rss_before_ticks_mib": round(rss_before, 1),
            "s_per_upload": round(sum(working) / n, 4),
            # The target is for 10 000 uploads; a smaller run only gives the cost per upload.
            "target_met": (requested == n and len(set(partitions)) == n and sum(working) <= TARGET_S)
            if n >= 10_000 else None,
        }


def _progress(i: int, tick: float, evaluation: float) -> None:
    print(f"    tick {i}: {tick:.2f} s (sensor evaluation {evaluation:.2f} s)", file=sys.stderr, flush=True)


def _sensor_ticks(instance, stack) -> tuple[list[float], list[float], int]:
    """The sensor evaluated as the code server does, its partition requests applied as the daemon
    applies them (a has_dynamic_partition check per key, then one add_dynamic_partitions); the
    run requests are counted and checked (one per upload, distinct run keys), not created."""
    from octavia_assets.platform import media_store_for_env
    from sensors.uploads import upload_sensor
    store = media_store_for_env()
    cursor, tick_s, eval_s, run_keys = None, [], [], set()
    while True:
        t = time.perf_counter()
        result = upload_sensor(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                       resources={"media_store": store}))
        eval_s.append(time.perf_counter() - t)
        for request in result.dynamic_partitions_requests:
            new = [k for k in request.partition_keys
                   if not instance.has_dynamic_partition(request.partitions_def_name, k)]
            if new:
                instance.add_dynamic_partitions(request.partitions_def_name, new)
        tick_s.append(time.perf_counter() - t)
        _progress(len(tick_s), tick_s[-1], eval_s[-1])
        if not result.run_requests:
            break
        run_keys.update(r.run_key for r in result.run_requests)
        cursor = result.cursor
    return tick_s, eval_s, len(run_keys)


def _daemon_ticks(instance, stack) -> tuple[list[float], list[float], int]:
    """Dagster's own sensor-daemon tick on an in-process code location, with the submit thread
    pool the instance's `sensors:` settings ask for (as the SensorDaemon builds it)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.remote_representation.code_location import InProcessCodeLocation
    from dagster._core.scheduler.instigation import TickStatus
    from dagster._core.test_utils import freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    # Time the sensor evaluation alone (the code server's part of a tick), without changing it.
    eval_s: list[float] = []
    original = InProcessCodeLocation.get_sensor_execution_data

    def timed(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            eval_s.append(time.perf_counter() - t)
    InProcessCodeLocation.get_sensor_execution_data = timed
    stack.callback(setattr, InProcessCodeLocation, "get_sensor_execution_data", original)

    settings = instance.get_settings("sensors")
    submit_pool = None
    if settings.get("use_threads") and settings.get("num_submit_workers"):
        submit_pool = stack.enter_context(ThreadPoolExecutor(settings["num_submit_workers"],
                                                             thread_name_prefix="sensor_submit_worker"))
    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(
        module_name="benchmarks.sensor_scale", attribute="bench_defs", working_directory=str(REPO)),
        location_name="octavia")
    workspace = stack.enter_context(WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)))
    entry = next(iter(workspace.create_request_context().get_code_location_entries().values()))
    if entry.load_error:
        raise RuntimeError(f"code location failed to load: {entry.load_error}")
    sensor = next(iter(entry.code_location.get_repositories().values())).get_sensor("upload_sensor")
    logger = logging.getLogger("sensor_scale")
    logger.setLevel(logging.WARNING)

    tick_s: list[float] = []
    clock = time.time()
    while True:
        clock += sensor.min_interval_seconds + 1  # the next tick is due: skip the wait, not the work
        with freeze_time(clock):
            t = time.perf_counter()
            errors = [e for e in execute_sensor_iteration(workspace, logger, None, submit_pool) if e is not None]
            tick_s.append(time.perf_counter() - t)
        _progress(len(tick_s), tick_s[-1], eval_s[-1] if eval_s else 0.0)
        if errors:
            raise RuntimeError(f"sensor tick failed: {errors[0].to_string()}")
        tick = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, limit=1)[0]
        if tick.status == TickStatus.SKIPPED:
            break
        if tick.status != TickStatus.SUCCESS:
            raise RuntimeError(f"tick {len(tick_s)}: {tick.status} {tick.error}")
        if len(tick_s) > 100_000:
            raise RuntimeError("the sensor never caught up")
    return tick_s, eval_s, 0


def _table(rows: list[dict]) -> str:
    head = ("| tick | store | instance | uploads | ticks | s/tick median | s/tick max | total s of ticks "
            "(target ≤ 60) | of which sensor evaluation s | partitions added | runs requested | peak RSS MiB |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        tick = "sensor" if r["mode"] == "sensor" else f"daemon ({r.get('submit_workers') or 0} submit threads)"
        if "error" in r:
            lines.append(f"| {tick} | {r['store']} | {r['instance']} | {r['uploads']} | failed: {r['error']} "
                         + "| " * 7 + "|")
            continue
        ok = {True: "met", False: "missed", None: f"{r['s_per_upload']:.3f} s/upload"}[r["target_met"]]
        lines.append(f"| {tick} | {r['store']} | {r['instance']} | {r['uploads']} | {r['ticks']} "
                     f"| {r['tick_median_s']:.2f} | {r['tick_max_s']:.2f} | {r['total_s']:.1f} ({ok}) "
                     f"| {r['sensor_eval_total_s']:.1f} | {r['partitions_added']} | {r['runs_requested']} "
                     f"| {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def _machine() -> dict:
    import platform
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = 0.0
    return {"cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "dagster": dg.__version__, "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="new uploads for the sensor ticks (default 10 000)")
    parser.add_argument("--daemon-n", type=int, default=1_000,
                        help="new uploads for the daemon ticks, which create and queue every run (default 1 000)")
    parser.add_argument("--modes", nargs="+", default=["sensor", "daemon"], choices=["sensor", "daemon"])
    parser.add_argument("--stores", nargs="+", default=["local", "s3"], choices=["local", "s3"])
    parser.add_argument("--instances", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--submit-workers", type=int, default=8,
                        help="daemon ticks: sensors.num_submit_workers of the instance (0: serial, Dagster's default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "STORE", "INSTANCE", "ENDPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, store, inst, endpoint = args.child
        row = run_scenario(mode, store, inst, args.n, None if endpoint == "-" else endpoint, args.submit_workers)
        print(json.dumps(row))
        return 0

    machine = _machine()
    rows = []
    pg_reason = postgres_unavailable() if "postgres" in args.instances else None
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(moto_s3_server()) if "s3" in args.stores else None
        for mode in args.modes:
            n = args.n if mode == "sensor" else args.daemon_n
            for store in args.stores:
                for inst in args.instances:
                    if inst == "postgres" and pg_reason:
                        print(f"skipping {store}/postgres: no PostgreSQL ({pg_reason})", file=sys.stderr)
                        continue
                    print(f"{mode} ticks, {store} store, {inst} instance: {n} uploads ...", file=sys.stderr, flush=True)
                    proc = subprocess.run([sys.executable, "-m", "benchmarks.sensor_scale", "--n", str(n),
                                           "--submit-workers", str(args.submit_workers), "--child", mode, store,
                                           inst, endpoint if store == "s3" else "-"],
                                          cwd=REPO, stdout=subprocess.PIPE, text=True, check=False)
                    if proc.returncode != 0:
                        rows.append({"mode": mode, "store": store, "instance": inst, "uploads": n,
                                     "error": f"exit status {proc.returncode} (see the log above)"})
                        continue
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    print(f"  {row['ticks']} ticks, {row['total_s']:.1f} s of ticks, {row['runs_requested']} runs",
                          file=sys.stderr, flush=True)
    table = _table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.part")
    tmp.write_text(json.dumps({"benchmark": "sensor_scale", "target_total_s": TARGET_S, "machine": machine,
                               "rows": rows, "markdown": table}, indent=1, default=str))
    os.replace(tmp, args.out)
    print(table)
    return 0 if rows and all(r.get("target_met") is not False and "error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
