"""source_video: the upload, probed, validated before any heavy work."""

import time

import dagster as dg

from .common import derived_key, fail, materialized, upload_record_key, video_of
from .partitions import videos
from .resources.media import MediaError, probe
from .resources.storage import MediaStore
from .settings import max_upload_bytes, max_upload_seconds

# The mix's loudness (BS.1770) is measured over 400-ms blocks: a shorter video cannot be normalised.
MIN_UPLOAD_SECONDS = 0.5


@dg.asset(partitions_def=videos, group_name="ingest", kinds={"ffmpeg"}, code_version="probe-v1")
def source_video(context: dg.AssetExecutionContext, media_store: MediaStore) -> dg.MaterializeResult:
    """ffprobe facts of the uploaded video: streams, duration, frame rate and frame count."""
    started = time.perf_counter()
    store = media_store
    video = video_of(context)
    record_key = upload_record_key(video)
    if not store.exists(record_key):
        raise fail(context, f"video {video!r} has no upload record ({record_key}); register it with the "
                            "upload sensor or `octavia dub`")
    record = store.read_json(record_key)
    # Size and identity from the store's metadata: nothing is downloaded for an upload we refuse.
    try:
        info = store.stat(record["object_key"])
    except FileNotFoundError:
        raise fail(context, f"upload {record['object_key']!r} is gone from the media store") from None
    if info.size > max_upload_bytes():
        raise fail(context, f"upload is {info.size} bytes, over the limit of {max_upload_bytes()} bytes "
                            "(OCTAVIA_MAX_UPLOAD_BYTES)")
    if record.get("version") and info.version != record["version"]:
        # The key was overwritten: the new bytes are another video (the sensor registers them apart).
        raise fail(context, f"upload {record['object_key']!r} was replaced by a newer upload since this video "
                            "was registered; the new content is dubbed as its own video")
    try:
        with store.open_local(record["object_key"]) as path:
            facts = probe(path)
    except FileNotFoundError:
        raise fail(context, f"upload {record['object_key']!r} is gone from the media store") from None
    except MediaError as e:
        raise fail(context, f"unusable upload: {e}") from None
    if facts.audio is None:
        raise fail(context, f"unusable upload: {record['object_key']} has no audio stream, nothing to dub")
    if facts.duration <= 0:
        raise fail(context, f"unusable upload: {record['object_key']} has zero duration")
    if facts.duration < MIN_UPLOAD_SECONDS:
        raise fail(context, f"upload is {facts.duration:.2f} s long, too short to dub (at least {MIN_UPLOAD_SECONDS:g} s: "
                            "loudness is measured over 0.4-s blocks)")
    if facts.duration > max_upload_seconds():
        raise fail(context, f"upload is {facts.duration:.0f} s long, over the limit of {max_upload_seconds():.0f} s "
                            "(OCTAVIA_MAX_DURATION_S)")
    out = derived_key(video, "source", "probe.json")
    store.put_json({"object_key": record["object_key"], **facts.to_dict()}, out)
    v, a = facts.video, facts.audio
    return materialized(
        store, [out], started,
        object_key=record["object_key"], duration_s=round(facts.duration, 3), size_bytes=facts.size,
        has_video=v is not None, video_codec=v.codec_name if v else "none",
        fps=round(v.fps, 3) if v and v.fps else 0.0, frames=(v.frames or 0) if v else 0,
        audio_codec=a.codec_name, audio_channels=a.channels or 0, audio_sample_rate=a.sample_rate or 0,
    )
