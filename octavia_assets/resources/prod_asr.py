"""Production transcription (engine ``whisperx-large-v3-turbo``): WhisperX batched Whisper large-v3-turbo
(CTranslate2; float16 on CUDA, int8 on CPU) and wav2vec2 forced alignment for word timestamps.

Weights come from the local model directory only::

    $OCTAVIA_MODEL_DIR/
      whisper-large-v3-turbo/   model.bin, config.json, tokenizer.json, preprocessor_config.json,
                                vocabulary.json (CT2)
      wav2vec2-<lang>/          one alignment model per source language (Hugging Face layout)
      nltk_data/tokenizers/punkt_tab/   the sentence splitter WhisperX's aligner loads
                                (python -m nltk.downloader -d $OCTAVIA_MODEL_DIR/nltk_data punkt_tab)

The project's chunks are the voice activity segmentation: WhisperX's own VAD (pyannote or a
torch.hub Silero) is not used. Chunks are cut into windows of at most 30 s (:func:`plan_windows`),
decoded in batches of ``batch_size`` through WhisperX's batched pipeline, and each window's text is
aligned with the language's wav2vec2 model. Words the aligner cannot place (digits, symbols) get
times interpolated between their neighbours (:func:`fill_word_times`). Speakers are assigned per
word by the transcript stage from the speaker_map turns (``transcript.lines_from``, the largest
overlap, as WhisperX's ``assign_word_speakers`` does), the same for every engine.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .asr import SAMPLE_RATE, ChunkTranscript, Transcriber, _load_16k_mono
from .cpus import available_cores
from .gpu_env import import_gpu_package, models_version, present_models, torch_device
from .model_dir import ModelMissing, model_dir, model_path, require
from .types import Chunk, Word

ENGINE = "whisperx-large-v3-turbo"
WHISPERX_PIN = "whisperx==3.8.6"
WHISPER_ID = "whisper-large-v3-turbo"
ALIGN_PREFIX = "wav2vec2-"
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json",
                 "vocabulary.json")          # CTranslate2 needs the vocabulary file beside model.bin
MAX_WINDOW_S = 30.0       # Whisper's input window


@dataclass(frozen=True)
class Window:
    """A stretch of audio decoded as one Whisper input: all or part of one chunk (seconds)."""
    chunk: int
    start: float          # padded bounds, inside the file
    end: float
    chunk_start: float    # the chunk's own bounds: words are clamped into them
    chunk_end: float


def plan_windows(chunks: list[Chunk], total_s: float, pad_s: float = 0.2,
                 max_s: float = MAX_WINDOW_S) -> list[Window]:
    """Windows to decode: each chunk padded by ``pad_s`` each side (within the file); a chunk longer
    than ``max_s`` is cut into equal parts of at most ``max_s`` (padding included). Chunks shorter
    than 0.1 s are skipped (nothing to decode)."""
    windows = []
    for c in chunks:
        c0, c1 = max(0.0, float(c.start)), min(total_s, float(c.end))
        if c1 - c0 < 0.1:
            continue
        parts = max(1, int(np.ceil((c1 - c0 + 2 * pad_s) / max_s - 1e-9)))
        step = (c1 - c0) / parts
        for k in range(parts):
            p0, p1 = c0 + k * step, c0 + (k + 1) * step
            s = max(0.0, p0 - pad_s)
            e = min(total_s, p1 + pad_s, s + max_s)
            windows.append(Window(chunk=c.index, start=round(s, 3), end=round(e, 3),
                                  chunk_start=round(p0, 3) if k else c0, chunk_end=round(p1, 3) if k < parts - 1 else c1))
    return windows


def batches(items: list, size: int) -> list[list]:
    """``items`` in consecutive groups of ``size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]


def fill_word_times(words: list[dict], start: float, end: float) -> list[dict]:
    """WhisperX word dicts (``word``, maybe ``start``/``end``/``score``) with every word timed.

    A run of words the aligner left without times is spread evenly (by characters) over the gap
    between the previous timed word's end (or ``start``) and the next timed word's start (or ``end``).
    """
    out = [dict(w) for w in words]
    i = 0
    while i < len(out):
        if "start" in out[i] and "end" in out[i]:
            i += 1
            continue
        j = i
        while j < len(out) and not ("start" in out[j] and "end" in out[j]):
            j += 1
        g0 = out[i - 1]["end"] if i > 0 else start
        g1 = out[j]["start"] if j < len(out) else end
        g1 = max(g0, g1)
        weights = [max(1, len(str(w.get("word", "")).strip())) for w in out[i:j]]
        total, t = float(sum(weights)), g0
        for w, n in zip(out[i:j], weights):
            w["start"] = round(t, 3)
            t += (g1 - g0) * n / total
            w["end"] = round(t, 3)
            w.setdefault("score", 0.0)
        i = j
    return out


def words_from_aligned(words: list[dict], window: Window) -> list[Word]:
    """Aligned word dicts of one window -> :class:`Word`, clamped into the chunk, starts non-decreasing."""
    timed = fill_word_times(words, window.start, window.end)
    out: list[Word] = []
    for w in timed:
        text = str(w.get("word", "")).strip()
        if not text:
            continue
        ws = min(max(float(w["start"]), window.chunk_start), window.chunk_end)
        we = min(max(float(w["end"]), window.chunk_start), window.chunk_end)
        ws = max(ws, out[-1].start if out else window.chunk_start)
        out.append(Word(start=round(ws, 3), end=round(max(we, ws), 3), text=text,
                        probability=round(float(w.get("score") or 0.0), 4)))
    return out


def merge_windows(chunks: list[Chunk], windows: list[Window], texts: list[str], words: list[list[Word]],
                  language: str) -> list[ChunkTranscript]:
    """One :class:`ChunkTranscript` per chunk (in chunk order), joining the windows of each chunk."""
    by_chunk: dict[int, tuple[list[str], list[Word]]] = {c.index: ([], []) for c in chunks}
    for w, text, ws in zip(windows, texts, words):
        parts, acc = by_chunk[w.chunk]
        if text.strip():
            parts.append(" ".join(text.split()))
        acc.extend(ws)
    return [ChunkTranscript(chunk=c.index, text=" ".join(by_chunk[c.index][0]), words=by_chunk[c.index][1],
                            language=language) for c in chunks]


class WhisperXTranscriber(Transcriber):
    """WhisperX (batched faster-whisper + wav2vec2 alignment) from the local model directory."""

    name = ENGINE
    PAD_S = 0.2
    BEAM_SIZE = 5
    LID_SECONDS = 30.0

    def __init__(self, device: str | None = None, batch_size: int = 16, compute_type: str | None = None):
        self._device = device
        self.batch_size = int(batch_size)
        self._compute_type = compute_type
        self._pipe = None
        self._aligners: dict[str, tuple] = {}
        self._lock = threading.RLock()
        # models only (names + sizes): the same on a CPU daemon without whisperx and on a GPU worker
        self.version = models_version(ENGINE, WHISPERX_PIN, (WHISPER_ID, *present_models(ALIGN_PREFIX))) \
            + f"+beam{self.BEAM_SIZE}"

    # -- models ------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return torch_device(self._device)

    @property
    def compute_type(self) -> str:
        return self._compute_type or ("float16" if self.device == "cuda" else "int8")

    def _pipeline(self):
        with self._lock:
            if self._pipe is None:
                root = require(WHISPER_ID, WHISPER_FILES)
                asr = import_gpu_package("whisperx.asr", ENGINE)
                self._pipe = asr.load_model(
                    str(root), self.device, compute_type=self.compute_type, vad_model=_NoVad(),
                    asr_options={"beam_size": self.BEAM_SIZE}, local_files_only=True,
                    threads=available_cores())
            return self._pipe

    def alignment_model(self, language: str):
        """(model, metadata) of the language's wav2vec2 aligner, loaded once."""
        with self._lock:
            if language not in self._aligners:
                model_id = ALIGN_PREFIX + language
                present = [m[len(ALIGN_PREFIX):] for m in present_models(ALIGN_PREFIX)]
                if not model_path(model_id).is_dir():
                    raise ModelMissing(f"no word alignment model for {language!r}: {model_path(model_id)} does not "
                                       f"exist (present: {', '.join(present) or 'none'}); run "
                                       f"`octavia models fetch {model_id}` on a machine with internet access")
                root = require(model_id)
                _nltk_offline()
                alignment = import_gpu_package("whisperx.alignment", ENGINE)
                self._aligners[language] = alignment.load_align_model(
                    language, self.device, model_name=str(root), model_cache_only=True)
            return self._aligners[language]

    # -- language ----------------------------------------------------------------------------------
    def detect_language(self, wav16k_path: str | os.PathLike) -> tuple[str, float]:
        audio = _load_16k_mono(wav16k_path, max_seconds=300.0)
        if audio.size == 0:
            raise ValueError("no audio to detect the language of")
        with self._lock:
            model = self._pipeline().model        # a faster_whisper.WhisperModel
            try:
                lang, prob, _ = model.detect_language(audio=audio, vad_filter=True)
            except ValueError:      # no speech found by the VAD: judge the first 30 s as they are
                lang, prob, _ = model.detect_language(audio=audio[: int(self.LID_SECONDS * SAMPLE_RATE)])
        return lang, float(prob)

    # -- transcription -----------------------------------------------------------------------------
    def transcribe(self, wav16k_path: str | os.PathLike, chunks: list[Chunk],
                   language: str | None = None) -> list[ChunkTranscript]:
        audio = _load_16k_mono(Path(wav16k_path))
        if language is None:
            language = self.detect_language(wav16k_path)[0]
        windows = plan_windows(chunks, len(audio) / SAMPLE_RATE, self.PAD_S)
        texts = self._decode(audio, windows, language)
        words = self._align(audio, windows, texts, language)
        return merge_windows(chunks, windows, texts, words, language)

    def _decode(self, audio: np.ndarray, windows: list[Window], language: str) -> list[str]:
        """Batched decoding of the windows (WhisperX's pipeline, fed our windows instead of its VAD's)."""
        if not windows:
            return []
        tokenizer_mod = import_gpu_package("faster_whisper.tokenizer", ENGINE)
        texts: list[str] = []
        with self._lock:
            pipe = self._pipeline()
            pipe.tokenizer = tokenizer_mod.Tokenizer(pipe.model.hf_tokenizer, pipe.model.model.is_multilingual,
                                                     task="transcribe", language=language)
            for group in batches(windows, self.batch_size):
                inputs = ({"inputs": audio[int(w.start * SAMPLE_RATE):int(w.end * SAMPLE_RATE)]} for w in group)
                for out in pipe(inputs, batch_size=self.batch_size, num_workers=0):
                    text = out["text"]
                    texts.append(text[0] if isinstance(text, list) else text)
        return texts

    def _align(self, audio: np.ndarray, windows: list[Window], texts: list[str], language: str) -> list[list[Word]]:
        if not any(t.strip() for t in texts):
            return [[] for _ in windows]
        alignment = import_gpu_package("whisperx.alignment", ENGINE)
        model, metadata = self.alignment_model(language)
        out = []
        with self._lock:
            for w, text in zip(windows, texts):
                if not text.strip():
                    out.append([])
                    continue
                # one window per call: its words come back on their own, however the aligner
                # splits the text into sentences
                result = alignment.align([{"text": text, "start": w.start, "end": w.end}], model, metadata,
                                         audio, self.device, return_char_alignments=False)
                out.append(words_from_aligned(result.get("word_segments") or
                                              [x for s in result["segments"] for x in s.get("words", [])], w))
        return out


class _NoVad:
    """Stands in for WhisperX's VAD, which this engine never calls (the chunks are the segmentation);
    passing it keeps load_model from loading pyannote's or torch.hub's VAD."""

    def __call__(self, *args, **kwargs):
        raise RuntimeError("WhisperXTranscriber decodes the project's chunks; WhisperX's VAD is not used")


def _nltk_offline() -> None:
    """Point nltk at the model directory's nltk_data; fail clearly (no nltk.download) without punkt_tab."""
    import nltk

    local = model_dir() / "nltk_data"
    if str(local) not in nltk.data.path:
        nltk.data.path.insert(0, str(local))
    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        raise ModelMissing(f"{local / 'tokenizers' / 'punkt_tab'} is missing (WhisperX's aligner splits "
                           f"sentences with it): python -m nltk.downloader -d {local} punkt_tab") from None
