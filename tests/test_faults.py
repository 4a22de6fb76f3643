"""Faults in the platform's servers: the S3 server going away in the middle of an upload or a read
(a TCP proxy in front of the real S3 server is cut, then restored on the same port; the server keeps
its state, as a restarted or briefly unreachable S3 endpoint does), and PostgreSQL restarted between
two runs (a private cluster started for the test, so the machine's server is left alone)."""
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from octavia_assets.resources.storage import S3MediaStore
from tests.conftest import REPO, SAMPLE_VIDEO
from tests.servers import CuttableProxy, free_port

MB = 1024 * 1024


@pytest.fixture
def proxied_store(s3_env):
    """An S3MediaStore reaching the S3 server through a proxy the test can cut. botocore's own retries
    are off so every retry is the store's (counted, logged, with exponential backoff)."""
    proxy = CuttableProxy(int(s3_env.rsplit(":", 1)[1]))
    bucket = f"octavia-faults-{uuid.uuid4().hex[:10]}"
    store = S3MediaStore(bucket=bucket, endpoint_url=proxy.url, region_name="us-east-1", botocore_max_attempts=1,
                         retry_attempts=8, retry_base_s=0.25, retry_max_s=2.0, connect_timeout_s=2, read_timeout_s=5,
                         multipart_threshold_mb=5, multipart_chunk_mb=5)
    store.client.create_bucket(Bucket=bucket)
    yield store, proxy
    proxy.close()


def _payload(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(size))
    return path


def test_s3_outage_in_the_middle_of_an_upload_is_retried_until_the_server_returns(proxied_store, tmp_path, caplog):
    store, proxy = proxied_store
    src = _payload(tmp_path, 12 * MB)   # three parts of 5 MB: a multipart upload
    proxy.cut_after(3 * MB, down_s=1.5, direction="up")
    caplog.set_level(logging.WARNING, logger="octavia.storage")
    started = time.monotonic()
    info = store.put_file(src, "uploads/big.bin")
    elapsed = time.monotonic() - started
    assert len(proxy.cuts) == 1 and len(proxy.restores) == 2, "the outage did not happen mid-upload"
    assert elapsed >= 1.5, "the upload cannot have finished while the server was unreachable"
    assert store.retries >= 1 and sum("retrying in" in r.getMessage() for r in caplog.records) == store.retries
    # Whole and correct once the server is back: same bytes, one object, no stray part left visible.
    assert info.size == 12 * MB
    assert hashlib.sha256(store.read_bytes("uploads/big.bin")).digest() == hashlib.sha256(src.read_bytes()).digest()
    assert [o.key for o in store.list_objects("")] == ["uploads/big.bin"]
    print(f"upload: outage 1.5 s after 3 MB of 12 MB, {store.retries} retries, done in {elapsed:.2f} s")


def test_s3_outage_in_the_middle_of_a_read_is_retried_until_the_server_returns(proxied_store, tmp_path, caplog):
    store, proxy = proxied_store
    src = _payload(tmp_path, 12 * MB)
    store.put_file(src, "derived/v/stems/vocals.wav")
    retries_before = store.retries
    proxy.cut_after(2 * MB, down_s=1.5, direction="down")
    caplog.set_level(logging.WARNING, logger="octavia.storage")
    started = time.monotonic()
    data = store.read_bytes("derived/v/stems/vocals.wav")
    elapsed = time.monotonic() - started
    assert len(proxy.cuts) == 1 and elapsed >= 1.5
    assert store.retries > retries_before
    assert data == src.read_bytes()
    print(f"read: outage 1.5 s after 2 MB of 12 MB, {store.retries - retries_before} retries, done in {elapsed:.2f} s")


def test_s3_outage_longer_than_the_retry_budget_fails_with_the_connection_error(proxied_store):
    from botocore.exceptions import EndpointConnectionError
    store, proxy = proxied_store
    store.put_bytes(b"x", "k")
    quick = store.model_copy(update={"retry_attempts": 3, "retry_base_s": 0.05})
    proxy.cut()   # no restore
    started = time.monotonic()
    with pytest.raises(EndpointConnectionError):
        quick.read_bytes("k")
    # 3 attempts, 2 backoffs of at most 0.05 and 0.1 s: it gives up promptly instead of hanging.
    assert quick.retries == 2 and time.monotonic() - started < 5


def test_a_missing_object_is_not_retried(proxied_store):
    store, _ = proxied_store
    with pytest.raises(FileNotFoundError):
        store.stat("nothing/here")
    assert store.retries == 0


# --- PostgreSQL restarted between two runs ------------------------------------------------------

def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess:
    prefix = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
    return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=60)


@pytest.fixture
def private_postgres():
    """A PostgreSQL cluster of this test's own (initdb in a temp dir, a free port), so it can be
    restarted without touching the machine's server."""
    pytest.importorskip("psycopg2", reason="needs psycopg2 (installed with dagster-postgres)")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("needs PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/<version>/bin")
    if os.geteuid() == 0:
        try:
            import pwd
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("initdb refuses to run as root and there is no 'postgres' user to run it as")
        if shutil.which("runuser") is None:
            pytest.skip("initdb refuses to run as root and runuser is missing")
    data = Path(tempfile.mkdtemp(prefix="octavia-pg-"))
    if os.geteuid() == 0:
        os.chown(data, pw.pw_uid, pw.pw_gid)
    port = free_port()
    pgdata, log = data / "data", data / "server.log"
    r = _as_postgres(str(bin_dir / "initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres", "--no-sync")
    if r.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        pytest.skip(f"initdb failed: {r.stderr.strip()[-300:]}")

    def ctl(*args):
        r = _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w", "-t", "30", *args)
        assert r.returncode == 0, f"pg_ctl {args[0]}: {r.stdout}{r.stderr}{log.read_text()[-2000:] if log.exists() else ''}"

    opts = f"-p {port} -h 127.0.0.1 -k {data} -c fsync=off"
    ctl("start", "-o", opts)
    try:
        yield {"host": "127.0.0.1", "port": port, "restart": lambda: ctl("restart", "-m", "fast", "-o", opts)}
    finally:
        _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop")
        shutil.rmtree(data, ignore_errors=True)


def test_postgres_restarted_between_runs_loses_nothing(private_postgres, tmp_path, monkeypatch, media_store):
    from octavia_assets.audio import audio
    from octavia_assets.registry import register_upload
    from octavia_assets.source import source_video
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for var, value in {"DAGSTER_PG_HOST": private_postgres["host"], "DAGSTER_PG_PORT": str(private_postgres["port"]),
                       "DAGSTER_PG_USERNAME": "postgres", "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "postgres"}.items():
        monkeypatch.setenv(var, value)
    video = register_upload(media_store, media_store.put_file(SAMPLE_VIDEO, "uploads/sample.mp4"))

    def run(instance):
        result = dg.materialize([source_video, audio], partition_key=video, instance=instance,
                                resources={"media_store": media_store})
        assert result.success
        return result.run_id

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("videos", [video])
        first = run(instance)
        started = time.monotonic()
        private_postgres["restart"]()
        restart_s = time.monotonic() - started
        # The same instance object (the long-lived daemon's or webserver's) carries on after the restart.
        second = run(instance)
    # And a fresh process's view: both runs, all their events and materializations are there.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run_id in (first, second):
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_dynamic_partitions("videos") == [video]
        for asset in (source_video, audio):
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[video]), limit=10).records
            assert sorted(r.run_id for r in records) == sorted([first, second])
    print(f"postgres restarted in {restart_s:.2f} s between runs; both runs and 4 materializations read back")
