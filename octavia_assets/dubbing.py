"""dubbed_chunks: every translated line spoken by its speaker's voice, fitted to its time slot."""

import hashlib
import json
import time

import dagster as dg
import numpy as np

from .common import DOWNSTREAM, derived_key, materialized, video_and_lang, workdir
from .partitions import VIDEO_DIMENSION, video_lang
from .resources.cpus import available_cores
from .resources.engines import AsrEngine, DiarizationEngine, TtsEngine, engine_version
from .resources.media import read_audio, write_audio
from .resources.storage import MediaStore
from .resources.condense import Condenser, default_condenser
from .resources.prod_tts_xtts import opened_references
from .resources.timing import FIT_TOLERANCE_S, MIN_GAP_S, fit_dub_line
from .resources.tts import Synthesizer, choose_voices
from .resources.types import VoiceChoice
from .translation import translation
from .speakers import restore_reference_clips, voice_profiles
from .voices import voices


# Longest silence a line may borrow before its start (dub starting this much before the speaker).
MAX_LEAD_S = 0.8
# Longest time a line may run past its slot by delaying the next line, and only by what that line
# can spare in its own slot (its estimated duration with a margin): the next line still fits.
MAX_TAIL_S = 1.2
TAIL_ESTIMATE_MARGIN = 1.15
# Version of the fitting procedure (and of the engines' duration predictions it relies on, such as
# Kokoro's in tts.py): part of every line's cache key.
FIT_VERSION = "fit-v7"


def line_slots(lines: list[dict], duration_s: float) -> list[float]:
    """Seconds each line may use: up to the next line's start (borrowing the silence between, less the
    fit tolerance so a fitting line never touches the next one), never past the end."""
    slots = []
    for i, ln in enumerate(lines):
        limit = lines[i + 1]["start"] - FIT_TOLERANCE_S if i + 1 < len(lines) else duration_s
        slots.append(max(0.1, min(limit, duration_s) - ln["start"]))
    return slots


def line_cache_key(text: str, voice: VoiceChoice, lang: str, engine: str, slot_s: float, max_speedup: float,
                   condenser: str = "", fit: str = FIT_VERSION) -> str:
    """Content hash of everything that shapes a line's audio: editing one line re-synthesizes only it.
    (The silence it may borrow before it is checked against the cached line instead: see reusable.)"""
    spec = json.dumps([text, voice.to_dict(), lang, engine, round(slot_s, 2), max_speedup, condenser, fit],
                      sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:20]


def reusable(info: dict, lead_available_s: float, tail_available_s: float = 0.0) -> bool:
    """A cached line is valid when the silence now available before and after it gives the same borrows."""
    if "lead_needed_s" not in info or "tail_needed_s" not in info:
        return False
    return (abs(round(min(lead_available_s, info["lead_needed_s"]), 3) - info["lead_s"]) < 1e-3
            and abs(round(min(tail_available_s, info["tail_needed_s"]), 3) - info["tail_s"]) < 1e-3)


def tail_available(lines: list[dict], slots: list[float], i: int, voices: dict[str, VoiceChoice], lang: str) -> float:
    """Time line ``i`` may take after its slot: what the next line can spare of its own slot, judged
    from its text's estimated duration (with a margin) so that it still fits, at most MAX_TAIL_S."""
    from .resources.textnorm import normalize_for_speech
    from .resources.timing import estimate_spoken_s
    if i + 1 >= len(lines):
        return 0.0
    nxt = lines[i + 1]
    voice = voices.get(nxt["speaker"]) or next(iter(voices.values()))
    need = estimate_spoken_s(normalize_for_speech(nxt["text"], lang), lang, voice.voice) * TAIL_ESTIMATE_MARGIN
    return round(max(0.0, min(MAX_TAIL_S, slots[i + 1] - need - MIN_GAP_S)), 3)


def speedup_stats(values: list[float]) -> dict:
    if not values:
        return {"speedup_median": 1.0, "speedup_p95": 1.0, "speedup_max": 1.0}
    v = np.asarray(values)
    return {"speedup_median": round(float(np.median(v)), 3), "speedup_p95": round(float(np.percentile(v, 95)), 3),
            "speedup_max": round(float(v.max()), 3)}


def _line_info(fitted) -> dict:
    return {"duration_s": round(fitted.duration_s, 3), "native_speed": round(fitted.native_speed, 3),
            "stretch": round(fitted.stretch, 3), "speedup": round(fitted.total_speedup, 3),
            "fits": bool(fitted.fits), "sample_rate": fitted.sample_rate,
            "natural_duration_s": round(fitted.natural_duration_s, 3), "spoken_text": fitted.text,
            "condensed": fitted.condensed, "lead_s": fitted.lead_s, "lead_needed_s": fitted.lead_needed_s,
            "tail_s": fitted.tail_s, "tail_needed_s": fitted.tail_needed_s, "fit_steps": fitted.steps,
            "natural_predicted": fitted.natural_predicted}


def _store_line(media_store: MediaStore, key: str, fitted) -> dict:
    info = _line_info(fitted)
    with workdir("dub") as tmp:
        write_audio(tmp / "line.wav", fitted.audio, fitted.sample_rate)
        media_store.put_file(tmp / "line.wav", key)
        media_store.put_json(info, key[:-4] + ".json")   # last: its presence marks the line done
    return info


def fit_ahead(media_store: MediaStore, synth: Synthesizer, voices: dict[str, VoiceChoice], lines: list[dict],
              slots: list[float], lang: str, key_prefix: str, condenser: Condenser, max_speedup: float,
              workers: int) -> set[str]:
    """Fit the lines not cached yet on ``workers`` threads, into the line cache; returns their keys.

    A line's fit depends on the line before it only through the silence it may borrow and a delay
    when that line overflowed. Ahead of time both are guessed from the source timing (no delay; the
    silence before the line after the source end of the previous one); :func:`dub_lines` then walks
    the lines in order and, exactly as for any cached line, re-fits the few whose guess was wrong,
    so the result is the same as fitting them one by one."""
    from concurrent.futures import ThreadPoolExecutor, as_completed
    jobs, keys = [], set()
    for i, (ln, slot) in enumerate(zip(lines, slots)):
        if not any(ch.isalnum() for ch in ln["text"]):
            continue
        voice = voices.get(ln["speaker"]) or next(iter(voices.values()))
        key = f"{key_prefix}/{line_cache_key(ln['text'], voice, lang, synth.version, slot, max_speedup, condenser.version)}.wav"
        if key in keys or media_store.exists(key[:-4] + ".json"):
            continue
        keys.add(key)
        prev_end = lines[i - 1].get("end", lines[i - 1]["start"]) if i else 0.0
        lead_guess = round(max(0.0, min(MAX_LEAD_S, ln["start"] - (prev_end + MIN_GAP_S))), 3)
        jobs.append((key, ln["text"], voice, slot, lead_guess, tail_available(lines, slots, i, voices, lang)))
    if not jobs:
        return set()
    for voice in {j[2].voice for j in jobs}:   # load the model and styles once, before the threads
        if hasattr(synth, "style"):
            synth.style(voice)

    def fit(job):
        key, text, voice, slot, lead, tail = job
        return key, fit_dub_line(synth, text, voice.voice, lang, slot, lead_s=lead, tail_s=tail, condenser=condenser,
                                 max_speedup=max_speedup, pitch_semitones=voice.pitch_shift_semitones)

    done = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dub-line") as pool:
        # Stored from this thread as each finishes: the store client is used from one thread only,
        # and no more than the running lines' audio is held in memory.
        for future in as_completed([pool.submit(fit, job) for job in jobs]):
            key, fitted = future.result()
            _store_line(media_store, key, fitted)
            done.add(key)
    return done


def dub_lines(media_store: MediaStore, synth: Synthesizer, voices: dict[str, VoiceChoice], lines: list[dict],
              duration: float, lang: str, key_prefix: str, condenser: Condenser, max_speedup: float,
              log=None, workers: int = 1, ahead_synth: Synthesizer | None = None) -> tuple[list[dict], int]:
    """Fit and place every line (plain function: the asset and the benchmarks call it).

    ``workers`` > 1 synthesizes the lines on that many threads first (:func:`fit_ahead`); the
    placement below stays sequential. Returns the placed lines and how many came from the cache
    (of an earlier run: lines fitted ahead in this call do not count)."""
    placed, reused, prev_end = [], 0, 0.0
    slots = line_slots(lines, duration)
    # The lines ahead on ``ahead_synth`` (a session per worker's share of the cores); the in-order
    # pass re-fits mis-guessed lines one at a time, on ``synth`` with all the cores.
    ahead = (fit_ahead(media_store, ahead_synth or synth, voices, lines, slots, lang, key_prefix, condenser,
                       max_speedup, workers) if workers > 1 else set())
    for i, (ln, slot) in enumerate(zip(lines, slots)):
        voice = voices.get(ln["speaker"]) or next(iter(voices.values()))
        lead_available = round(max(0.0, min(MAX_LEAD_S, ln["start"] - (prev_end + MIN_GAP_S))), 3)
        tail = tail_available(lines, slots, i, voices, lang)
        # The previous line could not fit even at the speed-up cap: this one waits for it (borrowing
        # the silence after itself) instead of overlapping it.
        delay = round(max(0.0, prev_end + MIN_GAP_S - ln["start"]), 3)
        if delay:
            ln = {**ln, "start": round(ln["start"] + delay, 3)}
            slot = max(0.1, slot - delay)
        key = f"{key_prefix}/{line_cache_key(ln['text'], voice, lang, synth.version, slot, max_speedup, condenser.version)}.wav"
        info = media_store.read_json(key[:-4] + ".json") if media_store.exists(key) else None
        if info is not None and media_store.exists(key) and reusable(info, lead_available, tail):
            reused += key not in ahead
        elif not any(ch.isalnum() for ch in ln["text"]):
            if log:
                log(f"line {ln['index']}: nothing to say in {ln['text']!r}, left silent")
            continue
        else:
            fitted = fit_dub_line(synth, ln["text"], voice.voice, lang, slot, lead_s=lead_available,
                                  tail_s=tail, condenser=condenser, max_speedup=max_speedup,
                                  pitch_semitones=voice.pitch_shift_semitones)
            info = _store_line(media_store, key, fitted)
        start = round(ln["start"] - info["lead_s"], 3)
        placed.append({**{k: ln[k] for k in ("index", "speaker", "text")}, "start": start,
                       "source_start": round(ln["start"] - delay, 3), "delay_s": delay, "source_end": ln.get("end"), "slot_s": round(slot, 3),
                       "end": round(start + info["duration_s"], 3), "voice": voice.voice, "audio_key": key, **info})
        prev_end = start + info["duration_s"]
        if log:
            log(f"line {ln['index']}: {info['duration_s']:.2f}s in {slot:.2f}s slot, x{info['speedup']:.2f} "
                f"({', '.join(info['fit_steps']) or 'as is'})")
    return placed, reused


@dg.asset(partitions_def=video_lang, group_name="speak", kinds={"onnx"},
          deps=[translation, dg.AssetDep(voices, partition_mapping=VIDEO_DIMENSION)],
          code_version=engine_version("tts") + "+" + FIT_VERSION, automation_condition=DOWNSTREAM, pool="gpu")
def dubbed_chunks(context: dg.AssetExecutionContext, media_store: MediaStore, tts: TtsEngine,
                  diarization: DiarizationEngine) -> dg.MaterializeResult:
    """One WAV per line (cached by content hash) fitted to its slot, and the placement/timing of each."""
    started = time.perf_counter()
    video, lang = video_and_lang(context)
    doc = media_store.read_json(derived_key(video, lang, "translation.json"))
    duration = media_store.read_json(derived_key(video, "chunks", "chunks.json"))["duration_s"]
    voice_doc = media_store.read_json(derived_key(video, "voices", "voices.json"))
    synth = tts.get(lang)
    chosen = {s: VoiceChoice.from_dict(v) for s, v in voice_doc["voices"].items()}
    if any(v.engine != synth.name for v in chosen.values()):
        # The configured engine does not speak this language: the fallback picks its own voices.
        profiles = voice_profiles(media_store, video, diarization)
        chosen = choose_voices(profiles, synth, lang)
    condenser = default_condenser()
    if getattr(synth, "clones_speakers", False) and voice_doc.get("references"):
        # cloning: conditioning from the sealed reference clips, unsealed only into a temp folder
        # deleted after an earlier final mix: re-derived from the stems for this re-dub
        refs = restore_reference_clips(media_store, video, voice_doc["references"], diarization)
        with opened_references(media_store, video, refs) as paths:
            synth.prepare_voices(video, paths, voice_profiles(media_store, video, diarization))
    workers = tts.line_workers() if synth.thread_safe else 1
    # one line per worker at once, each on its share of the cores
    ahead_synth = synth.with_threads(max(1, available_cores() // workers)) if workers > 1 else None
    try:
        placed, reused = dub_lines(media_store, synth, chosen, doc["lines"], duration, lang,
                                   derived_key(video, lang, "dub"), condenser, tts.max_speedup, log=context.log.info,
                                   workers=workers, ahead_synth=ahead_synth)
    finally:
        if hasattr(synth, "release_voices"):
            synth.release_voices(video)
    overlaps = sum(1 for a, b in zip(placed, placed[1:]) if a["end"] > b["start"] + 1e-3)
    out = derived_key(video, lang, "dubbed_chunks.json")
    media_store.put_json({"language": lang, "engine": synth.version, "condenser": condenser.version,
                          "duration_s": duration, "lines": placed}, out)
    speedups = [p["speedup"] for p in placed]
    return materialized(media_store, [out] + [p["audio_key"] for p in placed], started, model=synth.version,
                        condenser=condenser.version, line_count=len(placed), lines_reused=reused, tts_workers=workers,
                        lines_synthesized=len(placed) - reused,
                        lines_not_fitting=sum(not p["fits"] for p in placed),
                        lines_condensed=sum(bool(p["condensed"]) for p in placed),
                        lines_borrowing_silence=sum(p["lead_s"] > 0 or p.get("tail_s", 0) > 0 for p in placed),
                        lines_delayed=sum(p["delay_s"] > 0 for p in placed),
                        lines_time_stretched=sum(p["stretch"] > 1.0 for p in placed),
                        lines_dropped=sum(1 for ln in doc["lines"] if any(ch.isalnum() for ch in ln["text"]))
                        - len(placed),
                        # speech shortened beyond the speed-up cap would mean a cut: none may be
                        lines_truncated=sum(p["duration_s"] < p["natural_duration_s"] / tts.max_speedup - 0.05
                                            for p in placed),
                        overlaps=overlaps,
                        speedup_distribution=dg.MetadataValue.json(sorted(speedups)), **speedup_stats(speedups))


def load_dub_track(media_store: MediaStore, video: str, lang: str) -> tuple[np.ndarray, int, dict]:
    """The placed dub lines as one mono timeline (for mixing and measurement)."""
    from .resources.mixing import place_clips
    doc = media_store.read_json(derived_key(video, lang, "dubbed_chunks.json"))
    clips, rate = [], 24000
    for p in doc["lines"]:
        with media_store.open_local(p["audio_key"]) as path:
            samples, rate = read_audio(path, mono=True)
        clips.append((p["start"], samples))
    return place_clips(clips, doc["duration_s"], rate), rate, doc


@dg.asset(partitions_def=video_lang, group_name="speak", kinds={"onnx"}, deps=[dubbed_chunks],
          code_version=engine_version("asr") + "+campplus+" + FIT_VERSION, pool="gpu")
def dub_quality(context: dg.AssetExecutionContext, media_store: MediaStore, asr: AsrEngine,
                diarization: DiarizationEngine) -> dg.MaterializeResult:
    """Round-trip WER (every dubbed line transcribed back with the project's ASR and compared with the
    text it was asked to speak) and CAM++ similarity of each dubbed voice to the original speakers.

    On demand (no automation condition): it transcribes every line again, which the default pipeline
    does not need to pay for."""
    from .resources.dubcheck import roundtrip_wer, speaker_similarity
    started = time.perf_counter()
    video, lang = video_and_lang(context)
    doc = media_store.read_json(derived_key(video, lang, "dubbed_chunks.json"))
    profiles = voice_profiles(media_store, video, diarization)

    def load(key):
        with media_store.open_local(key) as path:
            return read_audio(path, mono=True)

    wer = roundtrip_wer(doc["lines"], load, asr.get(), lang)
    sim = speaker_similarity(doc["lines"], load, diarization.get_embedder(), profiles)
    out = derived_key(video, lang, "dub_quality.json")
    media_store.put_json({"language": lang, "roundtrip": wer, "similarity": sim}, out)
    originals = sorted({o for row in sim["dubbed_vs_original"].values() for o in row})
    table = "| dubbed \\ original | " + " | ".join(originals) + " |\n|---|" + "---|" * len(originals) + "\n" + "\n".join(
        f"| {d} | " + " | ".join(f"{row.get(o, '')}" for o in originals) + " |"
        for d, row in sim["dubbed_vs_original"].items())
    return materialized(media_store, [out], started, roundtrip_wer=wer["wer"],
                        speakers_closest_to_own=sum(sim["own_is_closest"].values()),
                        # the target: each speaker's own dubbed voice is the dubbed voice closest to them
                        speakers_own_dub_closest=sum(sim["own_dub_is_closest"].values()),
                        speakers=len(sim["own_is_closest"]), max_cosine_between_dubbed_voices=sim["max_cross_dubbed"],
                        similarity=dg.MetadataValue.md(table))
