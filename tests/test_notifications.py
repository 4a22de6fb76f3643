"""Completion webhook and failure notification, delivered to a real HTTP server on 127.0.0.1."""
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from octavia_assets.registry import register_upload
from octavia_assets.source import source_video
from sensors.notifications import WebhookNotifier, completion_event, failure_notification

SECRET = "test-secret"


@pytest.fixture
def receiver():
    """An HTTP endpoint that answers 503 to the first `fail_first` POSTs, then 200, and keeps what it got."""
    state = {"fail_first": 0, "calls": 0, "received": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["calls"] += 1
            if state["calls"] <= state["fail_first"]:
                self.send_response(503)
            else:
                state["received"].append((dict(self.headers), body))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/hooks/octavia"
    yield state
    server.shutdown()


def verify(headers, body) -> dict:
    expected = "sha256=" + hmac.new(SECRET.encode(), headers["X-Octavia-Timestamp"].encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Octavia-Signature"], expected)
    return json.loads(body)


def test_completion_webhook_is_signed_and_retried(receiver, media_store):
    receiver["fail_first"] = 2
    media_store.put_bytes(b"video", "outputs/v1/v1.dubbed.mp4")
    media_store.put_json({"source": "uploads/v1.mp4", "durations": {"max_stream_delta_frames": 0},
                          "speaker_count": 2, "mean_asr_confidence": 0.9,
                          "languages": [{"language": "pt", "lines": 10, "lines_not_fitting": 0,
                                         "integrated_lufs": -16.1}],
                          "checks": [{"passed": True}, {"passed": False}]}, "outputs/v1/quality_report.json")
    notifier = WebhookNotifier(url=receiver["url"], secret=SECRET, backoff_s=0.01)
    assert notifier.post(completion_event(media_store, "v1", "run-1")) == 200
    assert receiver["calls"] == 3, "two 503 answers, then delivered"
    (headers, body), = receiver["received"]
    event = verify(headers, body)
    assert event["event"] == "video.completed" and event["video"] == "v1" and event["run_id"] == "run-1"
    assert event["outputs"]["video"].endswith("outputs/v1/v1.dubbed.mp4")
    assert event["quality"]["checks_passed"] == 1 and event["quality"]["checks_total"] == 2
    assert event["quality"]["duration_match"] == {"max_stream_delta_frames": 0}
    # A tampered body fails verification.
    with pytest.raises(AssertionError):
        verify(headers, body.replace(b"v1", b"v2"))


def test_completion_event_carries_presigned_urls_on_s3(s3_store):
    s3_store.put_bytes(b"video", "outputs/v1/v1.dubbed.mp4")
    s3_store.put_json({"durations": {}, "checks": []}, "outputs/v1/quality_report.json")
    event = completion_event(s3_store, "v1", "run-1", expires_s=3600)
    assert "X-Amz-Signature=" in event["outputs"]["video"] and "X-Amz-Expires=3600" in event["outputs"]["video"]


def test_delivery_gives_up_after_the_retries(receiver):
    receiver["fail_first"] = 100
    notifier = WebhookNotifier(url=receiver["url"], secret=SECRET, max_retries=2, backoff_s=0.01)
    with pytest.raises(Exception, match="too many 503"):
        notifier.post({"event": "video.completed"})
    assert receiver["calls"] == 3


def test_failed_run_sends_a_failure_notification(receiver, media_store):
    with dg.instance_for_test() as instance:
        info = media_store.put_bytes(b"", "uploads/empty.mp4")
        video = register_upload(media_store, info)
        instance.add_dynamic_partitions("videos", [video])
        result = dg.materialize([source_video], partition_key=video, instance=instance,
                                resources={"media_store": media_store}, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        ctx = dg.build_run_status_sensor_context(
            sensor_name="failure_notification", dagster_event=failure, dagster_instance=instance, dagster_run=run,
            resources={"webhook": WebhookNotifier(url=receiver["url"], secret=SECRET)},
        ).for_run_failure()
        failure_notification(ctx)
    (headers, body), = receiver["received"]
    event = verify(headers, body)
    assert event["event"] == "video.failed" and event["video"] == video and event["run_id"] == result.run_id
    assert event["failed_steps"][0]["step"] == "source_video"
    assert "empty (0 bytes)" in event["failed_steps"][0]["error"]




def test_delivery_run_triggers_the_signed_completion_webhook(receiver, octavia_home, tmp_path):
    """A real delivery run (fast test doubles for the model stages) -> the completion sensor -> POST."""
    from octavia_assets.definitions import defs as real_defs
    from octavia_assets.partitions import video_language_key
    from sensors.notifications import completion_webhook
    from tests.conftest import SAMPLE_VIDEO, make_media
    from tests.fakes import fake_resources

    defs = dg.Definitions(assets=list(real_defs.assets), jobs=list(real_defs.jobs), resources=fake_resources())
    store = fake_resources()["media_store"]
    clip = make_media(tmp_path / "clip.mp4", "-i", str(SAMPLE_VIDEO), "-t", "8", "-c", "copy")
    with dg.instance_for_test() as instance:
        video = register_upload(store, store.put_file(clip, "uploads/clip.mp4"))
        instance.add_dynamic_partitions("videos", [video])
        for job, pk in [("ingest_job", video), ("dub_job", video_language_key(video, "pt")), ("deliver_job", video)]:
            result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=pk)
        run = instance.get_run_by_id(result.run_id)
        success = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
        ctx = dg.build_run_status_sensor_context(
            sensor_name="completion_webhook", dagster_event=success, dagster_instance=instance, dagster_run=run,
            resources={"media_store": store, "webhook": WebhookNotifier(url=receiver["url"], secret=SECRET)})
        assert completion_webhook(ctx) is None
    (headers, body), = receiver["received"]
    event = verify(headers, body)
    assert event["video"] == video and event["run_id"] == result.run_id
    assert set(event["outputs"]) == {"video", "quality_report"}
    quality = event["quality"]
    assert quality["duration_match"]["max_stream_delta_frames"] == 0.0
    assert quality["languages"][0]["language"] == "pt" and quality["speaker_count"] == 2
