"""Bad-input suite: inputs generated with ffmpeg at test time, each taken through the whole graph
(ingest, dub, deliver) on one instance with the fast engine doubles. Every case ends in a delivered
dub or in a clear, specific failure on the run and on the asset of the stage that should catch it,
never in a crash of a later stage; the other videos keep flowing (they share the instance).

Run with ``-s`` to see the case -> outcome table."""
from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from octavia_assets.definitions import defs as real_defs
from octavia_assets.jobs import failure_summary
from octavia_assets.partitions import video_language_key
from octavia_assets.registry import register_upload
from octavia_assets.resources.storage import ObjectInfo, UnsafeKeyError
from octavia_assets.settings import target_languages
from tests.conftest import SAMPLE_VIDEO
from tests.fakes import fake_resources

V = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=24"]
H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
TONE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]


def ffmpeg(dest: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args, str(dest)], check=True)
    return dest


def speech_clip(dest: Path, start: float, seconds: float) -> Path:
    """A piece of the bundled sample (real speech, with its video)."""
    return ffmpeg(dest, "-ss", str(start), "-t", str(seconds), "-i", str(SAMPLE_VIDEO), *H264, "-c:a", "aac")


@dataclass
class Case:
    name: str
    make: object                      # (tmp dir) -> local file
    key: str = ""                     # object key (default uploads/<case>.mp4)
    expect: str = "delivered"         # "delivered" or the failing stage
    reason: str = ""                  # words the one-line failure must contain
    env: dict = field(default_factory=dict)


def _truncated(tmp: Path) -> Path:
    full = ffmpeg(tmp / "full.mp4", *V, *TONE, "-t", "3", *H264, "-c:a", "aac")
    data = full.read_bytes()
    out = tmp / "truncated.mp4"
    out.write_bytes(data[: len(data) // 2])   # moov atom (at the end) is cut off
    return out


def _vfr(tmp: Path) -> Path:
    # frames at 1/24 s for the first second, then at 1/6 s: a real variable-frame-rate stream
    return ffmpeg(tmp / "vfr.mp4", *V, "-i", str(SAMPLE_VIDEO), "-map", "0:v", "-map", "1:a", "-t", "4",
                  "-vf", "setpts='if(lt(N,24),N/24,1+(N-24)/6)/TB'", "-fps_mode", "vfr", *H264, "-c:a", "aac")


CASES = [
    Case("zero_byte", lambda t: _bytes(t, b""), expect="source_video", reason="file is empty (0 bytes)"),
    Case("truncated_mp4", _truncated, expect="source_video", reason="not a readable media file"),
    Case("garbage_named_mp4", lambda t: _bytes(t, random.Random(11).randbytes(50_000)), expect="source_video",
         reason="not a readable media file"),
    Case("text_named_mp4", lambda t: _bytes(t, b"<html>not a video</html>\n" * 40), expect="source_video",
         reason="not a readable media file"),
    Case("no_audio_stream", lambda t: ffmpeg(t / "x.mp4", *V, "-t", "2", *H264), expect="source_video",
         reason="has no audio stream"),
    Case("audio_only_m4a", lambda t: ffmpeg(t / "x.m4a", "-t", "4", "-i", str(SAMPLE_VIDEO), "-vn", "-c:a", "aac"),
         key="uploads/podcast.m4a"),
    Case("audio_only_wav", lambda t: ffmpeg(t / "x.wav", "-t", "3", "-i", str(SAMPLE_VIDEO), "-vn"),
         key="uploads/voice memo.wav"),
    Case("silent_audio", lambda t: ffmpeg(t / "x.mp4", *V, "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo",
                                          "-t", "3", *H264, "-c:a", "aac")),
    Case("music_only", lambda t: ffmpeg(t / "x.mp4", *V, "-f", "lavfi", "-i",
                                        "aevalsrc=0.2*sin(2*PI*(220+110*floor(2*t))*t)+0.1*sin(2*PI*330*t):s=44100",
                                        "-t", "4", *H264, "-c:a", "aac")),
    Case("speech_under_1s", lambda t: speech_clip(t / "x.mp4", 1.0, 0.8)),
    Case("shorter_than_half_a_second", lambda t: ffmpeg(t / "x.mp4", "-t", "0.3", "-i", str(SAMPLE_VIDEO), *H264, "-c:a", "aac"),
         expect="source_video", reason="too short to dub"),
    Case("one_frame_video", lambda t: ffmpeg(t / "x.mp4", "-i", str(ffmpeg(t / "frame.mp4", *V, "-frames:v", "1", *H264)),
                                             "-t", "2", "-i", str(SAMPLE_VIDEO), "-map", "0:v", "-map", "1:a",
                                             "-c:v", "copy", "-c:a", "aac")),
    Case("variable_frame_rate", _vfr),
    Case("surround_5_1", lambda t: ffmpeg(t / "x.mp4", *V, "-i", str(SAMPLE_VIDEO), "-map", "0:v", "-map", "1:a",
                                          "-t", "3", "-ac", "6", "-channel_layout", "5.1", *H264, "-c:a", "aac")),
    Case("mono_8khz", lambda t: ffmpeg(t / "x.mp4", *V, "-i", str(SAMPLE_VIDEO), "-map", "0:v", "-map", "1:a",
                                       "-t", "3", "-ac", "1", "-ar", "8000", *H264, "-c:a", "aac")),
    Case("longer_than_limit", lambda t: ffmpeg(t / "x.mp4", *V, *TONE, "-t", "6", *H264, "-c:a", "aac"),
         expect="source_video", reason="over the limit of 5 s (OCTAVIA_MAX_DURATION_S)",
         env={"OCTAVIA_MAX_DURATION_S": "5"}),
    Case("larger_than_limit", lambda t: ffmpeg(t / "x.mp4", *V, *TONE, "-t", "2", *H264, "-c:a", "aac"),
         expect="source_video", reason="over the limit of 1000 bytes (OCTAVIA_MAX_UPLOAD_BYTES)",
         env={"OCTAVIA_MAX_UPLOAD_BYTES": "1000"}),
    Case("unicode_key", lambda t: speech_clip(t / "x.mp4", 2.0, 3.0), key="uploads/vídeo ñandú 日本語.mp4"),
    Case("spaces_key", lambda t: speech_clip(t / "x.mp4", 2.0, 3.0), key="uploads/my talk (final) v2 .mp4"),
    Case("dagster_forbidden_chars", lambda t: speech_clip(t / "x.mp4", 2.0, 3.0),
         key="uploads/a|b,c[1]...{x}*?.mp4"),
]


def _bytes(tmp: Path, data: bytes) -> Path:
    path = tmp / "x.bin"
    path.write_bytes(data)
    return path


@dataclass
class Outcome:
    video: str
    result: str            # "delivered" or the stage that failed
    reason: str = ""
    observed: str = ""     # the failure's reason recorded on the asset


def _defs() -> dg.Definitions:
    return dg.Definitions(assets=list(real_defs.assets), jobs=list(real_defs.jobs), resources=fake_resources())


def _run_graph(defs, instance, video: str) -> tuple[str, str]:
    """ingest -> dub (every language) -> deliver, as the sensors chain them; the first failure ends it."""
    runs = [("ingest_job", video)] + [("dub_job", video_language_key(video, lang)) for lang in target_languages()]
    runs.append(("deliver_job", video))
    for job, partition in runs:
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                              raise_on_error=False)
        if not result.success:
            failed = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
            return (failed[0] if failed else job), failure_summary(result)
    return "delivered", ""


def _observed_error(instance, stage: str, video: str) -> str:
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(stage), asset_partitions=[video]), limit=1).records
    if not records:
        return ""
    meta = records[0].asset_observation.metadata
    return meta["error"].value if "error" in meta else ""


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Runs every case on one instance and media store; returns the outcomes by case name."""
    home = tmp_path_factory.mktemp("bad-inputs")
    tmp = tmp_path_factory.mktemp("inputs")
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(home))
    mp.setenv("OCTAVIA_MEDIA_ROOT", str(home / "media"))
    defs = _defs()
    store = fake_resources()["media_store"]
    outcomes: dict[str, Outcome] = {}
    try:
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            for case in CASES:
                case_dir = tmp / case.name
                case_dir.mkdir()
                src = case.make(case_dir)
                key = case.key or f"uploads/{case.name}.mp4"
                video = register_upload(store, store.put_file(src, key))
                instance.add_dynamic_partitions("videos", [video])
                with pytest.MonkeyPatch.context() as env:
                    for k, v in case.env.items():
                        env.setenv(k, v)
                    result, reason = _run_graph(defs, instance, video)
                observed = _observed_error(instance, result, video) if result != "delivered" else ""
                outcomes[case.name] = Outcome(video, result, reason, observed)
            yield {"outcomes": outcomes, "store": store, "instance": instance, "defs": defs, "tmp": tmp}
    finally:
        mp.undo()
        _print_table(outcomes)


def _print_table(outcomes: dict[str, Outcome]) -> None:
    print("\n\ncase                      | outcome       | partition key / reason")
    print("--------------------------|---------------|---------------------------------------------")
    for name, o in outcomes.items():
        print(f"{name:<26}| {o.result:<14}| {o.reason or o.video}")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_input_is_dubbed_or_fails_clearly_in_its_stage(suite, case):
    outcome = suite["outcomes"][case.name]
    assert outcome.result == case.expect, f"{case.name}: {outcome.result}: {outcome.reason}"
    if case.expect != "delivered":
        # one line, naming the stage and the reason; the same reason is on the asset's history
        assert "\n" not in outcome.reason and case.reason in outcome.reason
        assert case.reason in outcome.observed
        # nothing of the failed stage's output is visible
        folder = {"source_video": "source"}.get(case.expect, case.expect)
        assert not suite["store"].list_objects(f"derived/{outcome.video}/{folder}/")
    else:
        store = suite["store"]
        assert store.exists(f"outputs/{outcome.video}/{outcome.video}.dubbed.mp4")
        assert store.exists(f"outputs/{outcome.video}/quality_report.json")


def test_partition_keys_of_odd_object_keys_are_safe_and_readable(suite):
    for name in ("unicode_key", "spaces_key", "dagster_forbidden_chars"):
        video = suite["outcomes"][name].video
        assert all(c.isalnum() or c in "-_" for c in video), video
        assert video.isascii() and len(video) <= 60
    assert suite["outcomes"]["unicode_key"].video.startswith("video-nandu")
    assert suite["outcomes"]["spaces_key"].video.startswith("my-talk-final-v2")


@pytest.mark.parametrize("key", ["uploads/../secrets/x.mp4", "uploads/./x.mp4", "/uploads/x.mp4", "uploads//x.mp4",
                                 "uploads/a\x00b.mp4", "derived/x.mp4"])
def test_path_traversal_and_foreign_keys_are_rejected_at_registration(suite, key):
    """What the upload sensor does with a listed object whose key is unsafe (possible on S3): reject
    it with a one-line reason, before any partition or run exists."""
    with pytest.raises((UnsafeKeyError, ValueError), match="unsafe object key|is not under uploads/"):
        register_upload(suite["store"], ObjectInfo(key=key, size=10, version="v1"))
    assert not suite["store"].list_objects("videos/", limit=10_000) or all(
        key not in str(suite["store"].read_json(o.key)) for o in suite["store"].list_objects("videos/", limit=10_000))


def test_duplicate_upload_maps_to_the_same_video_and_reupload_with_new_content_to_a_new_one(suite):
    store, instance, defs, tmp = suite["store"], suite["instance"], suite["defs"], suite["tmp"]
    first = speech_clip(tmp / "dup1.mp4", 5.0, 2.0)
    info = store.put_file(first, "uploads/dup.mp4")
    video = register_upload(store, info)
    record = store.read_json(f"videos/{video}/upload.json")
    # the same object seen again (a second sensor tick, a retried registration): same video, same record
    assert register_upload(store, info) == video
    assert store.read_json(f"videos/{video}/upload.json") == record
    instance.add_dynamic_partitions("videos", [video])
    assert _run_graph(defs, instance, video) == ("delivered", "")
    delivered = store.sha256(f"outputs/{video}/{video}.dubbed.mp4")

    # same key, new bytes: a new video (its own partition); the first one's outputs are untouched
    second = speech_clip(tmp / "dup2.mp4", 12.0, 2.5)
    os.utime(second, ns=(1, 1))   # a different mtime as well as size: a new content identity
    info2 = store.put_file(second, "uploads/dup.mp4")
    video2 = register_upload(store, info2)
    assert video2 != video and video2.startswith("dup-")
    instance.add_dynamic_partitions("videos", [video2])
    assert _run_graph(defs, instance, video2) == ("delivered", "")
    assert store.sha256(f"outputs/{video}/{video}.dubbed.mp4") == delivered
    probe2 = store.read_json(f"derived/{video2}/source/probe.json")
    assert probe2["duration"] == pytest.approx(2.5, abs=0.1)
    # re-running the first video now would read the other bytes: it refuses, saying why
    rerun = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, partition_key=video,
                                                                  raise_on_error=False)
    assert not rerun.success and "was replaced by a newer upload" in failure_summary(rerun)
