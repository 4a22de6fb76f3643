"""Small helpers the stage modules share: keys, partitions, atomic outputs, clear failures."""
from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from .resources.storage import MediaStore

def _downstream_condition() -> dg.AutomationCondition:
    """eager(), except that a dependency counts as updated only once its new bytes exist.

    Every asset returns a content-hash data version, so re-running a stage that yields identical
    output (a retry, an unchanged re-run, a model upgrade that changes nothing here) triggers
    nothing downstream. Unlike eager(), it does not chain on "will be requested": a stage waits
    for its dependency's actual result, one automation tick per level. code_version_changed()
    re-requests an asset when its engine's version (model, weights, parameters) changes.
    """
    dep_changed = dg.AutomationCondition.data_version_changed() & ~dg.AutomationCondition.executed_with_root_target()
    eager_on_new_bytes = dg.AutomationCondition.eager().replace(
        "any_deps_updated", dg.AutomationCondition.any_deps_match(dep_changed).with_label("any_deps_changed_bytes"))
    return (eager_on_new_bytes | dg.AutomationCondition.code_version_changed()).with_label("octavia_downstream")


# Sensors and the CLI start the root stages; this condition cascades the rest.
DOWNSTREAM = _downstream_condition()


def derived_key(video: str, *parts: str) -> str:
    return "/".join(("derived", video, *parts))


def output_key(video: str, *parts: str) -> str:
    return "/".join(("outputs", video, *parts))


def upload_record_key(video: str) -> str:
    return f"videos/{video}/upload.json"


def video_of(context: dg.AssetExecutionContext) -> str:
    key = context.partition_key
    if isinstance(key, dg.MultiPartitionKey):
        return key.keys_by_dimension["video"]
    return key


def video_and_lang(context: dg.AssetExecutionContext) -> tuple[str, str]:
    dims = context.partition_key.keys_by_dimension
    return dims["video"], dims["lang"]


class StageInputError(Exception):
    """Bad input detected by a stage: recorded on the asset and the run with a one-line reason."""


def fail(context: dg.AssetExecutionContext, reason: str, **metadata: Any) -> dg.Failure:
    """Record ``reason`` as an observation on the asset (visible in the asset's history) and
    return a Failure to raise, so the run fails with the same one-line message."""
    meta = {"error": dg.MetadataValue.text(reason), **metadata}
    for key in context.selected_asset_keys:
        context.log_event(dg.AssetObservation(asset_key=key, partition=context.partition_key, metadata=meta))
    context.log.error(reason)
    return dg.Failure(description=reason, metadata=meta, allow_retries=False)


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"octavia-{prefix}-") as tmp:
        yield Path(tmp)


def content_version(store: MediaStore, keys: list[str]) -> dg.DataVersion:
    """Data version = hash of the bytes written, so downstream re-runs only when they change."""
    h = hashlib.sha256()
    for key in keys:
        h.update(key.encode())
        h.update(store.sha256(key).encode())
    return dg.DataVersion(h.hexdigest()[:16])


def _plain(value: Any) -> Any:
    """numpy scalars (from engines' figures) as Python numbers, which Dagster metadata accepts."""
    return value.item() if isinstance(value, np.generic) else value


def materialized(store: MediaStore, keys: list[str], started: float, **metadata: Any) -> dg.MaterializeResult:
    meta = {"uri": dg.MetadataValue.path(store.uri(keys[0])), "wall_s": round(time.perf_counter() - started, 2)}
    if len(keys) > 1:
        meta["files"] = dg.MetadataValue.json(keys)
    meta.update({k: _plain(v) for k, v in metadata.items()})
    return dg.MaterializeResult(metadata=meta, data_version=content_version(store, keys))
