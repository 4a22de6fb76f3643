"""Partitions: one dynamic partition per uploaded video, and video x target language."""
from __future__ import annotations

import hashlib
import re
import unicodedata
import warnings

import dagster as dg

from .settings import target_languages

videos = dg.DynamicPartitionsDefinition(name="videos")


def video_language_partitions(languages: list[str] | None = None) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({
        "video": videos,
        "lang": dg.StaticPartitionsDefinition(languages or target_languages()),
    })


def video_language_key(video: str, lang: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"video": video, "lang": lang})


_MAX_STEM = 48


def video_key_for(object_key: str, content_id: str) -> str:
    """A partition key for an upload: readable stem of the file name + a short hash of key and content.

    Keys are safe for Dagster (no '|', ',', '[', ']', '...', control characters) and for object
    keys; the hash makes them unique per (object key, content), so a re-upload with new bytes is a
    new video while the same upload seen twice maps to the same key.
    """
    name = object_key.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_").lower()[:_MAX_STEM] or "video"
    digest = hashlib.sha256(f"{object_key}\0{content_id}".encode()).hexdigest()[:10]
    return f"{stem}-{digest}"


#: video x target language, for the stages after transcription that differ per language.
video_lang = video_language_partitions()

#: per-language assets read the per-video stages through this mapping (and per-video stages read
#: all languages of a per-language one through it). Beta in Dagster 1.13, and the documented way.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    VIDEO_DIMENSION = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="video")
