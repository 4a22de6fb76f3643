"""Store selection by environment, and the `octavia upload` / `octavia url` commands on S3 and locally."""
import urllib.request

import pytest

from octavia_assets.cli import main
from octavia_assets.platform import media_store_for_env, upload_key
from octavia_assets.resources.storage import LocalMediaStore, S3MediaStore
from sensors.uploads import upload_tier


def test_local_store_is_the_default(monkeypatch, octavia_home):
    monkeypatch.delenv("OCTAVIA_STORAGE", raising=False)
    assert isinstance(media_store_for_env(), LocalMediaStore)
    monkeypatch.setenv("OCTAVIA_STORAGE", "ftp")
    with pytest.raises(ValueError, match="expected 'local' or 's3'"):
        media_store_for_env()
    monkeypatch.setenv("OCTAVIA_STORAGE", "s3")
    monkeypatch.delenv("OCTAVIA_S3_BUCKET", raising=False)
    with pytest.raises(ValueError, match="OCTAVIA_S3_BUCKET"):
        media_store_for_env()


def test_upload_keys_increase_and_carry_the_tier():
    import datetime as dt
    t = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
    a, b = upload_key("talk.mp4", "pro", t), upload_key("a.mp4", "free", t + dt.timedelta(seconds=1))
    assert a < b and a.startswith("uploads/20261122T100000Z-pro-") and a.endswith("/talk.mp4")
    assert upload_tier(a) == "pro" and upload_tier(b) == "free"


@pytest.fixture
def s3_configured(s3_store, monkeypatch):
    monkeypatch.setenv("OCTAVIA_STORAGE", "s3")
    monkeypatch.setenv("OCTAVIA_S3_BUCKET", s3_store.bucket)
    monkeypatch.setenv("OCTAVIA_S3_ENDPOINT_URL", s3_store.endpoint_url)
    return s3_store


def test_storage_s3_selects_the_s3_store_with_env_secrets(s3_configured):
    store = media_store_for_env()
    assert isinstance(store, S3MediaStore)
    import dagster as dg
    # Through Dagster's resource machinery the EnvVar fields resolve and the store works.
    with dg.build_resources({"media_store": store}) as resources:
        resources.media_store.put_bytes(b"x", "derived/v/x")
    assert s3_configured.read_bytes("derived/v/x") == b"x"


def test_cli_upload_and_url_on_s3(s3_configured, tmp_path, capsys):
    clip = tmp_path / "My clip.mp4"
    clip.write_bytes(b"video bytes")
    assert main(["upload", str(clip), "--tier", "pro"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("uploads/") and key.endswith("/My clip.mp4") and upload_tier(key) == "pro"
    assert s3_configured.read_bytes(key) == b"video bytes"

    assert main(["upload", str(clip), "--presign", "--expires", "600"]) == 0
    put_url = capsys.readouterr().out.strip()
    assert "X-Amz-Expires=600" in put_url

    assert main(["url", "v1"]) == 1
    assert "has no outputs yet" in capsys.readouterr().err
    s3_configured.put_bytes(b"dub", "outputs/v1/v1.dubbed.mp4")
    s3_configured.put_json({}, "outputs/v1/quality_report.json")
    assert main(["url", "v1"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert "X-Amz-Expires=86400" in lines["video"]
    with urllib.request.urlopen(lines["video"], timeout=10) as r:
        assert r.read() == b"dub"


def test_cli_upload_local_and_missing_file(octavia_home, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OCTAVIA_STORAGE", raising=False)
    assert main(["upload", str(tmp_path / "nope.mp4")]) == 1
    assert "no such file" in capsys.readouterr().err
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"v")
    assert main(["upload", str(clip)]) == 0
    key = capsys.readouterr().out.strip()
    assert (octavia_home / "media" / key).read_bytes() == b"v"
    assert main(["upload", str(clip), "--presign"]) == 1
    assert "no upload URLs" in capsys.readouterr().err
