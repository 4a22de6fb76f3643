"""Upload sensor: each new object under uploads/ becomes a video partition and an ingest run."""

import dagster as dg

from octavia_assets.jobs import ingest_job
from octavia_assets.partitions import videos
from octavia_assets.registry import UPLOAD_PREFIX, register_upload
from octavia_assets.resources.storage import MediaStore, UnsafeKeyError

#: bounded work per tick keeps each evaluation far below Dagster's 60 s sensor timeout.
MAX_UPLOADS_PER_TICK = 200


@dg.sensor(job=ingest_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def upload_sensor(context: dg.SensorEvaluationContext, media_store: MediaStore) -> dg.SensorResult:
    """Lists uploads after the cursor (keys in order), registers each, requests one run per upload.

    The run key is the object key plus its content identity, so the same upload never runs twice,
    while a re-upload with new content is a new video.
    """
    objects = media_store.list_objects(UPLOAD_PREFIX, start_after=context.cursor or "", limit=MAX_UPLOADS_PER_TICK)
    if not objects:
        return dg.SensorResult(skip_reason="no new uploads", cursor=context.cursor)
    new_videos, run_requests = [], []
    for obj in objects:
        try:
            video = register_upload(media_store, obj)
        except (UnsafeKeyError, ValueError) as e:
            context.log.warning(f"rejected upload {obj.key!r}: {e}")
            continue
        if obj.size == 0:
            context.log.warning(f"upload {obj.key!r} is empty (0 bytes); its run will fail with that reason")
        new_videos.append(video)
        run_requests.append(dg.RunRequest(partition_key=video, run_key=f"{obj.key}@{obj.version}",
                                          tags={"octavia/upload": obj.key, "octavia/trigger": "upload"}))
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[videos.build_add_request(new_videos)] if new_videos else [],
        cursor=objects[-1].key,
    )
