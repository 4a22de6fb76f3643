"""Media store: where uploads land and every stage's artifacts live, under deterministic keys.

Keys are POSIX-style relative paths (``uploads/talk.mp4``, ``derived/<video>/stems/vocals.wav``).
Writes are atomic: readers never see a partially written object.
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg

from .media import sha256_file
from pydantic import Field, PrivateAttr


class UnsafeKeyError(ValueError):
    """A key that would escape the store root or is otherwise not a plain relative path."""


def check_key(key: str) -> str:
    p = PurePosixPath(key)
    if not key or p.is_absolute() or any(part in ("..", ".", "") for part in key.split("/")):
        raise UnsafeKeyError(f"unsafe object key {key!r}: must be a relative path without '.', '..' or empty parts")
    if any(ord(c) < 32 for c in key):
        raise UnsafeKeyError(f"unsafe object key {key!r}: contains control characters")
    return key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # A content identity: ETag on S3, size+mtime locally (cheap; a new upload changes it).
    version: str
    #: when the object was last written (UTC), where the store reports it; retention reads it.
    #: Not part of equality: ``version`` is the object's identity.
    modified: dt.datetime | None = field(default=None, compare=False)


class MediaStore(dg.ConfigurableResource):
    """Interface shared by every media store (local folder here; S3 in production)."""

    def uri(self, key: str) -> str:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def stat(self, key: str) -> ObjectInfo:
        raise NotImplementedError

    def list_objects(self, prefix: str, start_after: str = "", limit: int = 1000) -> list[ObjectInfo]:
        """Objects under ``prefix`` with keys > ``start_after``, in key order, at most ``limit``."""
        raise NotImplementedError

    @contextmanager
    def open_local(self, key: str) -> Iterator[Path]:
        """A local file path holding the object's bytes, valid inside the ``with`` block."""
        raise NotImplementedError
        yield  # pragma: no cover

    def put_file(self, src: str | os.PathLike, key: str) -> ObjectInfo:
        """Store a local file under ``key`` atomically."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def delete_many(self, keys: list[str]) -> None:
        """Delete every key (missing ones are no error)."""
        for key in keys:
            self.delete(key)

    def sweep_partial_writes(self, older_than: dt.datetime) -> int:
        """Remove what writes killed mid-way left behind (never visible to readers), started before
        ``older_than``; the count removed."""
        return 0

    def download_url(self, key: str, expires_s: int | None = None) -> str:
        """A URL a client can fetch the object from (a presigned GET on S3, the file URI locally)."""
        return self.uri(key)

    def upload_url(self, key: str, expires_s: int | None = None) -> str:
        """A URL a client can PUT the object's bytes to (presigned on S3)."""
        raise NotImplementedError(f"{type(self).__name__} has no upload URLs: copy the file into the store instead")

    # Conveniences built on the primitives above.
    def put_bytes(self, data: bytes, key: str) -> ObjectInfo:
        with tempfile.TemporaryDirectory(prefix="octavia-put-") as tmp:
            path = Path(tmp) / "object"
            path.write_bytes(data)
            return self.put_file(path, key)

    def put_json(self, obj: Any, key: str) -> ObjectInfo:
        return self.put_bytes(json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False).encode(), key)

    def put_json_if_absent(self, obj: Any, key: str) -> bool:
        """Write ``obj`` under ``key`` unless an object is already there; True when written."""
        if self.exists(key):
            return False
        self.put_json(obj, key)
        return True

    def read_bytes(self, key: str) -> bytes:
        with self.open_local(key) as path:
            return path.read_bytes()

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def sha256(self, key: str) -> str:
        with self.open_local(key) as path:
            return sha256_file(path)


class LocalMediaStore(MediaStore):
    """A folder on local disk. Atomic writes: temp file in the same folder, then rename."""

    #: the folder; when unset, $OCTAVIA_MEDIA_ROOT or $DAGSTER_HOME/media, read when used.
    root: str | None = None

    @property
    def base(self) -> Path:
        if self.root:
            return Path(self.root)
        from ..settings import media_root
        return media_root()

    def _path(self, key: str) -> Path:
        return self.base / check_key(key)

    def uri(self, key: str) -> str:
        return self._path(key).resolve().as_uri()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat(self, key: str) -> ObjectInfo:
        return self._info(key, self._path(key))

    @staticmethod
    def _info(key: str, path: Path) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(key=key, size=st.st_size, version=f"{st.st_size}-{st.st_mtime_ns}",
                          modified=dt.datetime.fromtimestamp(st.st_mtime, dt.UTC))

    def list_objects(self, prefix: str, start_after: str = "", limit: int = 1000) -> list[ObjectInfo]:
        base = self.base
        top = prefix.rstrip("/")
        if not (base / top if top else base).is_dir():
            return []
        found: list[tuple[str, str]] = []

        # Depth-first in key order, like S3's listing: a folder's keys all start with "<folder>/",
        # so sorting entries by that name orders whole subtrees among files. Subtrees wholly at or
        # before ``start_after`` are skipped and the walk stops at ``limit``, so a tick costs
        # O(new keys), not O(every upload ever made).
        def walk(rel: str) -> None:
            try:
                with os.scandir(base / rel if rel else base) as it:
                    entries = []
                    for e in it:
                        if e.name.startswith("."):  # in-flight temp files and hidden files
                            continue
                        key = f"{rel}/{e.name}" if rel else e.name
                        if e.is_dir():
                            if not e.is_symlink():  # as os.walk: symlinked folders are not entered
                                entries.append((key + "/", key, True, e.path))
                        else:
                            entries.append((key, key, False, e.path))
            except (FileNotFoundError, NotADirectoryError):  # removed while listing
                return
            for order, key, is_dir, path in sorted(entries):
                if len(found) >= limit:
                    return
                if is_dir:
                    # Every key below starts with ``order``: all <= start_after unless start_after
                    # is itself below this folder or sorts before it.
                    if order > start_after or start_after.startswith(order):
                        walk(key)
                elif key > start_after and key.startswith(prefix):
                    found.append((key, path))

        walk(top)
        # Listed as found, unchecked: the caller decides what to do with an unsafe name.
        return [self._info(key, Path(path)) for key, path in found]

    def put_json_if_absent(self, obj: Any, key: str) -> bool:
        # A complete temp file linked into place: link() fails if the key exists, so one system
        # call both checks and publishes atomically (no exists-then-write race, no copy).
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False).encode())
            os.link(tmp, dest)
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            return super().put_json_if_absent(obj, key)  # a filesystem without hard links
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    @contextmanager
    def open_local(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no object {key!r} in {self.uri_root()}")
        yield path

    def uri_root(self) -> str:
        return self.base.resolve().as_uri()

    def put_file(self, src: str | os.PathLike, key: str) -> ObjectInfo:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.stat(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def sweep_partial_writes(self, older_than: dt.datetime) -> int:
        # The temp files of put_file/put_json_if_absent: ".<name>.<random>.part" beside the key.
        removed, cut = 0, older_than.timestamp()
        for folder, _dirs, files in os.walk(self.base):
            for name in files:
                path = Path(folder) / name
                if name.startswith(".") and name.endswith(".part"):
                    try:
                        if path.stat().st_mtime < cut:
                            path.unlink()
                            removed += 1
                    except FileNotFoundError:   # finished or removed meanwhile
                        pass
        return removed


_log = logging.getLogger("octavia.storage")

#: loggers that, at DEBUG, write every request's signature (Authorization header, presigned query).
_WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


@contextmanager
def exclusive(store: MediaStore, lock_key: str, timeout_s: float = 120.0, stale_s: float = 600.0) -> Iterator[None]:
    """Hold a lease on ``lock_key`` for a read-modify-write of a shared object (the speaker registry).

    Built on put_json_if_absent (a hard link locally, If-None-Match on S3), so it works across
    processes and machines sharing the store. A lease older than ``stale_s`` (its holder was killed)
    is broken; waiting longer than ``timeout_s`` is an error naming the holder."""
    import uuid
    token, deadline = uuid.uuid4().hex, time.monotonic() + timeout_s
    while not store.put_json_if_absent({"owner": token, "pid": os.getpid(),
                                        "since": dt.datetime.now(dt.UTC).isoformat()}, lock_key):
        try:
            held = store.read_json(lock_key)
        except (FileNotFoundError, ValueError):     # released (or half-visible) meanwhile: try again
            continue
        age = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(held["since"])).total_seconds()
        if age > stale_s:
            logging.getLogger(__name__).warning("breaking the stale lease %s of %s (%.0f s old)",
                                                lock_key, held.get("owner"), age)
            store.delete(lock_key)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"{lock_key} is held by {held.get('owner')} (pid {held.get('pid')}) "
                               f"since {held['since']}; waited {timeout_s:g} s")
        time.sleep(0.02 + random.random() * 0.08)
    try:
        yield
    finally:
        try:
            if store.read_json(lock_key).get("owner") == token:
                store.delete(lock_key)
        except FileNotFoundError:                    # broken as stale by another worker
            pass


def _quiet_wire_logs() -> None:
    """Keep the S3 client's wire loggers at INFO or above, whatever the root level: their DEBUG
    records hold request signatures and presigned URLs. OCTAVIA_DEBUG_S3_WIRE=1 lets them through
    (local debugging only)."""
    if os.environ.get("OCTAVIA_DEBUG_S3_WIRE") == "1":
        return
    for name in _WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:
            logger.setLevel(logging.INFO)

#: S3 error codes worth another try: the server is busy or restarting, not refusing the request.
_TRANSIENT_CODES = {"RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "InternalError", "ServiceUnavailable",
                    "ThrottlingException", "Throttling", "RequestLimitExceeded", "BadDigest", "IncompleteBody"}


def _transient(error: BaseException) -> bool:
    """A network failure or a 5xx/throttling answer; wrapped errors (s3transfer's) by their cause."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from s3transfer.exceptions import RetriesExceededError
    seen = 0
    while error is not None and seen < 5:
        seen += 1
        if isinstance(error, (ConnectionError, ReadTimeoutError, ResponseStreamingError, IncompleteReadError,
                              ConnectionResetError, BrokenPipeError)):
            return True
        if isinstance(error, ClientError):
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return status >= 500 or error.response.get("Error", {}).get("Code") in _TRANSIENT_CODES
        if isinstance(error, RetriesExceededError):
            error = error.last_exception
        elif isinstance(error, S3UploadFailedError):
            if "(RequestTimeout)" in str(error) or "(SlowDown)" in str(error) or "(InternalError)" in str(error):
                return True
            error = error.__cause__ or error.__context__
        else:
            error = error.__cause__
    return False


#: presigned URLs live one day unless configured otherwise.
DEFAULT_URL_EXPIRY_S = 24 * 3600


def _resolved(value):
    # A resource used outside Dagster (CLI, tests) still holds its dg.EnvVar fields unresolved.
    return value.get_value() if isinstance(value, dg.EnvVar) else value


class S3MediaStore(MediaStore):
    """An S3 bucket (AWS or any S3-compatible server via ``endpoint_url``), same keys as the local store.

    Writes are atomic for readers: an object becomes visible only when its PUT (or the completion of
    its multipart upload) succeeds, and we upload only from a complete local file.
    """

    bucket: str = Field(description="bucket holding uploads/, derived/, outputs/ and videos/")
    prefix: str = Field(default="", description="key prefix inside the bucket, e.g. 'octavia/' (empty: bucket root)")
    endpoint_url: str | None = Field(default=None, description="S3-compatible server URL; unset for AWS")
    region_name: str | None = None
    # Unset: boto3's default chain (AWS_* env vars, profile, instance or pod role).
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    url_expiry_s: int = Field(default=DEFAULT_URL_EXPIRY_S, description="lifetime of presigned URLs")
    # Outages (server restarting, network cut) outlast botocore's own quick retries: every operation
    # is retried on transient errors with exponential backoff (base * 2^n, capped, jittered).
    retry_attempts: int = Field(default=6, description="attempts per operation on transient errors (1: no retry)")
    retry_base_s: float = Field(default=0.5, description="first backoff delay; doubles on each retry")
    retry_max_s: float = Field(default=20.0, description="cap on one backoff delay")
    botocore_max_attempts: int = Field(default=3, description="botocore's own attempts per request (standard mode)")
    connect_timeout_s: float = Field(default=10.0, description="seconds to open a connection")
    read_timeout_s: float = Field(default=60.0, description="seconds without bytes on a read before it fails")
    multipart_threshold_mb: int = Field(default=64, description="files above this upload in parts (S3 minimum 5)")
    multipart_chunk_mb: int = Field(default=64, description="part size of multipart uploads and downloads")

    _client: Any = PrivateAttr(default=None)
    #: transient failures retried by this store object so far (observability and tests).
    _retries: int = PrivateAttr(default=0)

    @property
    def _bucket(self) -> str:
        return _resolved(self.bucket)

    @property
    def client(self):
        if self._client is None:
            _quiet_wire_logs()
            import boto3
            from botocore.config import Config
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url or None, region_name=self.region_name or None,
                aws_access_key_id=_resolved(self.aws_access_key_id) or None,
                aws_secret_access_key=_resolved(self.aws_secret_access_key) or None,
                aws_session_token=_resolved(self.aws_session_token) or None,
                config=Config(signature_version="s3v4", max_pool_connections=32,
                              retries={"max_attempts": max(1, self.botocore_max_attempts), "mode": "standard"},
                              connect_timeout=self.connect_timeout_s, read_timeout=self.read_timeout_s,
                              # path-style works with every S3-compatible server (MinIO, moto, Ceph).
                              s3={"addressing_style": "path"} if self.endpoint_url else None))
        return self._client

    @property
    def retries(self) -> int:
        return self._retries

    def _retrying(self, what: str, fn):
        """``fn()``, retried with exponential backoff while the error is transient."""
        attempts = max(1, self.retry_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except Exception as e:
                if attempt == attempts or not _transient(e):
                    raise
                delay = min(self.retry_max_s, self.retry_base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                self._retries += 1
                # The error names the endpoint and key, never a signature or a credential.
                _log.warning("S3 %s failed (attempt %d of %d: %s: %s); retrying in %.2f s",
                             what, attempt, attempts, type(e).__name__, str(e).splitlines()[0][:200], delay)
                time.sleep(delay)

    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig
        mb = 1024 * 1024
        return TransferConfig(multipart_threshold=max(5, self.multipart_threshold_mb) * mb,
                              multipart_chunksize=max(5, self.multipart_chunk_mb) * mb)

    @property
    def _root(self) -> str:
        return self.prefix.strip("/") + "/" if self.prefix.strip("/") else ""

    def _full(self, key: str) -> str:
        return self._root + check_key(key)

    def _relative(self, full_key: str) -> str:
        return full_key[len(self._root):]

    def uri(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._full(key)}"

    def _is_missing(self, error) -> bool:
        return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")

    def stat(self, key: str) -> ObjectInfo:
        from botocore.exceptions import ClientError
        try:
            head = self._retrying(f"HEAD {key}", lambda: self.client.head_object(Bucket=self._bucket, Key=self._full(key)))
        except ClientError as e:
            if self._is_missing(e):
                raise FileNotFoundError(f"no object {key!r} in s3://{self._bucket}/{self._root}") from None
            raise
        return ObjectInfo(key=key, size=head["ContentLength"], version=head["ETag"].strip('"'),
                          modified=head.get("LastModified"))

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except FileNotFoundError:
            return False
        return True

    def list_objects(self, prefix: str, start_after: str = "", limit: int = 1000) -> list[ObjectInfo]:
        # StartAfter: S3 returns keys in UTF-8 binary order after the cursor, so each call costs
        # O(new keys), not O(all keys under the prefix).
        found: list[ObjectInfo] = []
        kwargs = {"Bucket": self._bucket, "Prefix": self._root + prefix}
        if start_after:
            kwargs["StartAfter"] = self._root + start_after
        while len(found) < limit:
            page = self._retrying(f"LIST {prefix}", lambda: self.client.list_objects_v2(
                **kwargs, MaxKeys=min(1000, limit - len(found))))
            for obj in page.get("Contents", []):
                # Listed as found, unchecked: the caller decides what to do with an unsafe name.
                found.append(ObjectInfo(key=self._relative(obj["Key"]), size=obj["Size"],
                                        version=obj["ETag"].strip('"'), modified=obj.get("LastModified")))
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
            kwargs.pop("StartAfter", None)
        return found[:limit]

    @contextmanager
    def open_local(self, key: str) -> Iterator[Path]:
        from botocore.exceptions import ClientError
        with tempfile.TemporaryDirectory(prefix="octavia-s3-") as tmp:
            path = Path(tmp) / PurePosixPath(key).name
            try:
                self._retrying(f"GET {key}", lambda: self.client.download_file(
                    self._bucket, self._full(key), str(path), Config=self._transfer_config()))
            except ClientError as e:
                if self._is_missing(e):
                    raise FileNotFoundError(f"no object {key!r} in s3://{self._bucket}/{self._root}") from None
                raise
            yield path

    def put_file(self, src: str | os.PathLike, key: str) -> ObjectInfo:
        src = Path(src)
        if not src.is_file():
            raise FileNotFoundError(f"{src}: no such file to store as {key!r}")
        # upload_file goes multipart above the threshold; S3 exposes the object only once the
        # upload completes, so readers never see a partial object.
        # A retried upload starts over from the local file (an interrupted multipart upload is aborted).
        self._retrying(f"PUT {key}", lambda: self.client.upload_file(
            str(src), self._bucket, self._full(key), Config=self._transfer_config()))
        return self.stat(key)

    def put_bytes(self, data: bytes, key: str) -> ObjectInfo:
        response = self._retrying(f"PUT {key}", lambda: self.client.put_object(
            Bucket=self._bucket, Key=self._full(key), Body=data))
        return ObjectInfo(key=key, size=len(data), version=response["ETag"].strip('"'))

    def put_json_if_absent(self, obj: Any, key: str) -> bool:
        # One conditional PUT (If-None-Match: *) instead of HEAD + PUT: half the round trips, no race.
        from botocore.exceptions import ClientError
        body = json.dumps(obj, indent=1, ensure_ascii=False).encode()
        try:
            # A retry after a PUT whose reply was lost answers "exists": the object is there either way.
            self._retrying(f"PUT {key}", lambda: self.client.put_object(
                Bucket=self._bucket, Key=self._full(key), Body=body, IfNoneMatch="*"))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self._retrying(f"DELETE {key}", lambda: self.client.delete_object(Bucket=self._bucket, Key=self._full(key)))

    def delete_many(self, keys: list[str]) -> None:
        # DeleteObjects takes up to 1000 keys per request.
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._full(k)} for k in keys[i:i + 1000]]
            response = self._retrying("DELETE (batch)", lambda batch=batch: self.client.delete_objects(
                Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}))
            if response.get("Errors"):
                first = response["Errors"][0]
                raise OSError(f"S3 refused to delete {len(response['Errors'])} objects, e.g. "
                              f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message')}")

    def sweep_partial_writes(self, older_than: dt.datetime) -> int:
        # Multipart uploads never completed (a worker killed mid-upload) keep their parts, billed,
        # until aborted; S3 lifecycle rules can do this too, an S3-compatible server may not.
        removed, marker = 0, {}
        while True:
            page = self._retrying("LIST multipart uploads", lambda marker=marker: self.client.list_multipart_uploads(
                Bucket=self._bucket, Prefix=self._root, **marker))
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < older_than:
                    self._retrying(f"ABORT {upload['Key']}", lambda u=upload: self.client.abort_multipart_upload(
                        Bucket=self._bucket, Key=u["Key"], UploadId=u["UploadId"]))
                    removed += 1
            if not page.get("IsTruncated"):
                return removed
            marker = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    def download_url(self, key: str, expires_s: int | None = None) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": self._full(key)},
            ExpiresIn=expires_s or self.url_expiry_s)

    def upload_url(self, key: str, expires_s: int | None = None) -> str:
        return self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self._bucket, "Key": self._full(key)},
            ExpiresIn=expires_s or self.url_expiry_s)
