"""Media store: where uploads land and every stage's artifacts live, under deterministic keys.

Keys are POSIX-style relative paths (``uploads/talk.mp4``, ``derived/<video>/stems/vocals.wav``).
Writes are atomic: readers never see a partially written object.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
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
        top = base / prefix.rstrip("/") if prefix.rstrip("/") else base
        if not top.is_dir():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(base).as_posix()
            for name in filenames:
                if name.startswith("."):  # in-flight temp files and hidden files
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key > start_after and key.startswith(prefix):
                    found.append((key, Path(dirpath) / name))
        found.sort()
        # Listed as found, unchecked: the caller decides what to do with an unsafe name.
        return [self._info(key, path) for key, path in found[:limit]]

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
    multipart_threshold_mb: int = Field(default=64, description="files above this upload in parts (S3 minimum 5)")
    multipart_chunk_mb: int = Field(default=64, description="part size of multipart uploads and downloads")

    _client: Any = PrivateAttr(default=None)

    @property
    def _bucket(self) -> str:
        return _resolved(self.bucket)

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url or None, region_name=self.region_name or None,
                aws_access_key_id=_resolved(self.aws_access_key_id) or None,
                aws_secret_access_key=_resolved(self.aws_secret_access_key) or None,
                aws_session_token=_resolved(self.aws_session_token) or None,
                config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32,
                              # path-style works with every S3-compatible server (MinIO, moto, Ceph).
                              s3={"addressing_style": "path"} if self.endpoint_url else None))
        return self._client

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
            head = self.client.head_object(Bucket=self._bucket, Key=self._full(key))
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
            page = self.client.list_objects_v2(**kwargs, MaxKeys=min(1000, limit - len(found)))
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
                self.client.download_file(self._bucket, self._full(key), str(path), Config=self._transfer_config())
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
        self.client.upload_file(str(src), self._bucket, self._full(key), Config=self._transfer_config())
        return self.stat(key)

    def put_bytes(self, data: bytes, key: str) -> ObjectInfo:
        response = self.client.put_object(Bucket=self._bucket, Key=self._full(key), Body=data)
        return ObjectInfo(key=key, size=len(data), version=response["ETag"].strip('"'))

    def put_json_if_absent(self, obj: Any, key: str) -> bool:
        # One conditional PUT (If-None-Match: *) instead of HEAD + PUT: half the round trips, no race.
        from botocore.exceptions import ClientError
        body = json.dumps(obj, indent=1, ensure_ascii=False).encode()
        try:
            self.client.put_object(Bucket=self._bucket, Key=self._full(key), Body=body, IfNoneMatch="*")
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self._bucket, Key=self._full(key))

    def delete_many(self, keys: list[str]) -> None:
        # DeleteObjects takes up to 1000 keys per request.
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._full(k)} for k in keys[i:i + 1000]]
            response = self.client.delete_objects(Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise OSError(f"S3 refused to delete {len(response['Errors'])} objects, e.g. "
                              f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message')}")

    def download_url(self, key: str, expires_s: int | None = None) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": self._full(key)},
            ExpiresIn=expires_s or self.url_expiry_s)

    def upload_url(self, key: str, expires_s: int | None = None) -> str:
        return self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self._bucket, "Key": self._full(key)},
            ExpiresIn=expires_s or self.url_expiry_s)
