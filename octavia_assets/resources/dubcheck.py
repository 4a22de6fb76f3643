"""Measuring a dub: round-trip WER (each dubbed line transcribed back) and speaker similarity.

Both work on the ``lines`` of ``dubbed_chunks.json`` and plain engines (an ASR ``Transcriber``, the
CAM++ ``SpeakerEmbedder``), so they run in an asset, a benchmark or a test alike.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import numpy as np
from scipy.signal import resample_poly

from .types import Chunk

ASR_RATE = 16000


def to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    audio = np.asarray(audio, np.float32).ravel()
    if sr == ASR_RATE:
        return audio
    g = np.gcd(sr, ASR_RATE)
    return resample_poly(audio, ASR_RATE // g, sr // g).astype(np.float32)


def normalise_words(text: str) -> str:
    """Lower case, no punctuation, accents kept (they matter in es/pt), digits kept."""
    text = unicodedata.normalize("NFC", text or "").lower()
    return " ".join(re.sub(r"[^\w\s']|_", " ", text).split())


def roundtrip_wer(lines: list[dict], load: Callable[[str], tuple[np.ndarray, int]], transcriber,
                  language: str) -> dict:
    """Transcribe each dubbed line (``load(audio_key)`` -> samples, rate) and compare it with the text
    it was asked to speak (``spoken_text``, else ``text``). Returns the corpus WER and per-line rows."""
    import jiwer
    refs, hyps, rows = [], [], []
    for ln in lines:
        audio, sr = load(ln["audio_key"])
        wav = to_16k(audio, sr)
        heard = transcriber.transcribe_chunk(wav, Chunk(index=ln["index"], start=0.0, end=wav.size / ASR_RATE),
                                             language).text
        ref, hyp = normalise_words(ln.get("spoken_text") or ln["text"]), normalise_words(heard)
        if not ref:
            continue
        refs.append(ref)
        hyps.append(hyp)
        rows.append({"index": ln["index"], "target": ref, "heard": hyp,
                     "wer": round(jiwer.wer(ref, hyp) if hyp else 1.0, 3)})
    wer = jiwer.wer(refs, hyps) if refs else 0.0
    return {"wer": round(float(wer), 4), "lines": rows}


def speaker_similarity(lines: list[dict], load: Callable[[str], tuple[np.ndarray, int]], embedder,
                       profiles: dict[str, dict]) -> dict:
    """Cosine of each dubbed speaker's voice (CAM++ over all its lines) to every original speaker
    (``profiles[s]["embedding"]``), and to the other dubbed voices.

    ``own_is_closest``: per dubbed speaker, whether its own original speaker is nearer than any other
    original speaker; ``own_dub_is_closest``: per original speaker, whether their own dubbed voice is
    nearer to them than any other speaker's dubbed voice; ``distinct``: whether every pair of dubbed voices is less alike than each voice
    is to itself across lines (the CAM++ same-voice floor is about 0.88 on Kokoro)."""
    by_speaker: dict[str, list[np.ndarray]] = {}
    for ln in lines:
        audio, sr = load(ln["audio_key"])
        by_speaker.setdefault(ln["speaker"], []).append(to_16k(audio, sr))
    dubbed = {s: embedder.embed(np.concatenate(parts)) for s, parts in by_speaker.items()}
    originals = {s: np.asarray(p["embedding"], np.float32) for s, p in profiles.items() if p.get("embedding")}
    cos = embedder.cosine
    matrix = {d: {o: round(cos(e, oe), 3) for o, oe in originals.items()} for d, e in dubbed.items()}
    between = {a: {b: round(cos(ea, eb), 3) for b, eb in dubbed.items() if b != a} for a, ea in dubbed.items()}
    own = {d: (d in row and all(row[d] >= v for o, v in row.items() if o != d)) for d, row in matrix.items()}
    # The target, per original speaker: their own dubbed voice is closer to them than any
    # other speaker's dubbed voice is.
    own_dub = {o: (o in matrix and all(matrix[o][o] > matrix[d][o] for d in matrix if d != o))
               for o in originals if o in matrix}
    return {"dubbed_vs_original": matrix, "dubbed_vs_dubbed": between, "own_is_closest": own,
            "own_dub_is_closest": own_dub,
            "max_cross_dubbed": max((v for row in between.values() for v in row.values()), default=0.0)}
