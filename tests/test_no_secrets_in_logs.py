"""No secrets or presigned URLs in logs: a run on the S3 media store with credentials and a voice
master key set, whose event log, captured compute logs, Python log records and process output are
scanned for the secret values and for presigned-URL signatures."""
import base64
import json
import logging
import os
import re
import secrets
import shutil
import uuid

import dagster as dg

from octavia_assets.definitions import defs as real_defs
from octavia_assets.platform import media_store_for_env
from octavia_assets.registry import register_upload
from tests.conftest import REPO, SAMPLE_VIDEO, make_media
from tests.fakes import fake_resources

SIGNATURES = re.compile(r"X-Amz-Signature=|X-Amz-Credential=|AWSAccessKeyId=|Signature=[0-9A-Za-z%/+]{16}|"
                        r"Authorization: AWS4-HMAC-SHA256")


def leaks(text: str, secret_values: list[str]) -> list[str]:
    found = [f"secret #{i}" for i, s in enumerate(secret_values) if s and s in text]
    return found + [m.group(0) for m in SIGNATURES.finditer(text)]


def test_the_leak_scanner_finds_what_it_looks_for(s3_store):
    url = s3_store.download_url("outputs/v/v.dubbed.mp4")
    assert leaks(f"log line {url}", []) and leaks("key=abc123", ["abc123"]) and not leaks("clean line", ["abc123"])


def test_a_run_on_s3_logs_no_secret_and_no_presigned_url(s3_env, tmp_path, monkeypatch, capfd, caplog):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")   # JSON logs, local compute logs
    voice_key = base64.b64encode(secrets.token_bytes(32)).decode()
    secret_key = "octavia-test-secret-" + secrets.token_hex(8)   # what moto accepts with any value
    bucket = f"octavia-logs-{uuid.uuid4().hex[:10]}"
    for var, value in {"DAGSTER_HOME": str(home), "OCTAVIA_STORAGE": "s3", "OCTAVIA_S3_BUCKET": bucket,
                       "OCTAVIA_S3_ENDPOINT_URL": s3_env, "AWS_SECRET_ACCESS_KEY": secret_key,
                       "OCTAVIA_VOICE_KEY": voice_key, "OCTAVIA_WEBHOOK_SECRET": "whsec-" + secrets.token_hex(8),
                       "OCTAVIA_LOG_FORMAT": "json"}.items():
        monkeypatch.setenv(var, value)
    secret_values = [secret_key, voice_key, os.environ["OCTAVIA_WEBHOOK_SECRET"],
                     base64.b64decode(voice_key).hex()]
    store = media_store_for_env()
    store.client.create_bucket(Bucket=bucket)
    clip = make_media(tmp_path / "talk.mp4", "-t", "5", "-i", str(SAMPLE_VIDEO), "-c:v", "copy", "-c:a", "aac")
    video = register_upload(store, store.put_file(clip, "uploads/talk.mp4"))
    defs = dg.Definitions(assets=list(real_defs.assets), jobs=list(real_defs.jobs),
                          resources={**fake_resources(), "media_store": store})
    caplog.set_level(logging.DEBUG)     # every Python log record, whatever a deployment's level
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", [video])
        result = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, partition_key=video)
        assert result.success
        # The store hands out presigned URLs (notifications, `octavia url`): those must stay out of logs too.
        url = store.download_url(f"derived/{video}/voices/voices.json")
        assert leaks(url, [])
        events = [r.event_log_entry for r in instance.get_records_for_run(result.run_id, limit=100_000).records]
        event_text = "\n".join(dg.serialize_value(e) for e in events)
        run_text = dg.serialize_value(instance.get_run_by_id(result.run_id))
    assert any(e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.LOGS_CAPTURED for e in events)
    compute_logs = [p for p in (home / "storage").rglob("*") if p.is_file() and p.suffix in (".out", ".err", ".complete", "")]
    compute_text = "\n".join(p.read_text(errors="replace") for p in compute_logs)
    out, err = capfd.readouterr()
    records = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    for where, text in {"event log": event_text, "run record": run_text, "compute logs": compute_text,
                        "stdout": out, "stderr": err, "python log records": records}.items():
        assert not leaks(text, secret_values), f"{where} leaks: {leaks(text, secret_values)[:5]}"
    assert len(event_text) > 10_000 and (out + err), "nothing was captured: the scan would prove nothing"
    print(json.dumps({"events": len(events), "compute_log_files": len(compute_logs),
                      "python_records": len(caplog.records), "stdout_chars": len(out), "stderr_chars": len(err)}))
