"""Fitting one synthesized line into the time slot of the source line.

Order of the fit (:func:`fit_line`): synthesize at speed 1 and trim silence; when too long,
re-synthesize at a native speed ``min(needed, max_speedup)``; when still too long, time-stretch
(ffmpeg ``atempo``, pitch kept) by what is left, never beyond ``native_speed * stretch ==
max_speedup``. Speech is never cut: a line that still does not fit comes back longer than its slot
with ``fits=False`` and the caller borrows the following silence. The pitch shift is applied last.
"""
from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import ffmpeg
import numpy as np

if TYPE_CHECKING:
    from .tts import Synthesizer

# A fitted line within this much of its slot counts as fitting (atempo's length is exact to a few ms).
FIT_TOLERANCE_S = 0.02


class AudioFilterError(RuntimeError):
    """ffmpeg failed on an in-memory filter; the message names the filter."""


def _filter(audio: np.ndarray, sr: int, build, what: str) -> np.ndarray:
    """Run float32 mono samples through an ffmpeg-python filter graph, pipe to pipe."""
    audio = np.ascontiguousarray(audio, dtype="<f4").ravel()
    if audio.size == 0:
        return audio.astype(np.float32)
    stream = build(ffmpeg.input("pipe:", format="f32le", ac=1, ar=sr))
    try:
        out, _ = (ffmpeg.output(stream, "pipe:", format="f32le", ac=1, ar=sr)
                  .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
                  .run(input=audio.tobytes(), capture_stdout=True, capture_stderr=True))
    except ffmpeg.Error as e:
        msg = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        raise AudioFilterError(f"{what} failed: {msg[-1] if msg else 'ffmpeg error'}") from None
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


@functools.lru_cache(maxsize=1)
def has_rubberband() -> bool:
    """Whether this ffmpeg build has the librubberband filter."""
    try:
        r = subprocess.run(["ffmpeg", "-hide_banner", "-filters"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.split()[1:2] == ["rubberband"] for line in r.stdout.splitlines() if line.strip())


def trim_silence(audio: np.ndarray, sr: int, threshold_db: float = -40.0, pad_s: float = 0.01,
                 frame_s: float = 0.01) -> np.ndarray:
    """Cut leading and trailing silence: 10 ms frames whose RMS is more than ``threshold_db`` below
    the loudest frame. ``pad_s`` of the cut silence is kept on each side so onsets stay intact.
    Silence only (or empty input) gives an empty array."""
    audio = np.asarray(audio, np.float32).ravel()
    n = max(1, int(round(frame_s * sr)))
    if audio.size == 0:
        return audio
    nfr = -(-audio.size // n)
    padded = np.zeros(nfr * n, np.float32)
    padded[:audio.size] = audio
    rms = np.sqrt((padded.reshape(nfr, n).astype(np.float64) ** 2).mean(axis=1))
    ref = rms.max()
    if ref <= 0:
        return audio[:0]
    loud = np.flatnonzero(rms >= ref * 10 ** (threshold_db / 20))
    pad = int(round(pad_s * sr))
    start = max(0, loud[0] * n - pad)
    end = min(audio.size, (loud[-1] + 1) * n + pad)
    return audio[start:end]


def tighten_pauses(audio: np.ndarray, sr: int, max_pause_s: float = 0.35, threshold_db: float = -40.0,
                   frame_s: float = 0.01, fade_s: float = 0.005) -> np.ndarray:
    """Shorten every pause inside ``audio`` (a run of 10 ms frames more than ``threshold_db`` below
    the loudest frame) that is longer than ``max_pause_s`` to ``max_pause_s``; speech itself is kept
    sample for sample. Kokoro pauses 0.5-1.5 s at some commas and full stops, far longer than a
    speaker would: shortening them gains time without speaking any faster. The cut is made in the
    middle of the pause with a short crossfade, so no click."""
    audio = np.asarray(audio, np.float32).ravel()
    n = max(1, int(round(frame_s * sr)))
    nfr = audio.size // n
    if nfr < 3:
        return audio
    rms = np.sqrt((audio[:nfr * n].reshape(nfr, n).astype(np.float64) ** 2).mean(axis=1))
    if rms.max() <= 0:
        return audio
    quiet = rms < rms.max() * 10 ** (threshold_db / 20)
    keep_frames = int(round(max_pause_s / frame_s))
    fade = max(1, int(round(fade_s * sr)))
    cuts = []                                   # (first sample removed, first sample kept again)
    i = 0
    while i < nfr:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < nfr and quiet[j]:
            j += 1
        if i > 0 and j < nfr and j - i > keep_frames:     # inside the line only, never its edges
            half = keep_frames // 2
            cuts.append(((i + half) * n, (j - (keep_frames - half)) * n))
        i = j
    if not cuts:
        return audio
    out, pos = [], 0
    for a, b in cuts:
        head, tail = audio[pos:a].copy(), audio[b:b + fade]
        k = min(fade, head.size, tail.size)
        if k:
            ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
            head[-k:] = head[-k:] * (1 - ramp) + tail[:k] * ramp
            b += k
        out.append(head)
        pos = b
    out.append(audio[pos:])
    return np.concatenate(out)


def _atempo_chain(stream, factor: float):
    # One atempo instance accepts 0.5..100; chain halves for slower factors.
    while factor < 0.5:
        stream = stream.filter("atempo", 0.5)
        factor /= 0.5
    return stream.filter("atempo", factor)


def time_stretch(audio: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Change tempo, keep pitch (ffmpeg atempo). ``factor`` > 1 makes the audio shorter
    (new length = length / factor)."""
    if not np.isfinite(factor) or factor <= 0:
        raise ValueError(f"time-stretch factor must be > 0, got {factor}")
    audio = np.asarray(audio, np.float32).ravel()
    if abs(factor - 1.0) < 1e-6:
        return audio.copy()
    return _filter(audio, sr, lambda s: _atempo_chain(s, float(factor)), f"time-stretch x{factor:.3f}")


def pitch_shift(audio: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping the duration (exactly: output length == input length).

    Uses ffmpeg's rubberband filter (formants preserved) when the build has it, else
    asetrate + aresample + atempo. The input is padded with silence before filtering so the
    filter's latency does not eat the tail, then cut back to the input length."""
    audio = np.asarray(audio, np.float32).ravel()
    if abs(semitones) < 1e-3 or audio.size == 0:
        return audio.copy()
    ratio = 2.0 ** (semitones / 12.0)
    padded = np.concatenate([audio, np.zeros(int(0.3 * sr), np.float32)])
    if has_rubberband():
        build = lambda s: s.filter("rubberband", pitch=ratio, formant="preserved")  # noqa: E731
    else:
        build = lambda s: _atempo_chain(  # noqa: E731
            s.filter("asetrate", int(round(sr * ratio))).filter("aresample", sr), 1.0 / ratio)
    out = _filter(padded, sr, build, f"pitch shift {semitones:+.2f} st")
    if out.size < audio.size:
        out = np.concatenate([out, np.zeros(audio.size - out.size, np.float32)])
    return out[:audio.size]


@dataclass
class FittedLine:
    audio: np.ndarray            # float32 mono
    sample_rate: int
    duration_s: float
    native_speed: float          # speed passed to the synthesizer (1.0 when not re-synthesized)
    stretch: float               # atempo factor applied afterwards (1.0: none)
    total_speedup: float         # natural_duration_s / duration_s: the speed-up a listener hears
    fits: bool                   # duration_s <= slot_s (+ FIT_TOLERANCE_S)
    slot_s: float = 0.0
    natural_duration_s: float = 0.0   # trimmed duration at speed 1
    pitch_semitones: float = 0.0

    @property
    def overflow_s(self) -> float:
        """How far the line runs past its slot (0 when it fits)."""
        return max(0.0, self.duration_s - self.slot_s)


def fit_line(synth: "Synthesizer", text: str, voice: str, language: str, slot_s: float,
             max_speedup: float = 1.25, pitch_semitones: float = 0.0) -> FittedLine:
    """Synthesize ``text`` to fit ``slot_s`` seconds, speeding up by at most ``max_speedup``.

    Raises the synthesizer's EmptyTextError for text with nothing to speak."""
    if not slot_s > 0:
        raise ValueError(f"slot must be > 0 s, got {slot_s}")
    if not max_speedup >= 1.0:
        raise ValueError(f"max_speedup must be >= 1, got {max_speedup}")
    sr = synth.sample_rate
    audio = trim_silence(synth.synthesize(text, voice, language, 1.0), sr)
    natural = audio.size / sr
    native, stretch = 1.0, 1.0
    limit = slot_s + FIT_TOLERANCE_S
    if natural > limit and max_speedup > 1.0:
        needed = natural / slot_s
        if getattr(synth, "supports_speed", True):
            native = min(needed, max_speedup, getattr(synth, "max_speed", max_speedup))
            native = float(np.floor(native * 1000) / 1000)   # stable value, never above the cap
            if native > 1.0:
                audio = trim_silence(synth.synthesize(text, voice, language, native), sr)
            else:
                native = 1.0
        current = audio.size / sr
        if current > limit:
            # Cap what the listener hears (natural pace / final pace), not the nominal speed:
            # Kokoro delivers less than the speed it is asked for.
            achieved = natural / current if current else 1.0
            stretch = min(current / slot_s, max_speedup / max(achieved, 1.0))
            stretch = float(np.floor(stretch * 1000) / 1000)
            if stretch > 1.0 + 1e-3:
                audio = time_stretch(audio, sr, stretch)
            else:
                stretch = 1.0
    if pitch_semitones:
        audio = pitch_shift(audio, sr, pitch_semitones)
    duration = audio.size / sr
    return FittedLine(audio=audio, sample_rate=sr, duration_s=duration, native_speed=native, stretch=stretch,
                      total_speedup=natural / duration if duration else 1.0, fits=duration <= limit, slot_s=float(slot_s),
                      natural_duration_s=natural, pitch_semitones=float(pitch_semitones))


# --------------------------------------------------------------------------------------------------
# The whole fallback order for one dubbed line
# --------------------------------------------------------------------------------------------------

# Characters of normalised text per second of trimmed speech at speed 1, per language, for the
# shipped Kokoro voices (the dev composite's translations: 11.6-12.5 for jf_gongitsune, 13.5-15 for
# jf_alpha; the middle is taken, the measured duration corrects it).
# A fixed table, not a running estimate, so a line's audio depends only on its own cache key.
CHARS_PER_S = {"es": 13.5, "pt": 13.0, "fr": 13.5, "it": 13.5, "ca": 13.5, "en": 13.5}
DEFAULT_CHARS_PER_S = 13.5
# Pace of shipped Kokoro voices relative to CHARS_PER_S: the estimate is for the voice that will speak.
# Measured (trimmed duration at speed 1 / estimate at pace 1) on the dev composite's es and pt lines
# (2-3 lines per voice) and, for jm_kumo, on 8 es/pt sentences; voices not listed count as 1.0.
VOICE_PACE = {"jm_kumo": 1.04, "blend:jf_alpha=0.5,jf_nezumi=0.5": 1.08, "jf_gongitsune": 0.92,
              "jf_nezumi": 0.99, "jf_tebukuro": 0.85}
# Longest pause kept inside a line that does not fit (see tighten_pauses).
MAX_PAUSE_S = 0.35
# Native speed used before borrowing silence: Kokoro up to 1.1 still sounds like normal speech.
COMFORTABLE_SPEED = 1.1
# Share of an asked native speed-up the engine delivers (speed 1 + x gives a speed-up of about
# 1 + honour * x): Kokoro measured 0.3-1.0 on es/pt sentences with 3 voices at speeds 1.05-1.25,
# mean 0.57 at 1.1 and 0.72 at 1.25. Engines not listed: taken at their word (1.0).
NATIVE_SPEED_HONOUR = {"kokoro": 0.65}
# Silence between two dub lines when a line borrows the gap before it.
MIN_GAP_S = 0.1
# A pause between pieces of a line split for the engine's input limit.
PIECE_PAUSE_S = 0.12


def estimate_spoken_s(text: str, language: str, voice: str | None = None) -> float:
    """Seconds ``text`` takes at speed 1 (rough, from its length and the voice's pace; the fit then
    measures the real one)."""
    from .translation import split_code
    cps = CHARS_PER_S.get(split_code(language)[0], DEFAULT_CHARS_PER_S) * VOICE_PACE.get(voice or "", 1.0)
    pauses = len(re.findall(r"[,;:.!?](?=\s)", text))
    return len(text) / cps + 0.15 * pauses


def _pieces(synth: "Synthesizer", text: str) -> list[str]:
    """``text`` split at sentence boundaries where it is longer than the engine's input limit."""
    from .textnorm import split_sentences
    return split_sentences(text, int(getattr(synth, "max_input_chars", 300)))


def synthesize_pieces(synth: "Synthesizer", text: str, voice: str, language: str, speed: float) -> np.ndarray:
    """Synthesize ``text``, split at sentence boundaries when longer than the engine's input limit,
    each piece trimmed and joined with a short pause (every word of every piece is spoken)."""
    sr = synth.sample_rate
    parts = [trim_silence(synth.synthesize(p, voice, language, speed), sr) for p in _pieces(synth, text)]
    pause = np.zeros(int(PIECE_PAUSE_S * sr), np.float32)
    out = []
    for i, p in enumerate(parts):
        out += [pause, p] if i else [p]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def predict_pieces_s(synth: "Synthesizer", text: str, voice: str, language: str, speed: float,
                     max_pause_s: float | None = None) -> float | None:
    """How long :func:`synthesize_pieces` will be (with ``max_pause_s``: after
    :func:`tighten_pauses`), from the engine's own duration prediction (None when it has none)."""
    predict = getattr(synth, "predict_duration_s", None)
    if predict is None:
        return None
    predicted = [predict(p, voice, language, speed, max_pause_s) for p in _pieces(synth, text)]
    if not predicted or any(d is None for d in predicted):
        return None
    return sum(predicted) + PIECE_PAUSE_S * (len(predicted) - 1)


def slowest_rate_within(predict, target_s: float, low: float, high: float) -> float:
    """The slowest native speed in [low, high] whose predicted duration is at most ``target_s``
    (``high`` when none is); ``predict(speed)`` must not grow with speed. To 1/1000."""
    if predict(low) <= target_s:
        return low
    if predict(high) > target_s:
        return high
    lo, hi = int(np.floor(low * 1000)), int(np.ceil(high * 1000))   # predict(hi / 1000) fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predict(mid / 1000) <= target_s:
            hi = mid
        else:
            lo = mid
    return max(low, hi / 1000)


@dataclass
class DubbedLine(FittedLine):
    text: str = ""                # what is spoken (condensed and normalised)
    condensed: bool = False
    lead_s: float = 0.0           # silence borrowed before the line's start (it starts this much earlier)
    lead_needed_s: float = 0.0    # overflow when the borrow step came (what more lead would have given)
    tail_s: float = 0.0           # time borrowed after the slot (the next line waits this much)
    tail_needed_s: float = 0.0    # overflow left after the lead when the borrow step came
    steps: list[str] = field(default_factory=list)   # the fallbacks used, in order
    natural_predicted: bool = False   # natural_duration_s is the engine's prediction (never synthesized at x1)


def fit_dub_line(synth: "Synthesizer", text: str, voice: str, language: str, slot_s: float, lead_s: float = 0.0,
                 condenser=None, max_speedup: float = 1.25, pitch_semitones: float = 0.0,
                 comfortable_speed: float = COMFORTABLE_SPEED, tail_s: float = 0.0,
                 max_pause_s: float = MAX_PAUSE_S) -> DubbedLine:
    """Fit one translated line into ``slot_s`` (up to the next line) without dropping speech, in order:

    1. estimate its spoken duration for this voice; 2. condense the text when the estimate (then the
    measurement) is over the slot, and shorten the engine's overlong pauses (``max_pause_s``: speech
    untouched); 3. a native faster rate up to ``comfortable_speed``; 4. borrow up to ``lead_s`` of
    silence before the line (it starts earlier; the caller never lets that reach the previous line),
    then up to ``tail_s`` after its slot (the caller delays the next line that much, and offers only
    what that line can spare); 5. a native rate up to ``max_speedup``, then time-stretch, the total
    heard speed-up capped at ``max_speedup``. What still does not fit comes back with ``fits=False``,
    never cut. Steps 3-5 cost one synthesis: the borrows and the rate are chosen from the duration
    at speed 1 and the engine's response to its speed. An engine that predicts its own durations
    (:meth:`Synthesizer.predict_duration_s`: Kokoro) gives both without synthesizing, pauses
    included: a line too long at speed 1 has its pauses shortened, its rate chosen (the slowest that
    fits) and is synthesized once. Otherwise the line is measured at speed 1 and the response taken
    from NATIVE_SPEED_HONOUR.
    """
    from .textnorm import normalize_for_speech
    if not slot_s > 0:
        raise ValueError(f"slot must be > 0 s, got {slot_s}")
    if not max_speedup >= 1.0:
        raise ValueError(f"max_speedup must be >= 1, got {max_speedup}")
    sr = synth.sample_rate
    limit = slot_s + FIT_TOLERANCE_S
    steps: list[str] = []
    said = text                                   # the (possibly condensed) text, before normalising
    spoken = normalize_for_speech(said, language)

    def predicted(speed: float, tightened: bool = False) -> float | None:
        return predict_pieces_s(synth, spoken, voice, language, speed, max_pause_s if tightened else None)

    estimate = predicted(1.0, max_pause_s > 0)     # words are condensed only if shorter pauses will not do
    if estimate is None:
        estimate = estimate_spoken_s(spoken, language, voice)
    if condenser is not None and estimate > slot_s:
        shorter = condenser.shorten(text, language, int(len(text) * slot_s / estimate))
        if len(shorter) < len(said):
            said, spoken = shorter, normalize_for_speech(shorter, language)
            steps.append("condense(estimate)")
    tighten = False

    def render(speed: float) -> np.ndarray:
        out = synthesize_pieces(synth, spoken, voice, language, speed)
        return tighten_pauses(out, sr, max_pause_s) if tighten else out

    def at_speed_1() -> tuple[np.ndarray | None, float]:
        """The line at speed 1 and its duration; no audio when the engine predicts it will not fit."""
        ahead = predicted(1.0, tighten)
        if ahead is not None and ahead > limit:
            return None, ahead
        out = render(1.0)
        return out, out.size / sr

    audio, natural = at_speed_1()
    if natural > limit and max_pause_s > 0:
        tighter_audio = tighten_pauses(audio, sr, max_pause_s) if audio is not None else None
        tighter = tighter_audio.size / sr if tighter_audio is not None else predicted(1.0, True)
        if tighter < natural:
            tighten, audio = True, tighter_audio
            steps.append(f"tighten pauses -{natural - tighter:.2f}s")
            natural = tighter
    if natural > limit and condenser is not None:
        # The estimate was off for this voice: condense from what was measured (or predicted).
        shorter = condenser.shorten(text, language, int(len(said) * slot_s / natural))
        if len(shorter) < len(said):
            said, spoken = shorter, normalize_for_speech(shorter, language)
            audio, natural = at_speed_1()
            steps.append("condense(measured)" if audio is not None else "condense(predicted)")
    native, stretch, lead, tail = 1.0, 1.0, 0.0, 0.0
    lead_needed = tail_needed = 0.0
    can_speed = getattr(synth, "supports_speed", True)
    speed_cap = min(max_speedup, getattr(synth, "max_speed", max_speedup))
    honour = NATIVE_SPEED_HONOUR.get(getattr(synth, "name", ""), 1.0)
    foreseen = audio is None          # the engine predicted the durations: nothing synthesized yet

    def borrows(duration: float, over: float, needed_at_least: float = 0.0) -> tuple[float, float, float, float]:
        """(lead needed, lead, tail needed, tail) for a line ``duration`` long, ``over`` past its slot."""
        needed = max(needed_at_least, round(over, 3))
        before = round(min(lead_s, needed), 3) if lead_s > 0 else 0.0
        after_needed = round(max(0.0, over - before), 3) if duration > slot_s + before + FIT_TOLERANCE_S else 0.0
        return needed, before, after_needed, round(min(tail_s, after_needed), 3) if tail_s > 0 else 0.0

    if natural > limit:
        # One synthesis at most from here: the duration at the comfortable rate is predicted, the
        # silence borrowed from that prediction, and the rate chosen for the room it leaves; what
        # the prediction missed is borrowed or time-stretched, never re-synthesized.
        comfortable = min(comfortable_speed, speed_cap) if can_speed and comfortable_speed > 1.0 else 1.0
        at_comfortable = (predicted(comfortable, tighten) if foreseen
                          else natural / (1.0 + (comfortable - 1.0) * honour))
        if at_comfortable > limit:
            lead_needed, lead, tail_needed, tail = borrows(at_comfortable, round(at_comfortable - slot_s, 3))
        room = slot_s + lead + tail
        if can_speed and foreseen:
            def expected(speed: float) -> float:
                return predicted(speed, tighten)
            if at_comfortable <= limit:
                native = slowest_rate_within(expected, slot_s, 1.0, comfortable)
            else:
                native = slowest_rate_within(expected, room, 1.0, speed_cap)
            audio = render(native)
        elif can_speed:
            # the speed-up still needed is asked as is (as fit-v3 did): an engine delivering more
            # than predicted would otherwise speak faster than needed; a shortfall goes to atempo
            if at_comfortable <= limit:
                rate = min(natural / slot_s, comfortable)
            elif at_comfortable <= room + FIT_TOLERANCE_S:
                rate = comfortable
            else:
                rate = min(max(natural / room, comfortable), speed_cap)
            native = float(np.floor(rate * 1000 + 1e-6) / 1000)
            if native > 1.0 + 1e-3:
                audio = render(native)
            else:
                native = 1.0
        if audio is None:
            audio = render(native)
        if foreseen and not tighten and audio.size / sr > room + FIT_TOLERANCE_S and max_pause_s > 0:
            # longer than predicted, with pauses the prediction did not see
            tighter = tighten_pauses(audio, sr, max_pause_s)
            if tighter.size < audio.size:
                steps.append(f"tighten pauses -{(audio.size - tighter.size) / sr:.2f}s")
                audio = tighter
        if audio.size / sr > room + FIT_TOLERANCE_S:
            # longer than predicted: borrow the measured overflow, as far as offered, before any
            # time-stretch (needs only grow, so equal borrows still mean an equal rate: cache stays valid)
            lead_needed, lead, tail_needed, tail = borrows(audio.size / sr, audio.size / sr - slot_s, lead_needed)
        if lead:
            steps.append(f"borrow {lead:.2f}s before")
        if tail:
            steps.append(f"borrow {tail:.2f}s after")
        if native > 1.0:
            steps.append(f"native-rate x{native:.3f}")
    if audio is None:
        # predicted too long at speed 1, but short enough once its pauses are shortened
        audio = render(1.0)
    limit = slot_s + lead + tail + FIT_TOLERANCE_S
    room = slot_s + lead + tail
    current = audio.size / sr
    if current > limit:
        achieved = natural / current if current else 1.0
        stretch = float(np.floor(min(current / room, max_speedup / max(achieved, 1.0)) * 1000) / 1000)
        if stretch > 1.0 + 1e-3:
            audio = time_stretch(audio, sr, stretch)
            steps.append(f"time-stretch x{stretch:.3f}")
        else:
            stretch = 1.0
    if pitch_semitones:
        audio = pitch_shift(audio, sr, pitch_semitones)
    duration = audio.size / sr
    fits = duration <= limit
    if not fits:
        steps.append("over the slot")
    return DubbedLine(audio=audio, sample_rate=sr, duration_s=duration, native_speed=native, stretch=stretch,
                      total_speedup=natural / duration if duration else 1.0, fits=fits, slot_s=float(room),
                      natural_duration_s=natural, pitch_semitones=float(pitch_semitones), text=spoken,
                      condensed=any(s.startswith("condense") for s in steps), lead_s=lead,
                      lead_needed_s=lead_needed, tail_s=tail, tail_needed_s=tail_needed, steps=steps,
                      natural_predicted=foreseen)
