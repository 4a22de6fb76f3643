"""Crash and resume: a real run (own run worker process, multiprocess executor, reconstructable job)
is SIGKILLed in the middle of a stage; re-execution from failure recomputes only that stage and its
downstream; nothing partial is ever visible in the media store; two runs of one partition at once
leave whole, consistent outputs. Engines are the fast doubles of tests/fakes.py (tests/crash_job.py)."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import soundfile as sf

from octavia_assets.registry import register_upload
from octavia_assets.resources.storage import LocalMediaStore
from tests.conftest import REPO, SAMPLE_VIDEO, make_media

DONE_BEFORE = {"source_video", "audio", "pre_analysis"}                    # upstream of stems
KILLED_AND_DOWNSTREAM = {"stems", "speaker_map", "chunks", "transcript", "voices"}


@pytest.fixture
def upload(octavia_home, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    clip = make_media(tmp_path / "talk.mp4", "-t", "5", "-i", str(SAMPLE_VIDEO), "-c:v", "copy", "-c:a", "aac")
    store = LocalMediaStore()
    video = register_upload(store, store.put_file(clip, "uploads/talk.mp4"))
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("videos", [video])
    return store, video


def _start_run(video: str, gate: Path, *extra: str) -> subprocess.Popen:
    # Its own session: the run worker and its step processes form one process group to kill.
    return subprocess.Popen([sys.executable, "-m", "tests.crash_job", video, *extra], cwd=REPO,
                            env={**os.environ, "OCTAVIA_TEST_GATE": str(gate)}, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, what: str, procs=(), timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"run exited before {what}: {p.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _materialized(instance, run_id) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
        name = r.event_log_entry.dagster_event.asset_key.to_user_string()
        counts[name] = counts.get(name, 0) + 1
    return counts


def _visible_objects_are_whole(store: LocalMediaStore, video: str) -> list[str]:
    keys = [o.key for o in store.list_objects(f"derived/{video}/")]
    for key in keys:
        path = store.base / key
        if key.endswith(".wav"):
            assert sf.info(str(path)).duration > 0, key
        elif key.endswith(".json"):
            json.loads(path.read_bytes())
    return keys


def test_sigkilled_run_worker_resumes_from_the_failed_stage_only(upload, tmp_path):
    store, video = upload
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = _start_run(video, gate)
    _wait_for(lambda: any(gate.glob("entered-*")), "the separator stage to start", [proc])
    step_pid = int(next(gate.glob("entered-*")).name.split("-")[1])
    assert step_pid != proc.pid, "the stage must run in a step process of the run worker"

    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        os.killpg(proc.pid, signal.SIGKILL)          # run worker and its step process, mid-stage
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        _wait_for(lambda: not Path(f"/proc/{step_pid}").exists(), "the step process to die")
        # Nobody is left to report the end of the run: it still reads STARTED, as after a node loss.
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

        # Nothing of the killed stage is visible; what is there is whole (written temp, then renamed).
        keys = _visible_objects_are_whole(store, video)
        assert not [k for k in keys if "/stems/" in k], keys
        hidden = [p for p in store.base.rglob(".*")]
        assert not hidden, f"temp files left in the media store: {hidden}"

        # What run monitoring does when the run worker's health check says it is gone (and what the
        # run-retry daemon then re-executes, from failure).
        instance.report_run_failed(run, message="run worker gone (SIGKILL); marked failed by run monitoring")
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        killed_counts = _materialized(instance, run.run_id)

    from tests.crash_job import execute
    started = time.monotonic()
    resumed_id, ok = execute(video, reexecute_from=run.run_id)
    resume_s = time.monotonic() - started
    assert ok
    with dg.DagsterInstance.get() as instance:
        resumed = instance.get_run_by_id(resumed_id)
        assert resumed.parent_run_id == run.run_id and resumed.tags["dagster/partition"] == video
        resumed_counts = _materialized(instance, resumed_id)
    assert killed_counts == {k: 1 for k in DONE_BEFORE}
    # Only the killed stage and its downstream, each once; nothing finished before the kill re-ran.
    assert resumed_counts == {k: 1 for k in KILLED_AND_DOWNSTREAM}
    keys = _visible_objects_are_whole(store, video)
    assert {f"derived/{video}/stems/{n}" for n in ("vocals.wav", "background.wav", "vocals_16k.wav")} <= set(keys)
    print(f"killed run materialized {len(killed_counts)} assets; re-execution from failure recomputed "
          f"{len(resumed_counts)} stages ({sorted(resumed_counts)}) in {resume_s:.1f} s")


def test_two_runs_of_one_partition_at_once_leave_whole_consistent_outputs(upload, tmp_path):
    store, video = upload
    gate = tmp_path / "gate"
    gate.mkdir()
    runs = [_start_run(video, gate, "--in-process") for _ in range(2)]
    try:
        # Both runs inside the same stage, then released together: they write the same keys at once.
        _wait_for(lambda: len(list(gate.glob("entered-*"))) == 2, "both runs to reach the separator", runs)
        (gate / "release").touch()
        outs = [p.communicate(timeout=180) for p in runs]
    finally:
        for p in runs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    for p, (out, err) in zip(runs, outs):
        assert p.returncode == 0 and out.strip().endswith("success"), err[-3000:]
    with dg.DagsterInstance.get() as instance:
        run_ids = [out.split()[0] for out, _ in outs]
        for run_id in run_ids:
            assert len(_materialized(instance, run_id)) == 8
    keys = _visible_objects_are_whole(store, video)
    assert not list(store.base.rglob(".*")), "temp files left in the media store"
    # Consistent: the stems are the full-length output of the separator (not the half-written one
    # each run held before the release), and the three files agree with the audio.
    audio_s = sf.info(str(store.base / f"derived/{video}/audio/audio.wav")).duration \
        if (store.base / f"derived/{video}/audio/audio.wav").exists() else None
    for name in ("vocals.wav", "background.wav", "vocals_16k.wav"):
        info = sf.info(str(store.base / f"derived/{video}/stems/{name}"))
        assert info.duration == pytest.approx(audio_s or 5.0, abs=0.05), name
    from octavia_assets.speakers import voice_profiles
    assert voice_profiles(store, video)   # the sealed profiles open: not a mix of two writes
    assert len(keys) >= 8


def test_a_killed_writer_never_exposes_a_partial_object(tmp_path):
    """SIGKILL in the middle of LocalMediaStore.put_file: the key keeps its old bytes, no half file."""
    store = LocalMediaStore(root=str(tmp_path / "media"))
    store.put_bytes(b"old" * 1000, "derived/v/stems/vocals.wav")
    src, copying = tmp_path / "new.wav", tmp_path / "copying"
    src.write_bytes(os.urandom(1 << 20))
    # Fault injection: the copy writes half of the bytes, then stalls (a slow disk or network mount).
    code = ("import pathlib, shutil, sys, time\n"
            "def stalling_copy(src, dst, **kw):\n"
            "    data = pathlib.Path(src).read_bytes()\n"
            "    pathlib.Path(dst).write_bytes(data[:len(data) // 2])\n"
            "    pathlib.Path(sys.argv[3]).touch()\n"
            "    time.sleep(120)\n"
            "shutil.copyfile = stalling_copy\n"
            "from octavia_assets.resources.storage import LocalMediaStore\n"
            "LocalMediaStore(root=sys.argv[1]).put_file(sys.argv[2], 'derived/v/stems/vocals.wav')\n")
    writer = subprocess.Popen([sys.executable, "-c", code, str(store.base), str(src), str(copying)], cwd=REPO)
    try:
        _wait_for(copying.exists, "the writer to be half-way", timeout=60)
        partial = list((store.base / "derived/v/stems").glob(".*.part"))
        assert partial and partial[0].stat().st_size == 1 << 19
    finally:
        writer.send_signal(signal.SIGKILL)       # dies half-way through the object
        writer.wait(timeout=30)
    assert store.read_bytes("derived/v/stems/vocals.wav") == b"old" * 1000
    assert [o.key for o in store.list_objects("")] == ["derived/v/stems/vocals.wav"]


def test_concurrent_writers_and_readers_of_one_key_see_only_whole_objects(tmp_path):
    store = LocalMediaStore(root=str(tmp_path / "media"))
    payloads = [bytes([i]) * (200_000 + i * 1000) for i in range(4)]
    digests = {hashlib.sha256(p).digest() for p in payloads}
    store.put_bytes(payloads[0], "k/obj")
    stop = threading.Event()
    seen, errors = [], []

    def write(p):
        for _ in range(25):
            store.put_bytes(p, "k/obj")

    def read():
        while not stop.is_set():
            try:
                seen.append(hashlib.sha256(store.read_bytes("k/obj")).digest())
            except Exception as e:   # noqa: BLE001 - any failure to read is a finding
                errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors and seen and set(seen) <= digests
    assert hashlib.sha256(store.read_bytes("k/obj")).digest() in digests
    assert sorted(p.name for p in (store.base / "k").iterdir()) == ["obj"]
