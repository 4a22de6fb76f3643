"""chunks: speech regions from voice-activity detection, grouped into 6-12 s units at silences,
never across a change of speaker (the speaker_map turns)."""

import time

import dagster as dg
import soundfile as sf

from .common import DOWNSTREAM, derived_key, materialized, video_of
from .partitions import videos
from .resources.chunking import make_chunks
from .resources.diarization import speaker_at
from .resources.engines import VadEngine, engine_version
from .resources.storage import MediaStore
from .resources.types import SpeakerTurn
from .speakers import speaker_map


def chunk_stats(chunks: list[dict], speech_s: float, min_s: float, max_s: float) -> dict:
    lengths = [c["end"] - c["start"] for c in chunks]
    in_range = sum(d for d in lengths if min_s <= d <= max_s)
    return {
        "chunk_count": len(chunks),
        "chunk_mean_s": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        "chunk_min_s": round(min(lengths), 2) if lengths else 0.0,
        "chunk_max_s": round(max(lengths), 2) if lengths else 0.0,
        "chunked_time_in_range_pct": round(100 * in_range / sum(lengths), 1) if lengths else 0.0,
    }


@dg.asset(partitions_def=videos, group_name="listen", kinds={"onnx"}, deps=[speaker_map],
          code_version=engine_version("vad") + "+speaker-cuts", automation_condition=DOWNSTREAM)
def chunks(context: dg.AssetExecutionContext, media_store: MediaStore, vad: VadEngine) -> dg.MaterializeResult:
    """Speech regions (Silero VAD on the vocals stem) and the chunks built from them, one speaker each."""
    started = time.perf_counter()
    video = video_of(context)
    detector = vad.get()
    with media_store.open_local(derived_key(video, "stems", "vocals_16k.wav")) as src:
        regions = detector.speech_regions(src)
        duration = sf.info(str(src)).duration      # header only: no need to hold the samples
    turns = [SpeakerTurn.from_dict(t) for t in media_store.read_json(
        derived_key(video, "speaker_map", "speaker_map.json"))["turns"]]
    built = make_chunks(regions, min_len=vad.min_chunk_s, max_len=vad.max_chunk_s, min_silence=vad.min_silence_s,
                        speaker_turns=turns)
    out = derived_key(video, "chunks", "chunks.json")
    chunk_dicts = [{**c.to_dict(), "speaker": speaker_at(c.start, c.end, turns)} for c in built]
    speech_s = sum(e - s for s, e in regions)
    media_store.put_json({"duration_s": duration, "speech_regions": regions, "chunks": chunk_dicts}, out)
    if not built:
        context.log.warning("no speech detected: the dub will carry the background only")
    return materialized(media_store, [out], started, model=detector.version, speech_s=round(speech_s, 2),
                        speech_ratio=round(speech_s / duration, 3) if duration else 0.0,
                        **chunk_stats(chunk_dicts, speech_s, vad.min_chunk_s, vad.max_chunk_s))
