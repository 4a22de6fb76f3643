"""Upload sensor: each new object under uploads/ becomes a video partition and an ingest run."""

import re
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from octavia_assets.jobs import ingest_job
from octavia_assets.partitions import videos
from octavia_assets.registry import UPLOAD_PREFIX, register_upload
from octavia_assets.resources.storage import MediaStore, UnsafeKeyError

#: bounded work per tick keeps each evaluation far below Dagster's 60 s sensor timeout.
MAX_UPLOADS_PER_TICK = 200
#: upload records are small writes whose cost on S3 is round-trip latency: write them concurrently.
REGISTER_THREADS = 16
#: run priority in the queue (higher first): fresh uploads before automation re-dubs (0, or -1
#: for model-version re-runs), and a Pro upload before a Free one.
UPLOAD_PRIORITY = {"pro": 20, "free": 10}
#: ``octavia upload`` keys: uploads/<UTC stamp>-<tier>-<random>/<file name>, increasing over time.
_TIERED_KEY = re.compile(r"^uploads/\d{8}T\d{6}Z-(?P<tier>[a-z]+)-[0-9a-f]+/")


def upload_tier(key: str) -> str:
    m = _TIERED_KEY.match(key)
    return m["tier"] if m and m["tier"] in UPLOAD_PRIORITY else "free"


@dg.sensor(job=ingest_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def upload_sensor(context: dg.SensorEvaluationContext, media_store: MediaStore) -> dg.SensorResult:
    """Lists uploads after the cursor (keys in order), registers each, requests one run per upload.

    The cursor is the last key seen, passed to the store as S3's StartAfter: a tick lists only keys
    after it, so its cost does not grow with the number of past uploads. That needs upload keys
    that increase over time (``octavia upload`` and presigned uploads put a UTC timestamp first);
    a key sorting before the cursor is not seen.

    The run key is the object key plus its content identity (ETag on S3), so the same upload never
    runs twice, while a re-upload with new content is a new video. The video partitions are added
    to the instance by the sensor itself, in one batch, before the runs are requested.
    """
    objects = media_store.list_objects(UPLOAD_PREFIX, start_after=context.cursor or "", limit=MAX_UPLOADS_PER_TICK)
    if not objects:
        return dg.SensorResult(skip_reason="no new uploads", cursor=context.cursor)

    def register(obj):
        try:
            return register_upload(media_store, obj), None
        except (UnsafeKeyError, ValueError) as e:
            return None, e

    with ThreadPoolExecutor(min(REGISTER_THREADS, len(objects))) as pool:
        registered = list(pool.map(register, objects))
    new_videos, run_requests = [], []
    for obj, (video, error) in zip(objects, registered):
        if error is not None:
            context.log.warning(f"rejected upload {obj.key!r}: {error}")
            continue
        if obj.size == 0:
            context.log.warning(f"upload {obj.key!r} is empty (0 bytes); its run will fail with that reason")
        new_videos.append(video)
        run_requests.append(dg.RunRequest(partition_key=video, run_key=f"{obj.key}@{obj.version}",
                                          tags={"octavia/upload": obj.key, "octavia/trigger": "upload",
                                                "octavia/tier": upload_tier(obj.key),
                                                "dagster/priority": str(UPLOAD_PRIORITY[upload_tier(obj.key)])}))
    if new_videos:
        # One batched write (keys already there are skipped by the same query) rather than a
        # dynamic_partitions_requests entry, which the daemon applies with one has_dynamic_partition
        # round trip per key: 200 a tick, over 90 % of a tick on Postgres
        # (benchmarks/sensor_scale.py). Idempotent, so a tick retried after a crash adds nothing twice.
        context.instance.add_dynamic_partitions(videos.name, new_videos)
        context.log.info(f"added {len(new_videos)} video partitions, {new_videos[0]} .. {new_videos[-1]}")
    return dg.SensorResult(
        run_requests=run_requests,
        # Past rejected keys too: they are logged once, not on every tick.
        cursor=objects[-1].key,
    )
