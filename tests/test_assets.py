"""Asset tests with materialize(): the front of the graph on a real video, and bad input."""
import dagster as dg
import pytest

from octavia_assets.audio import audio
from octavia_assets.registry import register_upload
from octavia_assets.source import source_video
from tests.conftest import SAMPLE_VIDEO, make_media


def _register(store, instance, data: bytes | None = None, src=None, name="clip.mp4") -> str:
    key = f"uploads/{name}"
    info = store.put_file(src, key) if src is not None else store.put_bytes(data, key)
    video = register_upload(store, info)
    instance.add_dynamic_partitions("videos", [video])
    return video


def test_source_and_audio_materialize_for_one_partition(media_store):
    with dg.instance_for_test() as instance:
        video = _register(media_store, instance, src=SAMPLE_VIDEO)
        result = dg.materialize([source_video, audio], partition_key=video, instance=instance,
                                resources={"media_store": media_store})
        assert result.success
        meta = {e.materialization.asset_key.path[-1]: e.materialization.metadata
                for e in result.get_asset_materialization_events()}
        assert meta["source_video"]["duration_s"].value == pytest.approx(36.0, abs=0.05)
        assert meta["source_video"]["has_video"].value is True
        assert meta["audio"]["duration_s"].value == pytest.approx(36.0, abs=0.05)
        assert media_store.exists(f"derived/{video}/audio/audio_16k.wav")
        # Content-hash data versions: the same bytes give the same version on a re-run.
        v1 = {e.materialization.asset_key: e.materialization.tags["dagster/data_version"]
              for e in result.get_asset_materialization_events()}
        again = dg.materialize([source_video, audio], partition_key=video, instance=instance,
                               resources={"media_store": media_store})
        v2 = {e.materialization.asset_key: e.materialization.tags["dagster/data_version"]
              for e in again.get_asset_materialization_events()}
        assert v1 == v2


@pytest.mark.parametrize("case,expected", [
    ("empty", "file is empty (0 bytes)"),
    ("garbage", "not a readable media file"),
    ("no_audio", "has no audio stream"),
])
def test_bad_uploads_fail_with_a_clear_reason(media_store, tmp_path, case, expected):
    with dg.instance_for_test() as instance:
        if case == "empty":
            video = _register(media_store, instance, data=b"")
        elif case == "garbage":
            video = _register(media_store, instance, data=b"\x00garbage" * 500)
        else:
            src = make_media(tmp_path / "v.mp4", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=24", "-t", "1",
                             "-c:v", "libx264", "-pix_fmt", "yuv420p")
            video = _register(media_store, instance, src=src)
        result = dg.materialize([source_video, audio], partition_key=video, instance=instance,
                                resources={"media_store": media_store}, raise_on_error=False)
        assert not result.success
        (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert expected in failure.step_failure_data.user_failure_data.description
        # The reason is also on the asset, as an observation with an "error" entry.
        records = instance.fetch_observations(source_video.key, limit=1).records
        assert expected in records[0].asset_observation.metadata["error"].value
        # Nothing downstream ran, and no half output was written.
        assert not media_store.exists(f"derived/{video}/source/probe.json")


def test_other_uploads_keep_flowing_after_a_bad_one(media_store):
    with dg.instance_for_test() as instance:
        bad = _register(media_store, instance, data=b"", name="bad.mp4")
        good = _register(media_store, instance, src=SAMPLE_VIDEO, name="good.mp4")
        assert not dg.materialize([source_video], partition_key=bad, instance=instance,
                                  resources={"media_store": media_store}, raise_on_error=False).success
        assert dg.materialize([source_video], partition_key=good, instance=instance,
                              resources={"media_store": media_store}).success
