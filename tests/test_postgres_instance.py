"""deploy/dagster.yaml on a real PostgreSQL server: materialize one partition through it, read the events back."""
import shutil

import dagster as dg
import pytest

from octavia_assets.audio import audio
from octavia_assets.registry import register_upload
from octavia_assets.source import source_video
from tests.conftest import REPO, SAMPLE_VIDEO


@pytest.fixture
def postgres_instance(postgres_db, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for var, value in {"DAGSTER_PG_HOST": postgres_db["host"], "DAGSTER_PG_PORT": str(postgres_db["port"]),
                       "DAGSTER_PG_USERNAME": postgres_db["user"], "DAGSTER_PG_PASSWORD": postgres_db["password"],
                       "DAGSTER_PG_DB": postgres_db["db_name"]}.items():
        monkeypatch.setenv(var, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_partition_materializes_through_the_postgres_instance(postgres_instance, media_store, postgres_db):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
    instance = postgres_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert instance.run_monitoring_enabled and instance.run_retries_enabled

    info = media_store.put_file(SAMPLE_VIDEO, "uploads/sample.mp4")
    video = register_upload(media_store, info)
    instance.add_dynamic_partitions("videos", [video])
    result = dg.materialize([source_video, audio], partition_key=video, instance=instance,
                            resources={"media_store": media_store}, tags={"octavia/trigger": "test"})
    assert result.success

    # Read back from Postgres: the run, its events, and the per-partition materializations.
    run = instance.get_run_by_id(result.run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == video
    types = [r.event_log_entry.dagster_event_type for r in
             instance.get_records_for_run(result.run_id).records if r.event_log_entry.is_dagster_event]
    assert dg.DagsterEventType.RUN_SUCCESS in types and types.count(dg.DagsterEventType.ASSET_MATERIALIZATION) == 2
    for asset in (source_video, audio):
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[video]), limit=5).records
        assert record.run_id == result.run_id
    mat = instance.fetch_materializations(audio.key, limit=1).records[0].asset_materialization
    assert mat.metadata["duration_s"].value == pytest.approx(36.0, abs=0.05)
    assert instance.get_dynamic_partitions("videos") == [video]

    # The rows really are in the fresh database (not a SQLite fallback).
    import psycopg2
    params = {k: postgres_db[k] for k in ("host", "port", "user", "password")}
    with psycopg2.connect(dbname=postgres_db["db_name"], **params) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone()[0] == len(instance.get_records_for_run(result.run_id, limit=10_000).records)
