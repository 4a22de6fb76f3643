"""Real servers for the production-platform tests: an S3-compatible HTTP server and PostgreSQL.

The S3 server is moto's standalone server (``moto[server]``) run as a separate process on
127.0.0.1, so every call goes through boto3's HTTP stack, signing and XML parsing, as against AWS.
tests/conftest.py imports the fixtures, so every test module can use them.
"""
from __future__ import annotations

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


@pytest.fixture(scope="session")
def s3_endpoint():
    """URL of an S3-compatible server running in its own process for the whole session."""
    pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra) for a local S3 server")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the S3 server (moto.server) did not start on {url}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


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


@pytest.fixture
def postgres_db():
    """A fresh, empty database on the PostgreSQL server of this machine, dropped afterwards."""
    psycopg2 = pytest.importorskip("psycopg2", reason="needs psycopg2 (installed with dagster-postgres)")
    params = {"host": os.environ.get("OCTAVIA_TEST_PG_HOST", PG_HOST),
              "port": int(os.environ.get("OCTAVIA_TEST_PG_PORT", PG_PORT)),
              "user": os.environ.get("OCTAVIA_TEST_PG_USER", PG_USER),
              "password": os.environ.get("OCTAVIA_TEST_PG_PASSWORD", "")}
    try:
        admin = psycopg2.connect(dbname=os.environ.get("OCTAVIA_TEST_PG_DB", "test"), connect_timeout=3, **params)
    except psycopg2.OperationalError as e:
        pytest.skip(f"needs a PostgreSQL server at {params['host']}:{params['port']} "
                    f"(user {params['user']}): {str(e).strip().splitlines()[0]}")
    admin.autocommit = True
    name = f"octavia_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {**params, "db_name": name}
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
