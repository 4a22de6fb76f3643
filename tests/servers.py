"""Real servers for the production-platform tests: an S3-compatible HTTP server and PostgreSQL.

The S3 server is moto's standalone server (``moto[server]``) run as a separate process on
127.0.0.1, so every call goes through boto3's HTTP stack, signing and XML parsing, as against AWS.
tests/conftest.py imports the fixtures, so every test module can use them.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "octavia-test", "AWS_SECRET_ACCESS_KEY": "octavia-test-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3_server():
    """moto's standalone S3 server in its own process on a free port; its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 server (moto.server) did not start on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_endpoint():
    """URL of an S3-compatible server running in its own process for the whole session."""
    pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra) for a local S3 server")
    server = moto_s3_server()
    try:
        url = server.__enter__()
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def s3_env(monkeypatch, s3_endpoint):
    for k, v in S3_CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    return s3_endpoint


@pytest.fixture
def s3_store(s3_env):
    """An S3MediaStore on a fresh bucket of the local S3 server."""
    from octavia_assets.resources.storage import S3MediaStore
    bucket = f"octavia-test-{uuid.uuid4().hex[:12]}"
    store = S3MediaStore(bucket=bucket, endpoint_url=s3_env, region_name="us-east-1")
    store.client.create_bucket(Bucket=bucket)
    return store


PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def pg_params() -> dict:
    """Where the machine's PostgreSQL server is (OCTAVIA_TEST_PG_* override it)."""
    return {"host": os.environ.get("OCTAVIA_TEST_PG_HOST", PG_HOST),
            "port": int(os.environ.get("OCTAVIA_TEST_PG_PORT", PG_PORT)),
            "user": os.environ.get("OCTAVIA_TEST_PG_USER", PG_USER),
            "password": os.environ.get("OCTAVIA_TEST_PG_PASSWORD", "")}


def postgres_unavailable() -> str | None:
    """None when the server answers, else why not (one line)."""
    try:
        import psycopg2
        psycopg2.connect(dbname=os.environ.get("OCTAVIA_TEST_PG_DB", "test"), connect_timeout=3, **pg_params()).close()
    except Exception as e:  # noqa: BLE001 - any reason is a reason to skip, printed
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return None


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "octavia_test"):
    """A fresh, empty database on that server (connection parameters + db_name), dropped afterwards."""
    import psycopg2
    params = pg_params()
    admin = psycopg2.connect(dbname=os.environ.get("OCTAVIA_TEST_PG_DB", "test"), connect_timeout=3, **params)
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {**params, "db_name": name}
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_db():
    """A fresh, empty database on the PostgreSQL server of this machine, dropped afterwards."""
    pytest.importorskip("psycopg2", reason="needs psycopg2 (installed with dagster-postgres)")
    if why := postgres_unavailable():
        params = pg_params()
        pytest.skip(f"needs a PostgreSQL server at {params['host']}:{params['port']} (user {params['user']}): {why}")
    with fresh_postgres_database() as db:
        yield db


class CuttableProxy:
    """A TCP proxy in front of a server that a test can cut like a network outage: while cut, the
    port refuses connections and open ones are reset; restored, it listens on the same port again,
    and the server behind it (with its state) never noticed. ``cut_after(n, down_s)`` cuts once
    ``n`` bytes have gone through in the given direction (mid-upload or mid-download)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        import threading
        self.host, self.target_port = host, target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._armed: tuple[str, int, float] | None = None
        self._counted = 0
        self.cuts: list[float] = []       # monotonic times of each cut
        self.restores: list[float] = []
        self.restore()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def restore(self) -> None:
        import threading
        with self._lock:
            if self._listener is not None:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, self.port))
            s.listen(64)
            self._listener = s
            self.restores.append(time.monotonic())
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def cut(self, down_s: float | None = None) -> None:
        import threading
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
            self.cuts.append(time.monotonic())
        for s in ([listener] if listener else []) + conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        if down_s is not None:
            threading.Timer(down_s, self.restore).start()

    def cut_after(self, n_bytes: int, down_s: float, direction: str = "up") -> None:
        """Cut once ``n_bytes`` more have passed client->server ("up") or server->client ("down")."""
        with self._lock:
            self._counted = 0
            self._armed = (direction, n_bytes, down_s)

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        import threading
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.host, self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:   # cut meanwhile
                    client.close(), upstream.close()
                    return
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, "down"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            trip = None
            with self._lock:
                if self._armed and self._armed[0] == direction:
                    self._counted += len(data)
                    if self._counted >= self._armed[1]:
                        trip, self._armed = self._armed[2], None
            if trip is not None:
                self.cut(down_s=trip)
                return
            try:
                dst.sendall(data)
            except OSError:
                return
