"""Choosing shipped voices by how they sound: CAM++ speaker embeddings of the voices against the speakers'.

Every shipped voice of an engine is embedded once (CAM++, the embedder of the speaker profiles) on a
few synthesized sentences, at a small grid of pitch shifts; the embeddings are cached on disk keyed
by the engine's and the embedder's versions, so they are computed once per model (:func:`voice_embeddings`).

:func:`match_voices` then gives each speaker a distinct voice, with its pitch moved toward the
speaker's (clamped to +/-3 semitones as in :func:`.tts.choose_voices`, on a 0.25 st grid, and embedded
exactly at that shift), choosing all speakers' voices jointly (:func:`joint_assignment`): the
assignment in which the most speakers are expected to have their own dubbed voice closer to them than
any other speaker's dubbed voice is (the dub's speaker-similarity target; each predicted margin counts
with its chance of holding under the prediction's error, MARGIN_SD), then the widest worst margin,
then the highest CAM++ similarity. Gender comes
first where the speaker's F0 leaves no doubt (far from the split: a deep or a high voice gets a voice
of that gender); near the split, where F0-based guesses fail (shouted or reverberant speech), it only
adds a small bonus. Next, no two speakers get dubbed voices CAM++ cannot tell apart (TOO_ALIKE_COS). Speakers without an embedding, and speakers beyond the
number of voices, fall back to the pitch/gender rules of :func:`.tts.choose_voices`.
"""
from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np

from .cache import model_cache_dir
from .types import VoiceChoice

# Sentences each voice is embedded on (CAM++ wants several seconds of speech; several languages so
# the embedding is of the voice, not of one language's phonemes).
EMBED_TEXT = {
    "en": "The weather was cold this morning, so we stayed inside and talked about the plans for the summer.",
    "es": "Ayer fuimos al mercado y compramos frutas, pan y un poco de queso para la cena de la noche.",
    "pt": "Eu acho que precisamos terminar este trabalho antes do fim do mês, porque depois vamos viajar.",
}
# Pitch shifts (semitones) each voice is embedded at; a shift in between is interpolated.
PITCH_GRID = (-3.0, 0.0, 3.0)
# A speaker whose F0 is this far from the gender split gets a voice of that gender whenever the
# engine has enough (a clear case: a deep or a high voice); nearer the split the F0-based guess is
# weak and only adds GENDER_BONUS to the cosine of a voice of the guessed gender.
CLEAR_GENDER_MARGIN_HZ = 30.0
GENDER_BONUS = 0.03
# Two dubbed voices (voice + pitch shift) at least this alike to CAM++ are heard as one (the same
# Kokoro voice across sentences scores 0.88-0.94): assignments avoid such pairs first of all.
TOO_ALIKE_COS = 0.85
# Exhaustive (vectorized) search while there are at most this many assignments (23 voices: 10626 at
# 3 speakers, 212520 at 4); beyond, over a shortlist of each speaker's best-scoring voices.
MAX_ASSIGNMENTS = 200_000
# How far a predicted margin (own dub against the nearest other dub, from the embedding sentences) is
# from the one measured on the dub's own lines: root mean square 0.039 (mean -0.014, sd 0.037) on the
# dev composite (24 margins: 3 voice assignments, 4 speakers, es and pt). Assignments are ranked by the expected number of speakers whose own dub
# is closest under that error, so a safe margin is not traded for a small gain on one that stays doubtful.
MARGIN_SD = 0.04
# Pitch shifts are chosen on this grid (inaudible steps) so that each voice is embedded exactly at the
# shift it will be heard with, and the embeddings of a shift are reused across speakers and videos.
SHIFT_STEP = 0.25
EMBED_VERSION = "voice-embed-v1"          # how voices are embedded (part of the cache key)
# Embeddings of the offline engine's voices at every shift a speaker can be given, computed once with
# scripts/build_voice_embeddings.py and shipped (gzipped cache files, same names and keys): a first dub
# then synthesizes no voice at all (about 2 min on 2 cores otherwise). Used only when its key matches.
SHIPPED_EMBEDDINGS = Path(__file__).with_name("data") / "voice_embeddings"
CHOOSER_VERSION = "campp-match-v7"        # how voices are chosen (the voices stage's version)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64).ravel()
    n = np.linalg.norm(v)
    return v / n if n else v


def _to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    from scipy.signal import resample_poly
    audio = np.asarray(audio, np.float32).ravel()
    if sr == 16000:
        return audio
    g = math.gcd(sr, 16000)
    return resample_poly(audio, 16000 // g, sr // g).astype(np.float32)


def _cache_path(synth, embedder, voices: list[str]) -> Path:
    spec = json.dumps([EMBED_VERSION, synth.version, getattr(embedder, "version", type(embedder).__name__),
                       sorted(voices), EMBED_TEXT, PITCH_GRID], sort_keys=True)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
    return model_cache_dir("voice-embeddings") / f"{synth.name}-{digest}.json"


def _load_cache(path: Path) -> dict[str, dict[float, np.ndarray]] | None:
    try:
        raw = path.read_bytes()
        doc = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
        return {v: {float(k): np.asarray(e) for k, e in by.items()} for v, by in doc.items()}
    except (ValueError, OSError, EOFError, zlib.error):
        return None                  # missing or damaged: recomputed


def _save_cache(path: Path, out: dict[str, dict[float, np.ndarray]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps({v: {str(k): np.asarray(e).round(6).tolist() for k, e in by.items()} for v, by in out.items()}))
    os.replace(tmp, path)


def _voice_audio(synth, voice: str) -> np.ndarray:
    from .timing import trim_silence
    langs = [lang for lang in EMBED_TEXT if synth.supports_language(lang)] or ["en"]
    gap = np.zeros(int(0.2 * synth.sample_rate), np.float32)
    parts = []
    for lang in langs:
        parts += [trim_silence(synth.synthesize(EMBED_TEXT.get(lang, EMBED_TEXT["en"]), voice, lang, 1.0),
                               synth.sample_rate), gap]
    return np.concatenate(parts)


def _embed_shifted(synth, embedder, audio: np.ndarray, shift: float) -> np.ndarray:
    from .timing import pitch_shift
    shifted = pitch_shift(audio, synth.sample_rate, shift) if shift else audio
    return _unit(embedder.embed(_to_16k(shifted, synth.sample_rate)))


def voice_embeddings(synth, embedder, voices: list[str] | None = None,
                     shifts: dict[str, set[float]] | None = None, log=None) -> dict[str, dict[float, np.ndarray]]:
    """{voice: {pitch shift: unit CAM++ embedding}} of the engine's voices, from the disk cache when
    it holds them (keyed by engine version, embedder version, voices, sentences and pitch grid).

    ``shifts``: {voice: further shifts} to embed exactly (the pitch-moved voice as it will be heard,
    rather than interpolated between grid points: interpolation misjudged a dubbed voice by up to
    0.1 cosine); computed from the voice's cached sentences and added to the cache. ``log``: called
    with progress while the voices are synthesized (once per model: about 5 s a voice on 2 cores)."""
    voices = list(voices if voices is not None else [v.id for v in synth.voices()])
    path = _cache_path(synth, embedder, voices)
    audio_path = path.with_suffix(".npz")
    shipped = SHIPPED_EMBEDDINGS / f"{path.name}.gz"
    out = _load_cache(path) if path.exists() else None
    table = _load_cache(shipped) if shipped.is_file() else None
    if table:                        # the shipped shifts, and any other this machine has computed
        out = {v: {**table.get(v, {}), **(out or {}).get(v, {})} for v in table.keys() | (out or {}).keys()}
    def missing_shifts(cached):
        return {v: {float(x) for x in (shifts or {}).get(v, ())} - set(cached[v]) for v in voices}

    missing = missing_shifts(out) if out else {}
    if out is not None and not any(missing.values()):
        return out
    audio: dict[str, np.ndarray] = {}
    if audio_path.exists():
        try:
            with np.load(audio_path) as z:
                audio = {v: z[f"v{i}"].astype(np.float32) for i, v in enumerate(voices) if f"v{i}" in z.files}
        except (ValueError, OSError):
            audio = {}
    if len(audio) < len(voices):
        started = time.perf_counter()
        for i, v in enumerate(voices):
            if log and i % 5 == 0:
                log(f"voice embeddings (once per model, cached): synthesizing voice {i + 1} of {len(voices)}, "
                    f"{time.perf_counter() - started:.0f} s so far")
            audio[v] = _voice_audio(synth, v)
        tmp = audio_path.with_name(f".{audio_path.name}.{os.getpid()}.part")
        with open(tmp, "wb") as f:       # float16: half the disk, far below CAM++'s sensitivity
            np.savez(f, **{f"v{i}": audio[v].astype(np.float16) for i, v in enumerate(voices)})
        os.replace(tmp, audio_path)
    if out is None:
        if log:
            log(f"voice embeddings: CAM++ over {len(voices)} voices at {len(PITCH_GRID)} pitch shifts each")
        out = {v: {shift: _embed_shifted(synth, embedder, audio[v], shift) for shift in PITCH_GRID} for v in voices}
        missing = missing_shifts(out)
    if log and any(missing.values()):
        log(f"voice embeddings: {sum(map(len, missing.values()))} more at the speakers' exact pitch shifts")
    for v, extra in missing.items():
        for shift in sorted(extra):
            out[v][shift] = _embed_shifted(synth, embedder, audio[v], shift)
    _save_cache(path, out)
    return out


def embedding_at(by_shift: dict[float, np.ndarray], shift: float) -> np.ndarray:
    """The voice's embedding at ``shift`` semitones, interpolated between the grid's."""
    grid = sorted(by_shift)
    shift = min(max(shift, grid[0]), grid[-1])
    for a, b in itertools.pairwise(grid):
        if a <= shift <= b:
            w = (shift - a) / (b - a) if b > a else 0.0
            return _unit((1 - w) * by_shift[a] + w * by_shift[b])
    return _unit(by_shift[grid[0]])


def dubbed_shift(f0_hz: float | None, voice_f0_hz: float | None) -> float:
    """Semitones a voice at ``voice_f0_hz`` is moved toward a speaker at ``f0_hz``: clamped to the
    engine-independent +/-MAX_PITCH_SHIFT_SEMITONES and put on the SHIFT_STEP grid."""
    from .tts import MAX_PITCH_SHIFT_SEMITONES, _semitones
    if not f0_hz or not voice_f0_hz:
        return 0.0
    st = max(-MAX_PITCH_SHIFT_SEMITONES, min(MAX_PITCH_SHIFT_SEMITONES, _semitones(f0_hz, voice_f0_hz)))
    return round(round(st / SHIFT_STEP) * SHIFT_STEP, 2) + 0.0


def joint_assignment(cos: np.ndarray, score: np.ndarray, mismatch: np.ndarray | None = None,
                     alike: np.ndarray | None = None, allowed: np.ndarray | None = None,
                     max_assignments: int = MAX_ASSIGNMENTS) -> tuple[int, ...]:
    """The voice (column index) of each of n speakers among m >= n candidates, distinct, chosen jointly.

    ``cos[c, r, j]``: CAM++ cosine of original speaker c to speaker r's dub with candidate j (the
    voice as moved to r's pitch). Assignments are ranked by: fewest clear gender mismatches
    (``mismatch[r, j]``), fewest pairs of dubbed voices heard as one (``alike[r, j, r2, j2]``), most
    original speakers expected to have their own dub closer to them than any other speaker's dub (the
    issue's target: the sum over speakers of P(margin > 0), each margin normal about its prediction with
    sd MARGIN_SD), the widest worst margin of that comparison, then the highest sum of ``score[r, j]``.
    ``allowed[r, j]`` False rules a candidate out for a speaker. Exhaustive while there are at most
    ``max_assignments`` assignments; beyond, exhaustive over a shortlist (each speaker's best
    candidates by ``score``, as many as keep the search within ``max_assignments``); when even two
    per speaker are too many, the Hungarian method on ``score`` (greedy in effect)."""
    from scipy.special import ndtr
    n, m = score.shape
    mismatch = np.zeros((n, m), bool) if mismatch is None else np.asarray(mismatch, bool)
    allowed = np.ones((n, m), bool) if allowed is None else np.asarray(allowed, bool)
    if math.perm(m, n) > max_assignments:
        cost = -(score - mismatch.astype(float) - 1e6 * ~allowed)       # a speaker's own preference
        rank = np.argsort(cost, axis=1, kind="stable")
        for k in range(m - 1, 1, -1):
            cols = sorted({int(j) for row in rank[:, :k] for j in row})
            if math.perm(len(cols), n) <= max_assignments:
                sub = joint_assignment(cos[:, :, cols], score[:, cols], mismatch[:, cols],
                                       None if alike is None else alike[:, cols][:, :, :, cols],
                                       allowed[:, cols], max_assignments)
                return tuple(cols[j] for j in sub)
        from scipy.optimize import linear_sum_assignment
        rows, cols = linear_sum_assignment(cost)
        return tuple(int(c) for _, c in sorted(zip(rows, cols)))
    rows = np.arange(n)
    off_diag = ~np.eye(n, dtype=bool)
    pairs = list(itertools.combinations(range(n), 2))
    best_key, best = None, None
    perms_iter = itertools.permutations(range(m), n)
    while chunk := list(itertools.islice(perms_iter, 20000)):
        perms = np.asarray(chunk, np.intp).reshape(-1, n)                   # (P, n): candidate of each speaker
        perms = perms[allowed[rows, perms].all(axis=1)]
        if not len(perms):
            continue
        heard = np.moveaxis(cos[:, rows[None, :], perms], 0, -1)            # (P, r, c): speaker c to r's dub
        own = heard[:, rows, rows]                                           # (P, c)
        others = np.where(off_diag[None], heard, -np.inf).max(axis=1)       # (P, c): best other dub for c
        gaps = own - others
        wrong = mismatch[rows, perms].sum(axis=1)
        near = (sum((alike[i, perms[:, i], j, perms[:, j]] for i, j in pairs), np.zeros(len(perms)))
                if alike is not None and pairs else np.zeros(len(perms)))
        keys = (-wrong, -near, np.round(ndtr(gaps / MARGIN_SD).sum(axis=1), 6), np.round(gaps.min(axis=1), 6),
                np.round(score[rows, perms].sum(axis=1), 6))
        i = np.lexsort(keys[::-1])[-1]                                      # the largest key, first key first
        key = tuple(float(k[i]) for k in keys)
        if best_key is None or key > best_key:
            best_key, best = key, tuple(int(x) for x in perms[i])
    if best is None:
        raise ValueError("no assignment satisfies `allowed`")
    return best


def match_voices(profiles: dict[str, dict], synthesizer, embeddings: dict[str, dict[float, np.ndarray]],
                 language: str | None = None, fixed: tuple[str, ...] = (),
                 assigned: dict[str, VoiceChoice] | None = None) -> dict[str, VoiceChoice]:
    """Voices for ``profiles`` chosen by CAM++ similarity (see the module docstring). Each speaker in
    ``fixed`` (a user's own sample) first gets the voice closest to them alone, whatever the others need.
    Each speaker in ``assigned`` keeps that voice and pitch shift (the speaker registry's: the person's
    voice in earlier videos); the others are chosen around them, among the voices left, with the
    assigned dubs among those each speaker's own dub must be closer than."""
    from .tts import GENDER_F0_SPLIT_HZ, _base_language, choose_voices, gender_from_f0

    base = _base_language(language or "en")
    voices = [v for v in synthesizer.voices() if v.id in embeddings
              and (language is None or not v.languages or base in v.languages)]
    fallback = choose_voices(profiles, synthesizer, language)      # pitch/gender rules, for the rest
    order = sorted(profiles, key=lambda s: (-float(profiles[s].get("speech_s") or 0.0), s))
    listed = {v.id for v in voices}
    # an assigned voice this engine no longer lists is chosen again like anyone's
    assigned = {s: c for s, c in (assigned or {}).items() if s in profiles and c.voice in listed and s not in fixed}
    with_embedding = [s for s in order if profiles[s].get("embedding")]
    first = [s for s in with_embedding if s in assigned] + [s for s in with_embedding if s not in assigned]
    speakers = sorted(first[:len(voices)], key=order.index)
    if not speakers or not voices:
        return {**fallback, **assigned}
    emb = {s: _unit(profiles[s]["embedding"]) for s in speakers}

    def f0_of(prof):
        f0 = prof.get("f0_hz")
        return float(f0) if f0 and math.isfinite(float(f0)) and float(f0) > 0 else None

    shift: dict[tuple[str, str], float] = {}
    dubbed: dict[tuple[str, str], np.ndarray] = {}     # (speaker, voice) -> embedding as dubbed
    cos: dict[tuple[str, str, str], float] = {}      # (listener speaker, speaker, voice) -> cosine
    score: dict[tuple[str, str], float] = {}
    mismatch: set[tuple[str, str]] = set()           # (speaker, voice) of the other gender, clear case
    for s in speakers:
        f0 = f0_of(profiles[s])
        gender = (profiles[s].get("gender") or (gender_from_f0(f0) if f0 else "")).lower()
        for v in voices:
            shift[s, v.id] = st = (assigned[s].pitch_shift_semitones if s in assigned and assigned[s].voice == v.id
                                   else dubbed_shift(f0, v.f0_hz))
            e = embedding_at(embeddings[v.id], st)
            dubbed[s, v.id] = e
            for listener in speakers:
                cos[listener, s, v.id] = float(emb[listener] @ e)
            if f0 is not None and abs(f0 - GENDER_F0_SPLIT_HZ) >= CLEAR_GENDER_MARGIN_HZ and v.gender != gender:
                mismatch.add((s, v.id))
            score[s, v.id] = cos[s, s, v.id] + (GENDER_BONUS if gender and v.gender == gender else 0.0)

    pinned: dict[str, str] = {s: assigned[s].voice for s in speakers if s in assigned}
    for s in [x for x in speakers if x in fixed]:
        pinned[s] = max((v.id for v in voices if v.id not in pinned.values()),
                        key=lambda v: ((s, v) not in mismatch, cos[s, s, v]))
    # All speakers are chosen jointly (a greedy choice can take the voice that sounds most like
    # another speaker); a pinned speaker may only have their voice, and nobody else may.
    ids = [v.id for v in voices]
    cos_a = np.array([[[cos[c, r, j] for j in ids] for r in speakers] for c in speakers])
    score_a = np.array([[score[r, j] for j in ids] for r in speakers])
    mismatch_a = np.array([[(r, j) in mismatch for j in ids] for r in speakers])
    reserved = set(pinned.values()) | {c.voice for c in assigned.values()}
    allowed = np.array([[(pinned[r] == j) if r in pinned else j not in reserved for j in ids] for r in speakers])
    flat = np.array([[dubbed[r, j] for j in ids] for r in speakers])                # (n, m, dim)
    alike = np.einsum("rjd,skd->rjsk", flat, flat) >= TOO_ALIKE_COS
    picks = joint_assignment(cos_a, score_a, mismatch_a, alike, allowed)
    best = {s: ids[j] for s, j in zip(speakers, picks)}
    out = {**fallback, **assigned}
    by_id = {v.id: v for v in voices}
    for s in speakers:
        if s in assigned:
            continue                                   # kept as given
        v = by_id[best[s]]
        others = max((cos[s, x, best[x]] for x in speakers if x != s), default=None)
        f0 = f0_of(profiles[s])
        closer = ("closer to them than any other speaker's voice" if others is None or cos[s, s, v.id] > others
                  else f"not the closest to them (another speaker's voice: {others:.2f})")
        how = "closest shipped voice to the user's own sample" if s in pinned else "CAM++ match"
        out[s] = VoiceChoice(
            speaker=s, engine=synthesizer.name, voice=v.id, pitch_shift_semitones=shift[s, v.id],
            reason=(f"{s} ({f'{f0:.0f} Hz, ' if f0 else ''}{float(profiles[s].get('speech_s') or 0):.1f} s of speech): "
                    f"{how} {v.id} ({v.gender}{f', {v.f0_hz:.0f} Hz' if v.f0_hz else ''}), cos {cos[s, s, v.id]:.2f}, "
                    f"{closer}; pitch {shift[s, v.id]:+.1f} st toward the speaker"))
    # Speakers beyond the number of voices share one (fallback rules): keep them 2 st apart from
    # the matched speaker on that voice.
    from .tts import _apart
    for s in order:
        if s in best or s in assigned:
            continue
        taken = [c.pitch_shift_semitones for x, c in out.items() if x != s and x in best and c.voice == out[s].voice]
        if taken:
            moved = round(_apart(out[s].pitch_shift_semitones, taken), 2)
            out[s] = VoiceChoice(speaker=s, engine=out[s].engine, voice=out[s].voice, pitch_shift_semitones=moved,
                                 reason=out[s].reason + "; kept 2 st apart from the CAM++-matched speaker on this voice")
    return out


def choose_shipped_voices(profiles: dict[str, dict], synthesizer, embedder, samples: dict[str, np.ndarray] | None = None,
                          language: str | None = None, log=None,
                          assigned: dict[str, VoiceChoice] | None = None) -> dict[str, VoiceChoice]:
    """The voices stage's choice for a shipped-voice engine: :func:`match_voices` on the cached voice
    embeddings (see :func:`shipped_voice_chooser`), with the ``assigned`` speakers' voices kept."""
    return shipped_voice_chooser(profiles, synthesizer, embedder, samples, language, log)(assigned)


def shipped_voice_chooser(profiles: dict[str, dict], synthesizer, embedder, samples: dict[str, np.ndarray] | None = None,
                          language: str | None = None, log=None):
    """``choose(assigned)``: :func:`match_voices` for ``profiles``, with the voice embeddings it needs made
    now (the slow part, once per model), so that ``choose`` takes only the joint search (run under the
    speaker registry's lease). ``samples``: {speaker: 16 kHz audio of the user's own voice sample}; such a
    speaker is matched on the sample (embedding and pitch) instead of the diarized speech, before the others."""
    from .tts import estimate_f0, gender_from_f0
    profiles = {s: dict(p) for s, p in profiles.items()}
    for s, audio in (samples or {}).items():
        if s not in profiles:
            continue
        f0 = estimate_f0(audio, 16000)
        profiles[s].update(embedding=_unit(embedder.embed(audio)).tolist(), f0_hz=f0,
                           gender=gender_from_f0(f0) if f0 else profiles[s].get("gender"))
    # each voice embedded exactly at the shifts it may be heard with (cached once per shift)
    shifts: dict[str, set[float]] = {}
    for v in synthesizer.voices():
        for p in profiles.values():
            f0 = p.get("f0_hz")
            if p.get("embedding") and f0 and math.isfinite(float(f0)) and float(f0) > 0:
                shifts.setdefault(v.id, set()).add(dubbed_shift(float(f0), v.f0_hz))
    embeddings = voice_embeddings(synthesizer, embedder, shifts=shifts, log=log)
    fixed = tuple(samples or ())
    return lambda assigned=None: match_voices(profiles, synthesizer, embeddings, language, fixed=fixed, assigned=assigned)
