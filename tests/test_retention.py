"""Retention: cold derived/ artifacts go (local folder and the real S3 server), outputs never; old
runs are pruned except those holding an asset partition's latest materialization."""
import datetime as dt
import os

import dagster as dg
import pytest

from octavia_assets.retention import delete_cold_artifacts, prune_runs, retention_job

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)

KEEP_ALWAYS = ["uploads/talk.mp4", "videos/v_old/upload.json", "outputs/v_old/v_old.dubbed.mp4",
               "outputs/v_old/quality_report.json"]
OLD_VIDEO = ["derived/v_old/audio/audio_44k.wav", "derived/v_old/stems/vocals.wav", "derived/v_old/pt/final_mix.wav"]
MIXED_VIDEO = ["derived/v_mixed/transcript/transcript.json", "derived/v_mixed/pt/translation.json"]
BUSY_VIDEO = ["derived/v_busy/audio/audio_16k.wav"]


def _fill(store, keys):
    for key in keys:
        store.put_bytes(key.encode(), key)


def _backdate(store, key, when):
    path = store.base / key
    os.utime(path, (when.timestamp(), when.timestamp()))


def _all_keys(store):
    return {o.key for o in store.list_objects("", limit=100_000)}


def test_local_store_deletes_only_whole_cold_videos_under_derived(media_store):
    _fill(media_store, KEEP_ALWAYS + OLD_VIDEO + MIXED_VIDEO + BUSY_VIDEO)
    for key in KEEP_ALWAYS + OLD_VIDEO + BUSY_VIDEO + MIXED_VIDEO[:1]:
        _backdate(media_store, key, NOW - 40 * DAY)
    # v_mixed: its translation was re-made yesterday (an override), so its transcript stays too.
    _backdate(media_store, MIXED_VIDEO[1], NOW - DAY)
    assert media_store.stat(OLD_VIDEO[0]).modified < NOW - 39 * DAY

    sweep = delete_cold_artifacts(media_store, NOW - 30 * DAY, busy_videos=frozenset({"v_busy"}), page=2)

    assert sweep.deleted_videos == ["v_old"]
    assert sweep.deleted_objects == 3 and sweep.deleted_bytes == sum(len(k) for k in OLD_VIDEO)
    assert sweep.kept_videos == 2
    assert _all_keys(media_store) == set(KEEP_ALWAYS + MIXED_VIDEO + BUSY_VIDEO)


def test_s3_store_deletes_cold_derived_objects_and_never_outputs(s3_store):
    _fill(s3_store, KEEP_ALWAYS + OLD_VIDEO + MIXED_VIDEO + BUSY_VIDEO)
    listed = s3_store.list_objects("derived/")
    assert all(o.modified is not None and o.modified.tzinfo is not None for o in listed)
    assert s3_store.stat(OLD_VIDEO[0]).modified is not None

    # A cut-off in the future makes every object old: only busy videos and non-derived keys stay.
    sweep = delete_cold_artifacts(s3_store, NOW + DAY, busy_videos=frozenset({"v_busy"}), page=2)

    assert sorted(sweep.deleted_videos) == ["v_mixed", "v_old"]
    assert sweep.deleted_objects == 5
    assert {o.key for o in s3_store.list_objects("", limit=10_000)} == set(KEEP_ALWAYS + BUSY_VIDEO)
    # Nothing is old yet: a second pass with the real cut-off deletes nothing.
    assert delete_cold_artifacts(s3_store, NOW - 30 * DAY).deleted_videos == []


def test_s3_delete_many_batches_over_the_1000_key_limit(s3_store):
    keys = [f"derived/v_many/dub/line_{i:04d}.wav" for i in range(1203)]
    for key in keys:
        s3_store.client.put_object(Bucket=s3_store.bucket, Key=key, Body=b"x")
    s3_store.delete_many(keys)
    assert s3_store.list_objects("derived/") == []


letters = dg.StaticPartitionsDefinition(["a", "b"])


@dg.asset(partitions_def=letters)
def lettered(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"partition": context.partition_key})


@dg.asset
def broken():
    raise ValueError("this stage fails")


def add_queued_run(instance, video: str) -> dg.DagsterRun:
    """A run waiting in the queue, as the QueuedRunCoordinator stores one (with its code origin)."""
    import uuid

    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="octavia_assets.definitions")), "__repository__"), "ingest_job")
    return instance.add_run(dg.DagsterRun(job_name="ingest_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.QUEUED,
                                          remote_job_origin=origin, tags={"dagster/partition": video}))


def test_busy_videos_are_those_with_queued_or_running_runs(tmp_path):
    from octavia_assets.retention import busy_videos
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dg.materialize([lettered], instance=instance, partition_key="a")
        add_queued_run(instance, "v_busy")
        assert busy_videos(instance) == {"v_busy"}


def test_prune_runs_keeps_every_latest_materialization(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        first_a = dg.materialize([lettered], instance=instance, partition_key="a").run_id
        latest_a = dg.materialize([lettered], instance=instance, partition_key="a").run_id
        latest_b = dg.materialize([lettered], instance=instance, partition_key="b").run_id
        failed = dg.materialize([broken], instance=instance, raise_on_error=False).run_id
        queued = add_queued_run(instance, "v_busy").run_id

        # Nothing is older than 90 days yet.
        assert prune_runs(instance, NOW - 90 * DAY).deleted == []
        pruned = prune_runs(instance, dt.datetime.now(dt.UTC) + DAY)

        assert sorted(pruned.deleted) == sorted([first_a, failed])
        assert pruned.kept_latest == 2
        remaining = {r.run_id for r in instance.get_runs()}
        assert remaining == {latest_a, latest_b, queued}
        key = lettered.key
        assert instance.get_materialized_partitions(key) == {"a", "b"}
        for partition, run_id in (("a", latest_a), ("b", latest_b)):
            record = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records[0]
            assert record.run_id == run_id
        assert instance.get_records_for_run(first_a).records == []


def test_retention_job_runs_on_an_instance_with_its_schedule(tmp_path, media_store):
    _fill(media_store, KEEP_ALWAYS + OLD_VIDEO)
    for key in KEEP_ALWAYS + OLD_VIDEO:
        _backdate(media_store, key, NOW - 10 * DAY)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = retention_job.execute_in_process(
            instance=instance, resources={"media_store": media_store},
            run_config={"ops": {"delete_cold_intermediates": {"config": {"artifact_days": 5}}}})
        assert result.success
        meta = {e.step_key: e.step_output_data.metadata for e in result.all_events
                if e.event_type == dg.DagsterEventType.STEP_OUTPUT}
        assert meta["delete_cold_intermediates"]["videos_deleted"].value == 1
        assert meta["prune_run_history"]["runs_deleted"].value == 0
    assert _all_keys(media_store) == set(KEEP_ALWAYS)

    from octavia_assets.definitions import defs
    schedule = {s.name: s for s in defs.schedules}["retention_schedule"]
    assert schedule.job_name == "retention_job" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.parametrize("value", ["0", "-3", "thirty"])
def test_bad_retention_days_is_a_clear_error(monkeypatch, value):
    from octavia_assets.retention import artifact_retention_days
    monkeypatch.setenv("OCTAVIA_RETENTION_DAYS", value)
    with pytest.raises(ValueError, match="OCTAVIA_RETENTION_DAYS"):
        artifact_retention_days()


def test_local_sweep_removes_only_stale_partial_writes(media_store):
    media_store.put_bytes(b"whole", "derived/v1/stems/vocals.wav")
    folder = media_store.base / "derived/v1/stems"
    stale, fresh = folder / ".vocals.wav.abc123.part", folder / ".background.wav.def456.part"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in flight")
    os.utime(stale, ((NOW - 2 * DAY).timestamp(),) * 2)

    assert media_store.sweep_partial_writes(NOW - DAY) == 1
    assert not stale.exists() and fresh.exists()
    assert media_store.read_bytes("derived/v1/stems/vocals.wav") == b"whole"


def test_s3_sweep_aborts_abandoned_multipart_uploads(s3_store):
    client, bucket = s3_store.client, s3_store.bucket
    abandoned = client.create_multipart_upload(Bucket=bucket, Key="derived/v1/stems/vocals.wav")["UploadId"]
    client.upload_part(Bucket=bucket, Key="derived/v1/stems/vocals.wav", UploadId=abandoned, PartNumber=1,
                       Body=b"x" * 1024)
    s3_store.put_bytes(b"whole", "derived/v1/audio/audio_16k.wav")

    # Uploads started before the cut-off go, later ones stay (moto reports a fixed initiation
    # time, so the cut-offs are set around the time the server reports).
    initiated = client.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["Initiated"]
    assert s3_store.sweep_partial_writes(initiated - DAY) == 0
    assert s3_store.sweep_partial_writes(initiated + DAY) == 1
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_store.read_bytes("derived/v1/audio/audio_16k.wav") == b"whole"
