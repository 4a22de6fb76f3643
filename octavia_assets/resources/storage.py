"""Media store: where uploads land and every stage's artifacts live, under deterministic keys.

Keys are POSIX-style relative paths (``uploads/talk.mp4``, ``derived/<video>/stems/vocals.wav``).
Writes are atomic: readers never see a partially written object.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg


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


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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

    # Conveniences built on the primitives above.
    def put_bytes(self, data: bytes, key: str) -> ObjectInfo:
        with tempfile.TemporaryDirectory(prefix="octavia-put-") as tmp:
            path = Path(tmp) / "object"
            path.write_bytes(data)
            return self.put_file(path, key)

    def put_json(self, obj: Any, key: str) -> ObjectInfo:
        return self.put_bytes(json.dumps(obj, indent=1, ensure_ascii=False, sort_keys=False).encode(), key)

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
        return ObjectInfo(key=key, size=st.st_size, version=f"{st.st_size}-{st.st_mtime_ns}")

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
