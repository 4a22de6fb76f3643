"""Temporary files are always cleaned up: with TMPDIR pointed at a fresh folder, a run that succeeds
and a run whose stage fails half-way (its work files written) both leave that folder empty."""
import tempfile

import dagster as dg
import pytest

from octavia_assets.definitions import defs as real_defs
from octavia_assets.partitions import video_language_key
from octavia_assets.registry import register_upload
from octavia_assets.settings import target_languages
from tests.conftest import SAMPLE_VIDEO, make_media
from tests.fakes import FakeSeparationEngine, FakeSeparator, fake_resources


class FailingSeparator(FakeSeparator):
    """Writes its stems (into the stage's temp folder), then fails: a crash after partial work."""

    def separate(self, audio_path, vocals_path, background_path) -> dict:
        super().separate(audio_path, vocals_path, background_path)
        raise RuntimeError("separator crashed after writing its stems")


class FailingSeparationEngine(FakeSeparationEngine):
    def get(self):
        return FailingSeparator()


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch, octavia_home):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)    # gettempdir() re-reads TMPDIR
    assert tempfile.gettempdir() == str(scratch)
    clip = make_media(tmp_path / "talk.mp4", "-t", "5", "-i", str(SAMPLE_VIDEO), "-c:v", "copy", "-c:a", "aac")
    store = fake_resources()["media_store"]
    video = register_upload(store, store.put_file(clip, "uploads/talk.mp4"))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", [video])
    assert not list(scratch.iterdir())
    return scratch, video


def _leftovers(scratch):
    return sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*"))


def test_a_successful_run_leaves_no_temporary_files(tmpdir_env):
    scratch, video = tmpdir_env
    defs = dg.Definitions(assets=list(real_defs.assets), jobs=list(real_defs.jobs), resources=fake_resources())
    with dg.DagsterInstance.get() as instance:
        assert defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, partition_key=video).success
        for lang in target_languages():
            assert defs.resolve_job_def("dub_job").execute_in_process(
                instance=instance, partition_key=video_language_key(video, lang)).success
        assert defs.resolve_job_def("deliver_job").execute_in_process(instance=instance, partition_key=video).success
    assert _leftovers(scratch) == []


def test_a_stage_failing_half_way_leaves_no_temporary_files(tmpdir_env):
    scratch, video = tmpdir_env
    defs = dg.Definitions(assets=list(real_defs.assets), jobs=list(real_defs.jobs),
                          resources={**fake_resources(), "separation": FailingSeparationEngine()})
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, partition_key=video,
                                                                       raise_on_error=False)
    assert not result.success
    failed = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failed == ["stems"]
    assert _leftovers(scratch) == []
