"""Observability: JSON log lines with video and stage, and Prometheus metrics from the instance.

* Logs: with ``OCTAVIA_LOG_FORMAT=json`` every run also writes one JSON object per log record on
  stdout (``ts, level, message, run_id, job, stage, video, lang, event``) for a log shipper (Loki,
  CloudWatch, Elasticsearch), through the instance-level handler in dagster.yaml; deploy/dagster.yaml
  installs it unconditionally.
* Metrics: ``octavia metrics`` serves ``/metrics`` for Prometheus. It reads the instance's event log
  incrementally (a storage-id cursor per event type, so a scrape costs O(new events)) and counts
  runs by status at scrape time. Works against the SQLite home and the Postgres deploy instance.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import threading

import dagster as dg

#: seconds; a stage takes from a second (probe) to hours (transcript of a 4 h upload on a CPU).
STAGE_SECONDS_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record; Dagster's run context (run, job, step, partition) as fields."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        tags = meta.get("job_tags") or {}
        event = meta.get("dagster_event")
        multi = "dagster/partition/video" in tags
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": meta.get("orig_message") or record.getMessage(),
            "run_id": meta.get("run_id"),
            "job": meta.get("job_name"),
            "stage": meta.get("step_key") or meta.get("op_name"),
            "video": tags.get("dagster/partition/video") if multi else tags.get("dagster/partition"),
            "lang": tags.get("dagster/partition/lang"),
            "event": event.event_type_value if event is not None else None,
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in entry.items() if v is not None}, ensure_ascii=False)


class JsonLogHandler(logging.StreamHandler):
    """Writes every Dagster log record of a run as a JSON line (stdout by default).

    Installed for every run by the instance's ``python_logs.dagster_handler_config`` (dagster.yaml),
    so it covers runs from sensors, automation, schedules, the UI and ``octavia dub`` alike.
    ``when="env"`` (the repo's dagster.yaml) writes only when OCTAVIA_LOG_FORMAT=json;
    ``when="always"`` (deploy/dagster.yaml) always writes.
    """

    def __init__(self, stream=None, when: str = "env"):
        super().__init__(stream if stream is not None else sys.stdout)
        if when not in ("env", "always"):
            raise ValueError(f"JsonLogHandler when={when!r}: expected 'env' or 'always'")
        self.enabled = when == "always" or log_format() == "json"
        self.setFormatter(JsonLogFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        if self.enabled:
            super().emit(record)


def log_format() -> str:
    """OCTAVIA_LOG_FORMAT: "text" (Dagster's console lines only, the default) or "json"."""
    kind = os.environ.get("OCTAVIA_LOG_FORMAT", "text").strip().lower() or "text"
    if kind not in ("text", "json"):
        raise ValueError(f"OCTAVIA_LOG_FORMAT={kind!r}: expected 'text' or 'json'")
    return kind


class InstanceMetrics:
    """A Prometheus collector over one Dagster instance.

    ``octavia_stage_duration_seconds{stage}`` (histogram of successful steps),
    ``octavia_stage_failures_total{stage}``, ``octavia_run_failures_total{job}``, and
    ``octavia_runs{status}`` with ``octavia_run_queue_depth`` (runs waiting in the queue).
    Counters cover the instance's history since the exporter started reading it (all of it, from
    the first scrape), so they only grow, even when retention deletes old runs.
    """

    #: event types read per run; everything else in the event log is skipped by the query.
    EVENTS = frozenset({dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
                        dg.DagsterEventType.RUN_FAILURE})

    def __init__(self, instance: dg.DagsterInstance):
        from prometheus_client import Counter, Histogram
        self.instance = instance
        self._lock = threading.Lock()
        # Read per run with the run's own event cursor: works on SQLite's run-sharded event log
        # (the embedded default) and on Postgres alike.
        self._run_cursors: dict[str, str | None] = {}
        self._open_runs: set[str] = set()
        self._updated_after: dt.datetime | None = None
        self.stage_seconds = Histogram("octavia_stage_duration_seconds", "Duration of successful stage steps",
                                       ["stage"], buckets=STAGE_SECONDS_BUCKETS, registry=None)
        self.stage_failures = Counter("octavia_stage_failures", "Stage steps that failed", ["stage"], registry=None)
        self.run_failures = Counter("octavia_run_failures", "Runs that failed", ["job"], registry=None)

    def _count(self, run_id: str) -> None:
        connection = self.instance.get_records_for_run(run_id, cursor=self._run_cursors.get(run_id),
                                                      of_type=set(self.EVENTS))
        for record in connection.records:
            event = record.event_log_entry.dagster_event
            if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                self.stage_seconds.labels(stage=event.step_key).observe(event.event_specific_data.duration_ms / 1000.0)
            elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
                self.stage_failures.labels(stage=event.step_key).inc()
            else:
                self.run_failures.labels(job=event.job_name).inc()
        self._run_cursors[run_id] = connection.cursor

    def refresh(self) -> None:
        """Count the events added since the last call: those of runs updated since then, and of runs
        that were still going (their steps log events without touching the run record)."""
        with self._lock:
            filters = dg.RunsFilter(updated_after=self._updated_after) if self._updated_after else None
            records = self.instance.get_run_records(filters, order_by="update_timestamp", ascending=True)
            runs = {r.dagster_run.run_id: r.dagster_run.is_finished for r in records}
            for run_id in self._open_runs - runs.keys():
                run = self.instance.get_run_by_id(run_id)
                runs[run_id] = run is None or run.is_finished
            for run_id, finished in runs.items():
                self._count(run_id)
                (self._open_runs.discard if finished else self._open_runs.add)(run_id)
            if records:
                # A minute of overlap: runs updated within the same instant are re-read, and their
                # cursors make that free of double counting; older cursors are dropped.
                latest = records[-1].update_timestamp
                self._updated_after = latest - dt.timedelta(minutes=1)
                keep = {r.dagster_run.run_id for r in records if r.update_timestamp > self._updated_after}
                self._run_cursors = {k: v for k, v in self._run_cursors.items() if k in keep or k in self._open_runs}

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        self.refresh()
        yield from self.stage_seconds.collect()
        yield from self.stage_failures.collect()
        yield from self.run_failures.collect()
        runs = GaugeMetricFamily("octavia_runs", "Runs not finished, by status", labels=["status"])
        counts = {}
        for status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
                       dg.DagsterRunStatus.CANCELING):
            counts[status] = self.instance.get_runs_count(dg.RunsFilter(statuses=[status]))
            runs.add_metric([status.value.lower()], counts[status])
        yield runs
        yield GaugeMetricFamily("octavia_run_queue_depth", "Runs waiting in the run queue",
                                value=counts[dg.DagsterRunStatus.QUEUED])


def metrics_registry(instance: dg.DagsterInstance):
    from prometheus_client import CollectorRegistry
    registry = CollectorRegistry(auto_describe=False)
    registry.register(InstanceMetrics(instance))
    return registry


def serve_metrics(host: str, port: int) -> int:
    """`octavia metrics`: serve /metrics for the instance at $DAGSTER_HOME until interrupted."""
    import time

    from prometheus_client import start_http_server
    with dg.DagsterInstance.get() as instance:
        server, thread = start_http_server(port, addr=host, registry=metrics_registry(instance))
        print(f"octavia: serving Prometheus metrics on http://{host}:{port}/metrics", file=sys.stderr, flush=True)
        try:
            while thread.is_alive():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
    return 0
