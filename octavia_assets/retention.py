"""Retention: a daily job that deletes cold intermediate artifacts and prunes old run records.

Dagster never deletes runs or their event logs (field notes §0.9, §4 "Run storage growth"), and
every video leaves tens of megabytes of stems and WAVs under ``derived/``. What it deletes, and why
it is safe:

* **Artifacts.** Only keys under ``derived/``: never ``uploads/`` (the source), ``outputs/`` (the
  deliverables) or ``videos/`` (the upload records the sensor is idempotent on). A video's
  ``derived/<video>/`` goes as a whole, and only when its *newest* object is older than the cut-off
  and no run for it is queued or in progress: a video is either complete or has no intermediates,
  never half (a re-dub of a recently edited line keeps everything it reads). After that, a re-dub
  or a new language for that video needs ``ingest_job`` to run again first (the materializations
  stay in Dagster; their bytes are gone).
* **Runs.** Only finished runs (success, failure, canceled) last updated before the cut-off, oldest
  first, at most ``max_runs`` per pass. ``delete_run`` removes a run's event log, materializations
  included, and Dagster's staleness, ``code_version_changed()`` automation, the re-dub schedules and
  ``octavia dub``'s stage plan all read each asset partition's *latest* materialization. So a run
  that holds the latest materialization of any asset partition is kept, whatever its age;
  superseded history goes.
"""

import datetime as dt
import os
from dataclasses import dataclass, field

import dagster as dg
from pydantic import Field

from .resources.storage import MediaStore

ARTIFACT_PREFIX = "derived/"
DEFAULT_ARTIFACT_DAYS = 30.0
DEFAULT_RUN_DAYS = 90.0
DEFAULT_CRON = "30 4 * * *"

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _days(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        days = float(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of days") from None
    if days <= 0:
        raise ValueError(f"{name}={raw!r}: must be more than 0 days")
    return days


def artifact_retention_days() -> float:
    return _days("OCTAVIA_RETENTION_DAYS", DEFAULT_ARTIFACT_DAYS)


def run_retention_days() -> float:
    return _days("OCTAVIA_RUN_RETENTION_DAYS", DEFAULT_RUN_DAYS)


def cutoff(days: float, now: dt.datetime | None = None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)


@dataclass
class ArtifactSweep:
    deleted_videos: list[str] = field(default_factory=list)
    deleted_objects: int = 0
    deleted_bytes: int = 0
    kept_videos: int = 0


def delete_cold_artifacts(store: MediaStore, older_than: dt.datetime, busy_videos: frozenset[str] = frozenset(),
                          page: int = 1000) -> ArtifactSweep:
    """Delete ``derived/<video>/`` for every video whose newest object there is older than
    ``older_than`` and that is not in ``busy_videos``. Objects without a known time are kept."""
    sweep = ArtifactSweep()
    current: str | None = None
    objects: list = []

    def settle():
        if current is None:
            return
        times = [o.modified for o in objects]
        cold = all(t is not None and t < older_than for t in times) and current not in busy_videos
        if cold:
            store.delete_many([o.key for o in objects])
            sweep.deleted_videos.append(current)
            sweep.deleted_objects += len(objects)
            sweep.deleted_bytes += sum(o.size for o in objects)
        else:
            sweep.kept_videos += 1

    cursor = ""
    while True:
        batch = store.list_objects(ARTIFACT_PREFIX, start_after=cursor, limit=page)
        for info in batch:
            parts = info.key.split("/")
            # Listings are in key order, so one video's objects are contiguous.
            if len(parts) < 3 or parts[0] != "derived" or not parts[1]:
                continue
            if parts[1] != current:
                settle()
                current, objects = parts[1], []
            objects.append(info)
        if len(batch) < page:
            break
        cursor = batch[-1].key
    settle()
    return sweep


def busy_videos(instance: dg.DagsterInstance) -> frozenset[str]:
    """Videos with a queued or running run: their artifacts may be read any moment."""
    videos = set()
    for run in instance.get_runs(dg.RunsFilter(statuses=UNFINISHED)):
        tags = run.tags
        video = tags.get("dagster/partition/video") or tags.get("dagster/partition")
        if video:
            videos.add(video)
    return frozenset(videos)


@dataclass
class RunPrune:
    deleted: list[str] = field(default_factory=list)
    kept_latest: int = 0


def prune_runs(instance: dg.DagsterInstance, older_than: dt.datetime, max_runs: int = 10_000) -> RunPrune:
    """Delete finished runs last updated before ``older_than``, oldest first, except the runs
    holding the latest materialization of some asset partition."""
    result = RunPrune()
    latest_run: dict[tuple, str | None] = {}

    def latest_run_of(key: dg.AssetKey, partition: str | None) -> str | None:
        if (key, partition) not in latest_run:
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
                limit=1).records
            latest_run[(key, partition)] = records[0].run_id if records else None
        return latest_run[(key, partition)]

    runs = instance.get_run_records(dg.RunsFilter(statuses=FINISHED, updated_before=older_than),
                                    limit=max_runs, order_by="update_timestamp", ascending=True)
    for record in runs:
        run_id = record.dagster_run.run_id
        materializations = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        if any(latest_run_of(r.asset_key, r.partition_key) == run_id for r in materializations):
            result.kept_latest += 1
            continue
        instance.delete_run(run_id)
        result.deleted.append(run_id)
    return result


class RetentionConfig(dg.Config):
    artifact_days: float | None = Field(default=None, description="default: OCTAVIA_RETENTION_DAYS (30)")
    run_days: float | None = Field(default=None, description="default: OCTAVIA_RUN_RETENTION_DAYS (90)")
    max_runs: int = Field(default=10_000, description="most runs pruned per pass (oldest first)")


@dg.op(out=dg.Out(dg.Nothing), description="Delete derived/<video>/ of videos idle longer than the artifact retention.")
def delete_cold_intermediates(context: dg.OpExecutionContext, config: RetentionConfig,
                              media_store: MediaStore) -> dg.Output:
    days = config.artifact_days or artifact_retention_days()
    sweep = delete_cold_artifacts(media_store, cutoff(days), busy_videos(context.instance))
    # A write still running is minutes old; one a killed worker left is swept a day later.
    partial = media_store.sweep_partial_writes(cutoff(1.0))
    context.log.info(f"retention: deleted the intermediates of {len(sweep.deleted_videos)} videos "
                     f"({sweep.deleted_objects} objects, {sweep.deleted_bytes / 1e6:.1f} MB), kept {sweep.kept_videos}; "
                     f"removed {partial} partial writes left by killed workers")
    return dg.Output(None, metadata={"partial_writes_removed": partial,
        "retention_days": days, "videos_deleted": len(sweep.deleted_videos), "objects_deleted": sweep.deleted_objects,
        "bytes_deleted": sweep.deleted_bytes, "videos_kept": sweep.kept_videos,
        "deleted": dg.MetadataValue.json(sweep.deleted_videos[:200])})


@dg.op(out=dg.Out(dg.Nothing), description="Delete finished runs older than the run retention, except those holding a latest materialization.")
def prune_run_history(context: dg.OpExecutionContext, config: RetentionConfig) -> dg.Output:
    days = config.run_days or run_retention_days()
    pruned = prune_runs(context.instance, cutoff(days), config.max_runs)
    context.log.info(f"retention: deleted {len(pruned.deleted)} runs, kept {pruned.kept_latest} "
                     "holding a latest materialization")
    return dg.Output(None, metadata={"retention_days": days, "runs_deleted": len(pruned.deleted),
                                     "runs_kept_latest": pruned.kept_latest})


@dg.job(description="Deletes cold intermediate artifacts (derived/) and prunes old run records.",
        # after fresh uploads and re-dubs in the queue
        tags={"dagster/priority": "-10"})
def retention_job():
    delete_cold_intermediates()
    prune_run_history()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule", job=retention_job, cron_schedule=os.environ.get("OCTAVIA_RETENTION_CRON", DEFAULT_CRON),
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily retention pass (OCTAVIA_RETENTION_CRON, default 04:30 UTC).")
