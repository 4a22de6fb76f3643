"""speaker_map: who speaks when, and a profile per speaker (voice embedding, pitch, gender).

It runs on the vocals stem before chunking: diarization finds its own speech (its own VAD) and
needs no chunks, while chunking needs the speaker turns to cut at every change of speaker."""

import os
import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, materialized, video_of
from .partitions import videos
from .resources.diarization import speaker_profiles
from .resources.engines import DiarizationEngine, engine_version
from .resources.storage import MediaStore
from .resources.types import SpeakerTurn
from .resources.voice_vault import put_sealed_json, read_sealed_json
from .stems import stems


def voice_profiles_key(video: str) -> str:
    return derived_key(video, "speaker_map", "voice_profiles.sealed")


def voice_data_deletion_enabled() -> bool:
    """Voice profiles are deleted once every target language of a video is mixed
    (OCTAVIA_DELETE_VOICE_DATA=0 keeps them, e.g. to re-dub often without re-deriving them)."""
    return os.environ.get("OCTAVIA_DELETE_VOICE_DATA", "1").strip().lower() not in ("0", "false", "no", "off")


def voice_profiles(store: MediaStore, video: str, diarization: DiarizationEngine | None = None) -> dict[str, dict]:
    """Per-speaker profiles (embedding, pitch, gender, reference intervals), unsealed.

    After the final mix they are deleted (:func:`delete_voice_data`); a later re-dub passes its
    ``diarization`` engine and gets them re-derived, in memory only, from the vocals stem and the
    speaker turns (same inputs, same embedder: the same profiles), so no voice data is written again."""
    key = voice_profiles_key(video)
    if store.exists(key):
        return read_sealed_json(store, video, key)
    if diarization is None:
        raise FileNotFoundError(f"{key}: voice profiles of {video!r} were deleted after its final mix; "
                                "re-derive them with the diarization engine (or re-run speaker_map)")
    turns = [SpeakerTurn(**t) for t in store.read_json(derived_key(video, "speaker_map", "speaker_map.json"))["turns"]]
    if not turns:
        return {}
    with store.open_local(derived_key(video, "stems", "vocals_16k.wav")) as src:
        return speaker_profiles(src, turns, diarization.get_embedder())


def reference_clips_prefix(video: str) -> str:
    """Where the voices stage keeps the speakers' sealed reference clips (cloning engines)."""
    return derived_key(video, "voices", "references") + "/"


def delete_voice_data(store: MediaStore, video: str, languages: list[str]) -> list[str]:
    """Delete the video's voice data once each of ``languages`` has its final mix: the voice profiles
    (embeddings, reference intervals) and the sealed reference clips. The deleted keys ([] when not
    yet, or when OCTAVIA_DELETE_VOICE_DATA=0). A user's own voice samples (``voices/<video>/``) are
    theirs to remove and stay."""
    if not voice_data_deletion_enabled():
        return []
    if not all(store.exists(derived_key(video, lang, "final_mix.wav")) for lang in languages):
        return []
    keys = [o.key for o in store.list_objects(reference_clips_prefix(video), limit=100_000)]
    keys += [voice_profiles_key(video)] if store.exists(voice_profiles_key(video)) else []
    store.delete_many(keys)
    return keys


def restore_reference_clips(store: MediaStore, video: str, references: dict[str, str],
                            diarization: DiarizationEngine) -> dict[str, str]:
    """``references`` ({speaker: key}), with the derived clips deleted after an earlier final mix
    sealed again from the vocals stem (a re-dub that re-runs dubbing but not voices needs them)."""
    missing = {s: k for s, k in references.items() if not store.exists(k)}
    derived = {s: k for s, k in missing.items() if k.startswith(reference_clips_prefix(video))}
    if missing.keys() - derived.keys():
        raise FileNotFoundError(f"voice samples of {video!r} are gone: {sorted(missing.values())}")
    if derived:
        from .resources.prod_tts_xtts import seal_references
        profiles = voice_profiles(store, video, diarization)
        with store.open_local(derived_key(video, "stems", "vocals_16k.wav")) as vocals:
            seal_references(store, video, vocals, {s: profiles[s] for s in derived if s in profiles},
                            lambda s: derived[s])
    return {s: k for s, k in references.items() if store.exists(k)}


@dg.asset(partitions_def=videos, group_name="listen", kinds={"pytorch"}, deps=[stems],
          # reference clips: best SNR, 10-30 s; profiles sealed (AES-GCM) since sealed-profiles-v1
          code_version=engine_version("diarization") + "+refs-snr-10-30s+sealed-profiles-v1",
          automation_condition=DOWNSTREAM, pool="gpu")
def speaker_map(context: dg.AssetExecutionContext, media_store: MediaStore,
                diarization: DiarizationEngine) -> dg.MaterializeResult:
    """Speaker turns (automatic speaker count) and per-speaker profiles with reference intervals."""
    started = time.perf_counter()
    video = video_of(context)
    diarizer = diarization.get()
    with media_store.open_local(derived_key(video, "stems", "vocals_16k.wav")) as src:
        turns = diarizer.diarize(src)
        profiles = speaker_profiles(src, turns, diarization.get_embedder()) if turns else {}
    out = derived_key(video, "speaker_map", "speaker_map.json")
    # Turns and speaking time stay readable (chunking, transcript, report); the profiles are voice
    # data (an embedding is a voice fingerprint) and are sealed with the video's key.
    put_sealed_json(media_store, video, profiles, voice_profiles_key(video))
    media_store.put_json({"turns": [t.to_dict() for t in turns],
                          "speakers": {s: {"speech_s": p["speech_s"]} for s, p in profiles.items()}}, out)
    if not turns:
        context.log.warning("no speaker found: no speech in the vocals")
    summary = {s: {"speech_s": round(p["speech_s"], 1), "gender": p["gender"], "f0_hz": round(p["f0_hz"] or 0, 1)}
               for s, p in profiles.items()}
    return materialized(media_store, [out, voice_profiles_key(video)], started, model=diarizer.version, speaker_count=len(profiles),
                        turn_count=len(turns), speakers=dg.MetadataValue.json(summary))
