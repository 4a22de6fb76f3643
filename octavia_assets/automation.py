"""Automation: the declarative-automation sensor and the scheduled re-dub after model upgrades."""
import os

import dagster as dg

#: in-process runs keep Dagster's console quiet; failures are summarised by the caller.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

#: re-dubs yield to fresh uploads (the queued run coordinator launches higher priority first).
REDUB_TAGS = {"dagster/priority": "-1", "octavia/trigger": "redub"}

# Runs the declarative automation (byte-change cascade, model-version re-runs); Dagster's default
# sensor starts STOPPED, this one is on as soon as the daemon runs.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "octavia_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30, run_tags={**REDUB_TAGS, "octavia/trigger": "automation"},
)


def partitions_behind(instance: dg.DagsterInstance, asset: dg.AssetsDefinition, current: str,
                      page: int = 1000) -> list[str]:
    """Partitions of ``asset`` whose latest materialization was made by another code version."""
    latest: dict[str, str | None] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset.key), limit=page,
                                                 cursor=cursor, ascending=False)
        for record in result.records:
            event = record.event_log_entry.asset_materialization
            if event.partition not in latest:
                latest[event.partition] = (event.tags or {}).get("dagster/code_version")
        if not result.has_more:
            break
        cursor = result.cursor
    return sorted(pk for pk, version in latest.items() if version != current)


def build_redub_schedules(assets: list[dg.AssetsDefinition], cron: str | None = None,
                          batch: int | None = None) -> list[dg.ScheduleDefinition]:
    """Schedules that re-request, in bounded batches, every partition made by an older model.

    The automation sensor does the same as soon as a code version changes; these schedules are the
    controlled path (off-peak, bounded) and catch what automation left behind (failed runs).
    Downstream stages follow through the byte-change cascade. One schedule per partitioning
    (per video, per video x language), as a schedule's target has one partitions definition.
    """
    cron = cron or os.environ.get("OCTAVIA_REDUB_CRON", "0 3 * * *")
    batch = batch or int(os.environ.get("OCTAVIA_REDUB_BATCH", "50"))
    groups: dict[str, list[dg.AssetsDefinition]] = {}
    for a in assets:
        if a.code_versions_by_key.get(a.key) and a.partitions_def is not None:
            name = "languages" if isinstance(a.partitions_def, dg.MultiPartitionsDefinition) else "videos"
            groups.setdefault(name, []).append(a)
    return [_redub_schedule(f"redub_{name}_schedule", group, cron, batch) for name, group in sorted(groups.items())]


def _redub_schedule(name: str, model_assets: list[dg.AssetsDefinition], cron: str, batch: int):
    @dg.schedule(name=name, cron_schedule=cron, target=dg.AssetSelection.assets(*model_assets),
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description=f"Re-materializes up to {batch} partitions per tick that older models produced.")
    def redub(context: dg.ScheduleEvaluationContext):
        requests = []
        for asset in model_assets:
            current = asset.code_versions_by_key[asset.key]
            for pk in partitions_behind(context.instance, asset, current)[: max(0, batch - len(requests))]:
                requests.append(dg.RunRequest(asset_selection=[asset.key], partition_key=pk, tags=REDUB_TAGS,
                                              run_key=f"redub:{asset.key.to_user_string()}:{pk}:{current}"))
        if not requests:
            return dg.SkipReason("every partition is up to date with the current models")
        context.log.info(f"re-dubbing {len(requests)} partition(s) made by older models")
        return requests

    return redub


def settle(defs: dg.Definitions, instance: dg.DagsterInstance, cursor_path, max_ticks: int = 20,
           on_run=None) -> int:
    """Run the declarative automation in this process until it requests nothing more.

    What the daemon's automation sensor does tick by tick, for a machine without a daemon (the CLI)
    and for tests: evaluate the conditions, execute the requested asset partitions in dependency
    order, repeat. The cursor persists in ``cursor_path`` like the sensor's. Returns the number of
    asset partitions materialized.
    """
    from pathlib import Path

    from dagster_shared.serdes import deserialize_value, serialize_value

    cursor_path = Path(cursor_path)
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    if cursor_path.exists():
        cursor = deserialize_value(cursor_path.read_text())
    else:  # a sensor that never ticked starts with an initial evaluation, which requests nothing
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
    order = topological_order(graph)
    done = 0
    for _ in range(max_ticks):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        cursor = result.cursor
        if not result.total_requested:
            break
        for key in order:
            for pk in sorted(result.get_requested_partitions(key)):
                if on_run:
                    on_run(key, pk)
                run = job.execute_in_process(instance=instance, partition_key=pk, asset_selection=[key],
                                             tags=REDUB_TAGS, raise_on_error=False, run_config=QUIET_CONSOLE)
                if not run.success:
                    from .jobs import failure_summary
                    raise RuntimeError(f"[{pk}] {failure_summary(run)} (run {run.run_id})")
                done += 1
    else:
        raise RuntimeError(f"automation did not settle in {max_ticks} ticks")
    tmp = cursor_path.with_name(f".{cursor_path.name}.part")
    tmp.write_text(serialize_value(cursor))
    tmp.replace(cursor_path)
    return done


def topological_order(graph, keys=None) -> list:
    """Asset keys parents-first (ties by name): all of the graph's, or only ``keys`` in that order."""
    order: list = []

    def visit(key):
        if key in order:
            return
        for parent in sorted(graph.get(key).parent_keys):
            visit(parent)
        order.append(key)

    for key in sorted(graph.get_all_asset_keys()):
        visit(key)
    return order if keys is None else [k for k in order if k in keys]
