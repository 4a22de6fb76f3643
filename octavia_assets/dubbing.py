"""dubbed_chunks: every translated line spoken by its speaker's voice, fitted to its time slot."""

import hashlib
import json
import time

import dagster as dg
import numpy as np

from .common import DOWNSTREAM, derived_key, materialized, video_and_lang, workdir
from .partitions import VIDEO_DIMENSION, video_lang
from .resources.engines import TtsEngine, engine_version
from .resources.media import read_audio, write_audio
from .resources.storage import MediaStore
from .resources.timing import fit_line
from .resources.tts import choose_voices
from .resources.types import VoiceChoice
from .translation import translation
from .voices import voices


def line_slots(lines: list[dict], duration_s: float) -> list[float]:
    """Seconds each line may use: up to the next line's start (borrowing the silence between), never past the end."""
    slots = []
    for i, ln in enumerate(lines):
        limit = lines[i + 1]["start"] if i + 1 < len(lines) else duration_s
        slots.append(max(0.1, min(limit, duration_s) - ln["start"]))
    return slots


def line_cache_key(text: str, voice: VoiceChoice, lang: str, engine: str, slot_s: float, max_speedup: float) -> str:
    """Content hash of everything that shapes a line's audio: editing one line re-synthesizes only it."""
    spec = json.dumps([text, voice.to_dict(), lang, engine, round(slot_s, 2), max_speedup], sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:20]


def speedup_stats(values: list[float]) -> dict:
    if not values:
        return {"speedup_median": 1.0, "speedup_p95": 1.0, "speedup_max": 1.0}
    v = np.asarray(values)
    return {"speedup_median": round(float(np.median(v)), 3), "speedup_p95": round(float(np.percentile(v, 95)), 3),
            "speedup_max": round(float(v.max()), 3)}


@dg.asset(partitions_def=video_lang, group_name="speak", kinds={"onnx"},
          deps=[translation, dg.AssetDep(voices, partition_mapping=VIDEO_DIMENSION)],
          code_version=engine_version("tts") + "+fit-v1", automation_condition=DOWNSTREAM, pool="gpu")
def dubbed_chunks(context: dg.AssetExecutionContext, media_store: MediaStore, tts: TtsEngine) -> dg.MaterializeResult:
    """One WAV per line (cached by content hash) and the placement/timing of each."""
    started = time.perf_counter()
    video, lang = video_and_lang(context)
    doc = media_store.read_json(derived_key(video, lang, "translation.json"))
    duration = media_store.read_json(derived_key(video, "chunks", "chunks.json"))["duration_s"]
    voice_doc = media_store.read_json(derived_key(video, "voices", "voices.json"))
    synth = tts.get(lang)
    chosen = {s: VoiceChoice.from_dict(v) for s, v in voice_doc["voices"].items()}
    if any(v.engine != synth.name for v in chosen.values()):
        # The configured engine does not speak this language: the fallback picks its own voices.
        profiles = media_store.read_json(derived_key(video, "speaker_map", "speaker_map.json"))["speakers"]
        chosen = choose_voices(profiles, synth, lang)
    lines = doc["lines"]
    placed, reused = [], 0
    for ln, slot in zip(lines, line_slots(lines, duration)):
        voice = chosen.get(ln["speaker"]) or next(iter(chosen.values()))
        key = derived_key(video, lang, "dub", f"{line_cache_key(ln['text'], voice, lang, synth.version, slot, tts.max_speedup)}.wav")
        if media_store.exists(key):
            reused += 1
            info = media_store.read_json(key[:-4] + ".json")
        else:
            fitted = fit_line(synth, ln["text"], voice.voice, lang, slot, max_speedup=tts.max_speedup,
                              pitch_semitones=voice.pitch_shift_semitones)
            info = {"duration_s": round(fitted.duration_s, 3), "native_speed": round(fitted.native_speed, 3),
                    "stretch": round(fitted.stretch, 3), "speedup": round(fitted.total_speedup, 3),
                    "fits": bool(fitted.fits), "sample_rate": fitted.sample_rate}
            with workdir("dub") as tmp:
                write_audio(tmp / "line.wav", fitted.audio, fitted.sample_rate)
                media_store.put_json(info, key[:-4] + ".json")
                media_store.put_file(tmp / "line.wav", key)
        placed.append({**{k: ln[k] for k in ("index", "start", "speaker", "text")}, "slot_s": round(slot, 3),
                       "end": round(ln["start"] + info["duration_s"], 3), "voice": voice.voice, "audio_key": key, **info})
        context.log.info(f"line {ln['index']}: {info['duration_s']:.2f}s in {slot:.2f}s slot, x{info['speedup']:.2f}")
    overlaps = sum(1 for a, b in zip(placed, placed[1:]) if a["end"] > b["start"] + 1e-3)
    out = derived_key(video, lang, "dubbed_chunks.json")
    media_store.put_json({"language": lang, "engine": synth.version, "duration_s": duration, "lines": placed}, out)
    return materialized(media_store, [out] + [p["audio_key"] for p in placed], started, model=synth.version,
                        line_count=len(placed), lines_reused=reused, lines_not_fitting=sum(not p["fits"] for p in placed),
                        overlaps=overlaps, **speedup_stats([p["speedup"] for p in placed]))


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
