"""Observability: JSON log lines carry video, language and stage; the Prometheus exporter reports
stage durations, failures and queue depth read from a real instance's runs."""
import json
import urllib.request

import dagster as dg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from octavia_assets.observability import metrics_registry
from tests.servers import free_port
from tests.test_retention import add_queued_run

by_video_lang = dg.MultiPartitionsDefinition({"video": dg.StaticPartitionsDefinition(["v1"]),
                                               "lang": dg.StaticPartitionsDefinition(["pt"])})


@dg.asset(partitions_def=by_video_lang)
def spoken(context: dg.AssetExecutionContext) -> None:
    context.log.info("fitted 3 lines")


@dg.asset
def probed() -> None:
    pass


@dg.asset(deps=[probed])
def failing() -> None:
    raise ValueError("not media")


def _json_instance(tmp_path, when: str):
    """An instance whose dagster.yaml installs the JSON handler, as the repo's and deploy/'s do."""
    import yaml

    from tests.conftest import REPO
    config = yaml.safe_load((REPO / ("dagster.yaml" if when == "env" else "deploy/dagster.yaml")).read_text())
    tmp_path.mkdir(parents=True, exist_ok=True)
    return dg.instance_for_test(temp_dir=str(tmp_path), overrides={"python_logs": config["python_logs"]})


def _run_spoken(instance):
    job = dg.Definitions(assets=[spoken], jobs=[dg.define_asset_job("dub_job", selection=[spoken])]) \
        .resolve_job_def("dub_job")
    return job.execute_in_process(instance=instance, partition_key=dg.MultiPartitionKey({"video": "v1", "lang": "pt"}))


def test_json_log_lines_carry_video_lang_and_stage(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("OCTAVIA_LOG_FORMAT", "json")
    with _json_instance(tmp_path, "env") as instance:
        result = _run_spoken(instance)
    assert result.success
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    mine = [x for x in lines if x["message"] == "fitted 3 lines"]
    assert len(mine) == 1
    assert mine[0]["video"] == "v1" and mine[0]["lang"] == "pt" and mine[0]["stage"] == "spoken"
    assert mine[0]["run_id"] == result.run_id and mine[0]["level"] == "INFO" and mine[0]["job"] == "dub_job"
    assert any(x.get("event") == "STEP_SUCCESS" and x["stage"] == "spoken" for x in lines)


def test_text_format_writes_no_json_and_deploy_always_does(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("OCTAVIA_LOG_FORMAT", raising=False)
    with _json_instance(tmp_path / "a", "env") as instance:
        assert _run_spoken(instance).success
    assert not [line for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    with _json_instance(tmp_path / "b", "always") as instance:
        assert _run_spoken(instance).success
    assert any(json.loads(line).get("message") == "fitted 3 lines"
               for line in capfd.readouterr().out.splitlines() if line.startswith("{"))


def test_bad_log_format_is_a_clear_error(monkeypatch):
    from octavia_assets.observability import log_format
    monkeypatch.setenv("OCTAVIA_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="OCTAVIA_LOG_FORMAT"):
        log_format()


def _samples(registry) -> dict:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_exporter_reports_stage_durations_failures_and_queue_depth(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dg.materialize([probed], instance=instance)
        dg.materialize([probed, failing], instance=instance, raise_on_error=False)
        add_queued_run(instance, "v_waiting")
        registry = metrics_registry(instance)
        m = _samples(registry)
        assert m[("octavia_stage_duration_seconds_count", (("stage", "probed"),))] == 2
        assert m[("octavia_stage_duration_seconds_bucket", (("le", "+Inf"), ("stage", "probed")))] == 2
        assert m[("octavia_stage_duration_seconds_sum", (("stage", "probed"),))] >= 0
        assert m[("octavia_stage_failures_total", (("stage", "failing"),))] == 1
        assert m[("octavia_run_failures_total", (("job", "__ephemeral_asset_job__"),))] == 1
        assert m[("octavia_run_queue_depth", ())] == 1
        assert m[("octavia_runs", (("status", "queued"),))] == 1
        assert m[("octavia_runs", (("status", "started"),))] == 0

        # The next scrape reads only the new events: nothing is counted twice.
        dg.materialize([probed, failing], instance=instance, raise_on_error=False)
        m = _samples(registry)
        assert m[("octavia_stage_duration_seconds_count", (("stage", "probed"),))] == 3
        assert m[("octavia_stage_failures_total", (("stage", "failing"),))] == 2
        assert m[("octavia_run_failures_total", (("job", "__ephemeral_asset_job__"),))] == 2

        # Served over HTTP as Prometheus scrapes it.
        from prometheus_client import start_http_server
        port = free_port()
        server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        finally:
            server.shutdown()
            thread.join(timeout=10)
        assert 'octavia_stage_failures_total{stage="failing"} 2.0' in body
        assert "octavia_run_queue_depth 1.0" in body
