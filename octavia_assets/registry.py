"""Registering an upload as a video: shared by the upload sensor and the CLI."""
from __future__ import annotations

import datetime as dt

from .common import upload_record_key
from .partitions import video_key_for
from .resources.storage import MediaStore, ObjectInfo, check_key

UPLOAD_PREFIX = "uploads/"


def register_upload(store: MediaStore, info: ObjectInfo) -> str:
    """The video partition key for an uploaded object; writes its upload record once (idempotent)."""
    check_key(info.key)
    if not info.key.startswith(UPLOAD_PREFIX):
        raise ValueError(f"{info.key!r} is not under {UPLOAD_PREFIX}")
    video = video_key_for(info.key, info.version)
    record = upload_record_key(video)
    store.put_json_if_absent({"video": video, "object_key": info.key, "version": info.version, "size": info.size,
                              "registered_at": dt.datetime.now(dt.timezone.utc).isoformat()}, record)
    return video
