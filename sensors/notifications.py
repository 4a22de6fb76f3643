"""Run-status sensors: a signed completion webhook when a video's dub is delivered, and a failure notice.

The webhook POSTs JSON to OCTAVIA_WEBHOOK_URL with headers ``X-Octavia-Timestamp`` and
``X-Octavia-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with OCTAVIA_WEBHOOK_SECRET>``
(the receiver recomputes it and rejects stale timestamps). Deliveries are retried with exponential
backoff on connection errors, 429 and 5xx.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import dagster as dg
from pydantic import Field

from octavia_assets.common import output_key
from octavia_assets.resources.storage import MediaStore

#: the asset whose materialization completes a video: its success fires the completion webhook.
COMPLETION_ASSET = dg.AssetKey("quality_report")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookNotifier(dg.ConfigurableResource):
    """Delivers signed JSON events to one HTTP endpoint; no URL means notifications are off."""

    url: str = Field(default="", description="endpoint receiving POSTed events; empty disables them")
    secret: str = Field(default="", description="HMAC-SHA256 key shared with the receiver")
    max_retries: int = 4
    backoff_s: float = Field(default=1.0, description="first retry delay; doubles on each retry")
    timeout_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def post(self, event: dict[str, Any]) -> int:
        """POST ``event``; returns the final HTTP status, raises after the last failed attempt."""
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry
        body = json.dumps(event, sort_keys=True, ensure_ascii=False).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Octavia-Timestamp": timestamp,
                   "X-Octavia-Event": event.get("event", ""), "User-Agent": "octavia-webhook/1"}
        if self.secret:
            headers["X-Octavia-Signature"] = sign(self.secret, timestamp, body)
        retry = Retry(total=self.max_retries, backoff_factor=self.backoff_s, allowed_methods=None,
                      status_forcelist=(429, 500, 502, 503, 504), respect_retry_after_header=True,
                      raise_on_status=True)
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(max_retries=retry))
            session.mount("https://", HTTPAdapter(max_retries=retry))
            response = session.post(self.url, data=body, headers=headers, timeout=self.timeout_s)
            response.raise_for_status()
            return response.status_code


def _quality_summary(report: dict) -> dict:
    durations = report.get("durations", {})
    checks = report.get("checks", [])
    return {
        "duration_match": durations,
        "speaker_count": report.get("speaker_count"),
        "mean_asr_confidence": report.get("mean_asr_confidence"),
        "languages": [{k: s.get(k) for k in ("language", "lines", "lines_not_fitting", "integrated_lufs",
                                               "true_peak_dbtp", "speedup_max")} for s in report.get("languages", [])],
        "checks_passed": sum(bool(c.get("passed")) for c in checks),
        "checks_total": len(checks),
    }


def completion_event(store: MediaStore, video: str, run_id: str, expires_s: int | None = None) -> dict:
    """The completion payload: outputs as signed download URLs plus the quality summary."""
    video_key, report_key = output_key(video, f"{video}.dubbed.mp4"), output_key(video, "quality_report.json")
    report = store.read_json(report_key)
    return {
        "event": "video.completed", "video": video, "run_id": run_id, "source": report.get("source"),
        "outputs": {"video": store.download_url(video_key, expires_s),
                    "quality_report": store.download_url(report_key, expires_s)},
        "quality": _quality_summary(report),
    }


def _video_of_run(run: dg.DagsterRun) -> str | None:
    partition = run.tags.get("dagster/partition")
    if not partition:
        return None
    # video x language runs carry "lang|video" (dimensions in name order); per-video runs the key itself
    return run.tags.get("dagster/partition/video") or partition.split("|")[-1]


def _materialized(instance: dg.DagsterInstance, run: dg.DagsterRun, key: dg.AssetKey) -> bool:
    """Whether the run materialized ``key``: whole-job runs (deliver_job, the CLI) carry an empty
    asset_selection, so the run's own events are what tell."""
    if run.asset_selection and key not in run.asset_selection:
        return False
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return any(r.event_log_entry.asset_materialization.asset_key == key for r in records)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitor_all_code_locations=False,
                      minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
                      name="completion_webhook")
def completion_webhook(context: dg.RunStatusSensorContext, media_store: MediaStore,
                       webhook: WebhookNotifier) -> dg.SkipReason | None:
    run = context.dagster_run
    video = _video_of_run(run)
    if not webhook.enabled or video is None or not _materialized(context.instance, run, COMPLETION_ASSET):
        return dg.SkipReason("not a delivery run, or no OCTAVIA_WEBHOOK_URL")
    status = webhook.post(completion_event(media_store, video, run.run_id))
    context.log.info(f"completion webhook for video {video}: HTTP {status}")
    return None


@dg.run_failure_sensor(monitor_all_code_locations=False, minimum_interval_seconds=30,
                       default_status=dg.DefaultSensorStatus.RUNNING, name="failure_notification")
def failure_notification(context: dg.RunFailureSensorContext, webhook: WebhookNotifier) -> dg.SkipReason | None:
    if not webhook.enabled:
        return dg.SkipReason("no OCTAVIA_WEBHOOK_URL")
    run = context.dagster_run
    steps = [{"step": e.step_key, "error": (e.step_failure_data.user_failure_data.description
                                            if e.step_failure_data.user_failure_data else None)
              or (e.step_failure_data.error.message.strip().splitlines() or [""])[-1]}
             for e in context.get_step_failure_events()]
    event = {"event": "video.failed", "video": _video_of_run(run), "run_id": run.run_id, "job": run.job_name,
             "reason": context.failure_event.message, "failed_steps": steps,
             "trigger": run.tags.get("octavia/trigger")}
    status = webhook.post(event)
    context.log.info(f"failure notification for run {run.run_id}: HTTP {status}")
    return None
