"""Chunking: voice-activity detection, then speech grouped into 6-12 s chunks split at silences."""
from __future__ import annotations

import importlib.metadata
import os
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from . import media
from .types import Chunk

VAD_RATE = 16000
_VAD_FRAME = 512                # Silero's frame at 16 kHz (32 ms)


class SpeechDetector(ABC):
    version: str

    @abstractmethod
    def speech_regions(self, wav16k_path: str | os.PathLike) -> list[tuple[float, float]]:
        """Speech (start, end) in seconds from a 16 kHz mono WAV, sorted, non-overlapping."""


class SileroSpeechDetector(SpeechDetector):
    """Silero VAD v6 through onnxruntime (weights ship inside the ``silero-vad`` wheel, MIT).

    Parameters are those of ``silero_vad.get_speech_timestamps``. Audio is read with soundfile (the
    ``[audio]`` extra of silero-vad, which pulls torchaudio, is not needed); a file that is not 16 kHz
    mono is downmixed / resampled first. The model is loaded on first use and reused.
    """

    def __init__(self, threshold: float = 0.5, min_speech_ms: int = 250, min_silence_ms: int = 100,
                 speech_pad_ms: int = 30):
        self.threshold = threshold
        self.min_speech_ms = min_speech_ms
        self.min_silence_ms = min_silence_ms
        self.speech_pad_ms = speech_pad_ms
        try:
            package_version = importlib.metadata.version("silero-vad")
        except importlib.metadata.PackageNotFoundError:
            package_version = "missing"
        self.version = (f"silero-vad-{package_version}-onnx+th{threshold:g}-speech{min_speech_ms}ms"
                        f"-sil{min_silence_ms}ms-pad{speech_pad_ms}ms")
        self._model = None

    def _load(self):
        if self._model is None:
            import torch
            threads = torch.get_num_threads()
            try:
                from silero_vad import load_silero_vad
            except ImportError as e:
                raise ImportError("Silero VAD is not installed: pip install silero-vad==6.2.3 onnxruntime "
                                  "(without the [audio] extra)") from e
            finally:
                torch.set_num_threads(threads)      # importing silero_vad sets torch to 1 thread
            with warnings.catch_warnings():     # silero-vad 6.2.3 uses importlib.resources.path
                warnings.simplefilter("ignore", DeprecationWarning)
                self._model = load_silero_vad(onnx=True)
        return self._model

    def speech_regions(self, wav16k_path: str | os.PathLike) -> list[tuple[float, float]]:
        path = Path(wav16k_path)
        if not path.is_file():
            raise media.MediaError(f"{path.name}: file not found")
        try:
            info = sf.info(str(path))
            ready = info.samplerate == VAD_RATE
        except (RuntimeError, sf.LibsndfileError):
            ready = False
        if ready:
            return self._regions_of_16k(path)
        with tempfile.TemporaryDirectory(prefix="octavia-vad-") as tmp:
            converted = Path(tmp) / "audio_16k_mono.wav"
            media.resample(path, converted, VAD_RATE, 1)
            return self._regions_of_16k(converted)

    def _regions_of_16k(self, path: Path) -> list[tuple[float, float]]:
        stamps = silero_speech_stamps(path, self._load(), threshold=self.threshold,
                                      min_speech_duration_ms=self.min_speech_ms,
                                      min_silence_duration_ms=self.min_silence_ms, speech_pad_ms=self.speech_pad_ms)
        regions = [(round(s["start"] / VAD_RATE, 3), round(s["end"] / VAD_RATE, 3)) for s in stamps]
        return _merge(regions, 0.0)


def silero_speech_stamps(wav16k_path: str | os.PathLike, model, gain: float = 1.0, **params) -> list[dict]:
    """``silero_vad.get_speech_timestamps`` (in samples) of a 16 kHz file, read in blocks so memory
    stays flat in the input's length: the frames (512 samples) are fed to ``model`` (ONNX or JIT)
    in order with its state carried over, exactly as that function does on a whole array, and the
    probabilities go through its own ``get_speech_timestamps_from_probs``. ``gain`` scales the
    samples first (clipped to [-1, 1]): Silero is level-sensitive and misses quiet speech."""
    import torch
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    model.reset_states()
    probs, length = [], 0
    # no autograd (as get_speech_timestamps): the JIT model's state would keep every frame's graph
    with torch.no_grad(), sf.SoundFile(str(wav16k_path)) as f:
        if f.samplerate != VAD_RATE:
            raise ValueError(f"Silero needs 16 kHz audio, not {f.samplerate} Hz")
        for block in f.blocks(blocksize=_VAD_FRAME * 1024, dtype="float32", always_2d=True):
            mono = np.ascontiguousarray(block.mean(axis=1), np.float32)
            if gain != 1.0:
                mono = np.clip(mono * gain, -1.0, 1.0)
            length += len(mono)
            for i in range(0, len(mono), _VAD_FRAME):
                frame = mono[i:i + _VAD_FRAME]
                if len(frame) < _VAD_FRAME:          # only the file's last frame is short
                    frame = np.pad(frame, (0, _VAD_FRAME - len(frame)))
                probs.append(model(torch.from_numpy(frame), VAD_RATE).item())
    if length < _VAD_FRAME:                          # shorter than one 32-ms VAD frame
        return []
    return get_speech_timestamps_from_probs(probs, sampling_rate=VAD_RATE, return_seconds=False,
                                            audio_length_samples=length, **params)


def _merge(regions: Iterable[tuple[float, float]], min_gap: float) -> list[tuple[float, float]]:
    """Sorted regions, with those that overlap or are separated by less than min_gap joined."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted((float(s), float(e)) for s, e in regions if e > s):
        if merged and (start <= merged[-1][1] or start - merged[-1][1] < min_gap):
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _group(spans: Sequence[tuple[float, float]], min_len: float, max_len: float) -> list[tuple[float, float]]:
    """Group consecutive sorted spans into (start, end) groups, cutting only between spans.

    From each group's first span, a cut after span j "qualifies" when the group would last between
    min_len and max_len. Among qualifying cuts the one before the largest gap wins (the end of the
    list counts as an infinite gap); cuts that would leave a remainder shorter than min_len are used
    only when no other qualifies. When none qualifies, the group ends at the last cut that keeps it
    within max_len (a short group); a single span longer than max_len becomes a group of its own.
    """
    groups: list[tuple[float, float]] = []
    n, i = len(spans), 0
    final_end = spans[-1][1] if spans else 0.0
    while i < n:
        start = spans[i][0]
        qualifying, last_within_max = [], i
        for j in range(i, n):
            length = spans[j][1] - start
            if length > max_len:
                break
            last_within_max = j
            if length >= min_len:
                gap = spans[j + 1][0] - spans[j][1] if j + 1 < n else float("inf")
                remainder = final_end - spans[j + 1][0] if j + 1 < n else 0.0
                leaves_short_tail = 0.0 < remainder < min_len
                qualifying.append((not leaves_short_tail, gap, j))
        cut = max(qualifying)[2] if qualifying else last_within_max
        groups.append((start, spans[cut][1]))
        i = cut + 1
    return groups


def speaker_change_points(turns: Sequence, min_turn_s: float = 0.5) -> list[float]:
    """Times where the speaker changes, from diarization turns (objects with start, end, speaker).

    Between two consecutive turns of different speakers the change is put in the middle of the
    gap between them (or of their overlap). Turns shorter than ``min_turn_s`` (backchannels,
    "yeah") do not make a change of their own: they stay with the chunk around them.
    """
    kept = sorted((t for t in turns if t.end - t.start >= min_turn_s), key=lambda t: (t.start, t.end))
    points = []
    for a, b in zip(kept, kept[1:]):
        if a.speaker != b.speaker:
            points.append(round((a.end + b.start) / 2, 3))
    return sorted(set(points))


def _split_at(regions: list[tuple[float, float]], points: Sequence[float]) -> list[list[tuple[float, float]]]:
    """Sorted regions partitioned into consecutive groups separated by ``points``; a region that
    contains a point is cut there (the diarizer says the speaker changes inside it)."""
    groups: list[list[tuple[float, float]]] = [[]]
    todo = list(regions)
    pending = sorted(points)
    while todo:
        s, e = todo.pop(0)
        while pending and pending[0] <= s:
            pending.pop(0)
            if groups[-1]:
                groups.append([])
        if pending and pending[0] < e:
            c = pending.pop(0)
            groups[-1].append((s, c))
            groups.append([])
            todo.insert(0, (c, e))
            continue
        groups[-1].append((s, e))
    return [g for g in groups if g]


def _snap_to_gaps(points: Sequence[float], detected: list[tuple[float, float]],
                  reach: float = 1.0) -> list[float]:
    """Each change point moved to the middle of the nearest pause between detected regions within
    ``reach`` seconds, so that a cut at a speaker change falls between words, not inside one (the
    diarizer's boundaries are only as precise as its 0.75-s embedding hop)."""
    gaps = [(a[1] + b[0]) / 2 for a, b in zip(detected, detected[1:])]
    snapped = []
    for p in points:
        near = min(gaps, key=lambda g: abs(g - p), default=None)
        snapped.append(round(near, 3) if near is not None and abs(near - p) <= reach else p)
    return sorted(set(snapped))


def make_chunks(regions: Iterable[tuple[float, float]], min_len: float = 6.0, max_len: float = 12.0,
                min_silence: float = 0.35, *, max_pause: float | None = 1.5,
                speaker_turns: Sequence | None = None) -> list[Chunk]:
    """Group speech regions (seconds) into chunks of about min_len..max_len seconds.

    1. Regions that overlap or are separated by a gap shorter than ``min_silence`` are merged.
    2. Consecutive merged regions are grouped into chunks of min_len..max_len seconds, cutting only
       at gaps between regions; when several cut points qualify, the largest gap wins (see
       ``_group``). A chunk may be shorter than min_len when speech is isolated (the next region
       would push it past max_len, or there is no more speech).
       A chunk never spans a pause of ``max_pause`` seconds or more (None: no such limit): a long
       silence is a better boundary than reaching min_len, and it often marks a change of speaker.
    3. A merged region longer than max_len is first split at the short gaps (< min_silence) that the
       detector reported inside it, by the same rule. If it has none (continuous speech), it is kept
       whole: we never cut inside detected speech, so such a chunk exceeds max_len.

    4. With ``speaker_turns`` (diarization), a chunk never spans a change of speaker
       (:func:`speaker_change_points`): the speech is cut there first and each single-speaker part
       is chunked by rules 1-3 on its own.

    Chunks never overlap, are sorted, and are indexed 0..n-1. Times are rounded to milliseconds.
    """
    if min_len > max_len:
        raise ValueError(f"min_len ({min_len}) must not exceed max_len ({max_len})")
    detected = _merge(regions, 0.0)
    if speaker_turns:
        parts = _split_at(detected, _snap_to_gaps(speaker_change_points(speaker_turns), detected))
        spans = [(c.start, c.end) for part in parts
                 for c in make_chunks(part, min_len, max_len, min_silence, max_pause=max_pause)]
        return [Chunk(index=k, start=s, end=e) for k, (s, e) in enumerate(spans)]
    units: list[tuple[float, float]] = []
    for start, end in _merge(detected, min_silence):
        if end - start <= max_len:
            units.append((start, end))
        else:
            inside = [r for r in detected if r[0] >= start and r[1] <= end]
            units.extend(_group(inside, min_len, max_len))
    stretches: list[list[tuple[float, float]]] = []     # runs of units without a long pause
    for unit in units:
        if stretches and (max_pause is None or unit[0] - stretches[-1][-1][1] < max_pause):
            stretches[-1].append(unit)
        else:
            stretches.append([unit])
    spans = [group for stretch in stretches for group in _group(stretch, min_len, max_len)]
    return [Chunk(index=k, start=round(s, 3), end=round(e, 3)) for k, (s, e) in enumerate(spans)]


def background_level(samples: np.ndarray, rate: int, speech: Sequence[tuple[float, float]],
                     frame_s: float = 0.1, pad_s: float = 0.3) -> dict:
    """How much sound there is outside speech: a music/background score for the pre-analysis.

    Frames at least ``pad_s`` away from any speech region are "non-speech". Returns
    ``background_db`` (median non-speech frame level minus median speech frame level, dB; None when
    either is missing), ``non_speech_s`` and ``background_score`` in 0..1: the share of non-speech
    frames louder than 35 dB below the speech level (0: silence between words, speech-only audio;
    1: a bed that never stops, music or ambience). With under 2 s of non-speech the score is None:
    nothing can be said, so downstream stages must not skip separation.
    """
    return _background_from_levels(_frame_levels_db(samples, rate, frame_s), speech, frame_s, pad_s)


def background_level_of_file(path: str | os.PathLike, speech: Sequence[tuple[float, float]],
                             frame_s: float = 0.1, pad_s: float = 0.3) -> dict:
    """:func:`background_level` of a WAV file (downmixed to mono), read in blocks: memory stays
    flat in the file's length."""
    with sf.SoundFile(str(path)) as f:
        n = max(1, int(frame_s * f.samplerate))
        levels = [_frame_levels_db(block.mean(axis=1), f.samplerate, frame_s)
                  for block in f.blocks(blocksize=n * 600, dtype="float32", always_2d=True)]
    return _background_from_levels(np.concatenate(levels) if levels else np.empty(0), speech, frame_s, pad_s)


def _frame_levels_db(samples: np.ndarray, rate: int, frame_s: float) -> np.ndarray:
    """RMS level (dB) of each whole ``frame_s`` frame; a trailing partial frame is left out."""
    x = np.asarray(samples, np.float32)
    n = max(1, int(frame_s * rate))
    count = len(x) // n
    frames = x[: count * n].reshape(count, n)
    rms = np.sqrt(np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / n)   # no squared copy
    return 20 * np.log10(rms + 1e-9)


def _background_from_levels(db: np.ndarray, speech: Sequence[tuple[float, float]], frame_s: float,
                            pad_s: float) -> dict:
    count = len(db)
    if count == 0:
        return {"background_db": None, "non_speech_s": 0.0, "background_score": None}
    centres = (np.arange(count) + 0.5) * frame_s
    near_speech = np.zeros(count, bool)
    in_speech = np.zeros(count, bool)
    for s, e in speech:
        near_speech |= (centres >= s - pad_s) & (centres <= e + pad_s)
        in_speech |= (centres >= s) & (centres <= e)
    quiet = ~near_speech
    non_speech_s = round(float(quiet.sum()) * frame_s, 2)
    if not in_speech.any():
        speech_db = None
    else:
        speech_db = float(np.median(db[in_speech]))
    if non_speech_s < 2.0:
        return {"background_db": None, "non_speech_s": non_speech_s, "background_score": None}
    background_db = float(np.median(db[quiet]))
    if speech_db is None:       # no speech at all: sound (music, effects) or silence
        score = float(np.mean(db[quiet] > -50.0))
        return {"background_db": None, "non_speech_s": non_speech_s, "background_score": round(score, 3)}
    score = float(np.mean(db[quiet] > speech_db - 35.0))
    return {"background_db": round(background_db - speech_db, 1), "non_speech_s": non_speech_s,
            "background_score": round(score, 3)}
