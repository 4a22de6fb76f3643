"""Timing fit of one synthesized line: trim, time-stretch, pitch shift, fit_line."""
from __future__ import annotations

import numpy as np
import pytest

from octavia_assets.resources import timing
from octavia_assets.resources.timing import FIT_TOLERANCE_S, fit_line, pitch_shift, time_stretch, trim_silence
from octavia_assets.resources.tts import KokoroSynthesizer, Synthesizer, VoiceInfo, estimate_f0

# atempo's output length is within about 0.6 % of the requested factor.
ATEMPO_TOLERANCE = 0.01

SR = 24000


def _voice_like(seconds: float, f0: float = 150.0, sr: int = SR) -> np.ndarray:
    """A harmonic 'vowel' with syllable-rate amplitude modulation and slow pitch movement."""
    t = np.arange(int(seconds * sr)) / sr
    inst = f0 * (1 + 0.03 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(inst) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * x * env).astype(np.float32)


def test_trim_silence():
    tone = _voice_like(1.0)
    a = np.concatenate([np.zeros(SR // 2, np.float32), tone, np.zeros(SR, np.float32)])
    a += np.random.default_rng(0).normal(0, 1e-4, a.size).astype(np.float32)   # -70 dB floor
    out = trim_silence(a, SR)
    assert abs(out.size / SR - 1.0) < 0.05
    assert trim_silence(np.zeros(SR, np.float32), SR).size == 0
    assert trim_silence(np.zeros(0, np.float32), SR).size == 0


@pytest.mark.parametrize("factor", [1.2, 0.8, 1.5])
def test_time_stretch_duration_and_pitch(factor):
    a = _voice_like(3.0)
    out = time_stretch(a, SR, factor)
    assert out.dtype == np.float32
    ratio = (a.size / out.size) / factor
    assert abs(ratio - 1) < 0.02, ratio
    assert abs(estimate_f0(out, SR) / estimate_f0(a, SR) - 1) < 0.03      # pitch kept
    assert np.array_equal(time_stretch(a, SR, 1.0), a)
    with pytest.raises(ValueError):
        time_stretch(a, SR, 0)


@pytest.mark.parametrize("rubberband", [True, False])
@pytest.mark.parametrize("semitones", [3.0, -2.0])
def test_pitch_shift_keeps_duration(monkeypatch, rubberband, semitones):
    if rubberband and not timing.has_rubberband():
        pytest.skip("ffmpeg built without librubberband")
    monkeypatch.setattr(timing, "has_rubberband", lambda: rubberband)
    a = _voice_like(2.0)
    out = pitch_shift(a, SR, semitones)
    assert abs(out.size / a.size - 1) < 0.01
    got = 12 * np.log2(estimate_f0(out, SR) / estimate_f0(a, SR))
    assert abs(got - semitones) < 0.3, got
    # the speech is not cut at the end: the last 0.3 s still has signal
    assert np.sqrt(np.mean(out[-int(0.3 * SR):] ** 2)) > 0.3 * np.sqrt(np.mean(a ** 2))


class _FakeSynth(Synthesizer):
    """Emits ``seconds_per_char`` of tone per character plus 0.2 s of silence on each side.
    ``honour`` is how much of the requested native speed it really delivers (0: none)."""

    name = "fake"
    version = "fake-1"
    sample_rate = SR

    def __init__(self, seconds_per_char=0.05, honour=1.0):
        self.spc, self.honour, self.calls = seconds_per_char, honour, []

    def voices(self):
        return [VoiceInfo("v", "male", ["en"], 150.0)]

    def supports_language(self, language):
        return True

    def synthesize(self, text, voice, language, speed=1.0):
        self.calls.append(speed)
        eff = 1 + (speed - 1) * self.honour
        sil = np.zeros(int(0.2 * SR), np.float32)
        return np.concatenate([sil, _voice_like(len(text) * self.spc / eff), sil])


def test_fit_short_line_untouched():
    s = _FakeSynth()
    f = fit_line(s, "x" * 20, "v", "en", slot_s=2.0)          # 1.0 s of speech
    assert f.fits and f.native_speed == 1.0 and f.stretch == 1.0 and f.total_speedup == 1.0
    assert abs(f.duration_s - 1.0) < 0.05 and s.calls == [1.0]


def test_fit_native_speed_then_stretch():
    s = _FakeSynth(honour=0.8)                                 # speed 1.2 only gives 1.16
    f = fit_line(s, "x" * 44, "v", "en", slot_s=1.85)          # 2.2 s natural, needs 1.19
    assert s.calls[0] == 1.0 and abs(s.calls[1] - 2.2 / 1.85) < 0.02
    assert f.stretch > 1.0 and f.total_speedup <= 1.25 + ATEMPO_TOLERANCE
    assert f.fits and f.duration_s <= 1.85 + FIT_TOLERANCE_S


def test_fit_too_long_is_not_truncated():
    s = _FakeSynth(honour=0.0)                                 # asked speed has no effect at all
    f = fit_line(s, "x" * 80, "v", "en", slot_s=2.0)           # 4.0 s natural
    assert f.native_speed == 1.25 and f.stretch == 1.25        # the real budget goes to the stretch
    assert f.total_speedup <= 1.25 + ATEMPO_TOLERANCE
    assert not f.fits and f.overflow_s > 1.0
    assert f.duration_s >= 4.0 / 1.25 - 0.05


@pytest.fixture(scope="module")
def kokoro():
    pytest.importorskip("kokoro_onnx")
    return KokoroSynthesizer().load()


LONG = "This longer sentence will certainly not fit into the short slot we give it."


def test_kokoro_fit_long_line_honest(kokoro):
    raw = kokoro.synthesize(LONG, "jf_alpha", "en")
    natural = raw.size / kokoro.sample_rate
    slot = natural / 1.6
    f = fit_line(kokoro, LONG, "jf_alpha", "en", slot_s=slot, pitch_semitones=-1.0)
    assert f.total_speedup <= 1.25 + ATEMPO_TOLERANCE
    assert f.fits == (f.duration_s <= slot + FIT_TOLERANCE_S)
    assert not f.fits                                          # 1.6x is beyond the 1.25 budget
    assert f.duration_s >= natural / 1.25 - 0.15               # no truncation
    assert f.sample_rate == 24000 and f.audio.dtype == np.float32 and f.pitch_semitones == -1.0


def test_kokoro_fit_short_line(kokoro):
    f = fit_line(kokoro, "Good morning.", "jm_kumo", "en", slot_s=3.0)
    assert f.fits and f.total_speedup == 1.0 and f.native_speed == 1.0
    assert 0.4 < f.duration_s < 3.0


# --- the whole fallback order (fit_dub_line) ---------------------------------------------------------

from octavia_assets.resources.condense import RuleCondenser  # noqa: E402
from octavia_assets.resources.timing import fit_dub_line  # noqa: E402

TOO_LONG_ES = ("Bueno, la verdad es que, sin embargo, nosotros tenemos que terminar (como ya dije) "
               "el trabajo muy pronto.")


def test_fit_dub_line_forced_too_long_translation_uses_the_fallbacks_in_order():
    s = _FakeSynth(honour=0.8)                        # 20 chars/s; asked speeds deliver 80 %
    f = fit_dub_line(s, TOO_LONG_ES, "v", "es", slot_s=1.3, lead_s=0.4, condenser=RuleCondenser())
    kinds = [step.split()[0] for step in f.steps]
    # the borrow is decided from the duration predicted at the comfortable rate, then one re-synthesis
    assert kinds == ["condense(estimate)", "borrow", "native-rate", "time-stretch"], f.steps
    assert f.text == "Pero, debemos terminar el trabajo pronto." and f.condensed
    assert f.steps[1] == "borrow 0.40s before" and f.lead_s == pytest.approx(0.4)
    assert len(s.calls) == 2 and s.calls[0] == 1.0 and 1.1 < s.calls[1] <= 1.25
    assert f.fits and f.duration_s <= 1.3 + 0.4 + FIT_TOLERANCE_S
    assert f.total_speedup <= 1.25 + ATEMPO_TOLERANCE
    # nothing cut: the whole condensed text was spoken, only this much faster than its natural pace
    assert f.duration_s >= f.natural_duration_s / 1.25 - 0.02
    assert f.natural_duration_s == pytest.approx(len(f.text) * 0.05, abs=0.05)


def test_fit_dub_line_short_line_untouched_and_overflow_reported():
    s = _FakeSynth()
    f = fit_dub_line(s, "Hola a todos.", "v", "es", slot_s=3.0, lead_s=0.4, condenser=RuleCondenser())
    assert f.steps == [] and f.text == "Hola a todos." and f.lead_s == 0 and s.calls == [1.0]
    s = _FakeSynth(honour=0.0)                        # no native rate, no silence to borrow
    f = fit_dub_line(s, TOO_LONG_ES, "v", "es", slot_s=0.8, lead_s=0.0, condenser=RuleCondenser())
    assert f.steps[0] == "condense(estimate)" and f.steps[-1] == "over the slot" and not f.fits
    assert f.total_speedup <= 1.25 + ATEMPO_TOLERANCE
    assert f.duration_s >= f.natural_duration_s / 1.25 - 0.02          # longer than the slot, never cut


def test_fit_dub_line_splits_text_over_the_engine_limit():
    s = _FakeSynth()
    s.max_input_chars = 40
    text = "Primera frase del texto largo. Segunda frase del texto largo. Tercera frase."
    f = fit_dub_line(s, text, "v", "es", slot_s=10.0)
    assert len(s.calls) == 3 and f.fits
    # every piece spoken whole (the fake speaks 0.05 s per character), with two pauses between
    assert f.duration_s == pytest.approx((30 + 30 + 14) * 0.05 + 2 * 0.12, abs=0.08)


def test_tighten_pauses_shortens_only_long_inner_pauses():
    from octavia_assets.resources.timing import tighten_pauses
    word = _voice_like(0.5)
    gap = lambda s: np.zeros(int(s * SR), np.float32)   # noqa: E731
    a = np.concatenate([word, gap(1.2), word, gap(0.2), word])
    out = tighten_pauses(a, SR, max_pause_s=0.35)
    # the 1.2 s pause becomes 0.35 s, the 0.2 s one is kept; the words themselves are all there
    assert out.size / SR == pytest.approx(a.size / SR - 0.85, abs=0.03)
    loud = lambda x: int((np.abs(x) > 0.05).sum())      # noqa: E731
    assert abs(loud(out) - loud(a)) <= 0.01 * loud(a)
    assert np.array_equal(tighten_pauses(word, SR), word)            # nothing to shorten


class _PausingSynth(_FakeSynth):
    """Like _FakeSynth, with a 1 s pause after every comma (as Kokoro does at some commas)."""

    def synthesize(self, text, voice, language, speed=1.0):
        self.calls.append(speed)
        eff = 1 + (speed - 1) * self.honour
        parts = []
        for i, piece in enumerate(text.split(",")):
            if i:
                parts.append(np.zeros(int(1.0 / eff * SR), np.float32))
            parts.append(_voice_like(max(len(piece), 1) * self.spc / eff))
        sil = np.zeros(int(0.2 * SR), np.float32)
        return np.concatenate([sil, *parts, sil])


def test_fit_dub_line_tightens_pauses_before_speeding_up():
    s = _PausingSynth()
    text = "Uno dos tres cuatro, cinco seis siete ocho."           # 2.15 s of speech + a 1 s pause
    f = fit_dub_line(s, text, "v", "es", slot_s=2.6)
    assert f.steps and f.steps[0].startswith("tighten pauses") and f.fits
    assert f.native_speed == 1.0 and f.stretch == 1.0 and f.total_speedup == 1.0    # no faster speech


def test_fit_dub_line_borrows_after_the_slot_only_what_it_is_offered():
    s = _FakeSynth()                                   # 20 chars/s, no pauses
    text = "x" * 66                                    # 3.3 s natural, 3.0 s at the comfortable 1.1
    f = fit_dub_line(s, text, "v", "es", slot_s=2.4, lead_s=0.2, tail_s=0.3)
    kinds = [step.split()[0] for step in f.steps]
    assert kinds == ["borrow", "borrow", "native-rate"], f.steps
    assert f.lead_s == pytest.approx(0.2) and f.tail_s == pytest.approx(0.3)
    assert f.steps[0] == "borrow 0.20s before" and f.steps[1] == "borrow 0.30s after"
    assert len(s.calls) == 2
    assert f.fits and f.duration_s <= 2.4 + 0.2 + 0.3 + FIT_TOLERANCE_S
    # the borrowed time lowers the speed-up to 3.3 / 2.9 (the slot alone would need 3.3 / 2.4 = 1.375)
    assert f.total_speedup == pytest.approx(3.3 / 2.9, abs=0.02)
    # a line that fits takes nothing
    g = fit_dub_line(_FakeSynth(), "x" * 20, "v", "es", slot_s=2.4, lead_s=0.2, tail_s=0.3)
    assert g.lead_s == 0 and g.tail_s == 0 and g.tail_needed_s == 0


@pytest.mark.parametrize("honour, slot_s, lead_s, tail_s", [
    (1.0, 2.05, 0.0, 0.0),     # 2.2 s natural: fits the slot at a native x1.073
    (0.6, 2.05, 0.0, 0.0),     # the engine delivers less than asked: the rest is atempo, not a 3rd call
    (1.0, 1.7, 0.1, 0.0),      # fits only with the silence before it and a rate above the comfortable one
    (0.6, 1.8, 0.1, 0.1),
])
def test_fit_dub_line_synthesizes_at_most_twice_when_a_native_rate_makes_it_fit(honour, slot_s, lead_s, tail_s):
    s = _FakeSynth(honour=honour)
    f = fit_dub_line(s, "x" * 44, "v", "es", slot_s=slot_s, lead_s=lead_s, tail_s=tail_s)
    assert f.fits and f.native_speed > 1.0, f.steps
    assert len(s.calls) == 2 and s.calls[0] == 1.0, s.calls          # speed 1, then the chosen rate only
    assert f.total_speedup <= 1.25 + ATEMPO_TOLERANCE
    assert f.duration_s >= f.natural_duration_s / 1.25 - 0.02


def test_kokoro_line_too_long_at_speed_1_is_synthesized_once(kokoro, monkeypatch):
    text = "La narrativa sería tediosa para él. Pero, comparativamente, difiere poco de lo que ya sabemos."
    raw = trim_silence(kokoro.synthesize(text, "jm_kumo", "es"), SR)
    natural, tightened = raw.size / SR, timing.tighten_pauses(raw, SR).size / SR
    assert tightened < natural - 0.2                          # Kokoro's long pause at the full stop
    speeds = []
    synthesize = kokoro.synthesize
    monkeypatch.setattr(kokoro, "synthesize", lambda *a: speeds.append(a[3]) or synthesize(*a))
    for needed in (1.06, 1.15):
        speeds.clear()
        f = fit_dub_line(kokoro, text, "jm_kumo", "es", slot_s=natural / needed)
        assert speeds == [f.native_speed], (speeds, f.steps)   # one synthesis, at the rate chosen ahead
        assert f.steps[0].startswith("tighten pauses"), f.steps  # pauses first, as when measured
        assert f.natural_predicted and f.natural_duration_s == pytest.approx(tightened, abs=0.2)
        assert f.fits and f.total_speedup <= 1.25 + ATEMPO_TOLERANCE, f.steps
        assert f.stretch <= 1.03, f.steps                  # the predicted rate left (almost) nothing to atempo
    assert f.native_speed > 1.0                            # 1.15x needs more than the shorter pauses
    speeds.clear()
    f = fit_dub_line(kokoro, text, "jm_kumo", "es", slot_s=natural + 0.5)
    assert speeds == [1.0] and not f.natural_predicted and f.total_speedup == 1.0


def test_kokoro_line_keeps_its_words_when_shorter_pauses_make_it_fit(kokoro):
    text = "Bueno, la narrativa sería tediosa para él. Pero, la verdad es que difiere poco de lo que ya sabemos."
    raw = trim_silence(kokoro.synthesize(text, "jm_kumo", "es"), SR)
    tightened = timing.tighten_pauses(raw, SR).size / SR
    f = fit_dub_line(kokoro, text, "jm_kumo", "es", slot_s=tightened + 0.1, condenser=RuleCondenser())
    assert RuleCondenser().shorten(text, "es", len(text) - 10) != text    # it would have cut words
    assert not f.condensed and f.text == text and f.steps[0].startswith("tighten pauses"), f.steps
    assert f.fits and f.native_speed == 1.0
