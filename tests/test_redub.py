"""Re-dubs on model upgrade and selective re-materialization, proven by counting materializations.

Each phase runs the code location in its own process (as a code-server reload would) over one
SQLite instance, drives the declarative automation until it settles, and reports how many times
each asset was materialized in that phase. Model-bearing engines are fast test doubles whose
output depends on their version (tests/fakes.py); VAD, mixing and muxing are the real ones.
"""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, SAMPLE_VIDEO, make_media

INGEST = {"source_video", "audio", "pre_analysis", "stems", "chunks", "speaker_map", "transcript", "voices"}
PER_LANGUAGE = {"translation", "dubbed_chunks", "final_mix"}
DELIVERY = {"final_video", "quality_report"}


def phase(home, *args) -> dict:
    r = subprocess.run([sys.executable, "-m", "tests.redub_phase", "--home", str(home), *args], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def ran(result) -> dict:
    return {k: v for k, v in result["materializations"].items() if v}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("redub")
    clip = make_media(home / "clip.mp4", "-i", str(SAMPLE_VIDEO), "-t", "14", "-c", "copy")
    first = phase(home, "--langs", "pt", "--register", str(clip))
    assert ran(first) == {k: 1 for k in INGEST | PER_LANGUAGE | DELIVERY}
    return home


def test_nothing_changed_runs_nothing(home):
    assert ran(phase(home, "--langs", "pt")) == {}


def test_tts_upgrade_redubs_voices_and_later_stages_only(home):
    result = phase(home, "--langs", "pt", "--bump", "tts")
    assert ran(result) == {"voices": 1, "dubbed_chunks": 1, "final_mix": 1, "final_video": 1, "quality_report": 1}
    assert result["synthesis_calls"] > 0


def test_asr_upgrade_reruns_transcript_and_later_stages_only(home):
    result = phase(home, "--langs", "pt", "--bump", "tts,asr")
    # pre_analysis identifies the language with the ASR model, so it re-runs too; its output is
    # unchanged here, so nothing between it and the transcript (stems, speakers, chunks) re-runs.
    assert ran(result) == {"pre_analysis": 1, "transcript": 1, "translation": 1, "dubbed_chunks": 1, "final_mix": 1,
                           "final_video": 1, "quality_report": 1}


def test_identical_separation_output_triggers_nothing_downstream(home):
    # stems re-materialized by hand with the same engine: same bytes, same data version.
    assert ran(phase(home, "--langs", "pt", "--bump", "tts,asr", "--rerun", "stems")) == {"stems": 1}


def test_adding_a_language_runs_only_that_language(home):
    result = phase(home, "--langs", "pt,es", "--bump", "tts,asr")
    # translation, dubbed_chunks and final_mix only for es|video; the delivered video gains a track.
    assert ran(result) == {"translation": 1, "dubbed_chunks": 1, "final_mix": 1, "final_video": 1, "quality_report": 1}
