"""chunks: speech regions from voice-activity detection, grouped into 6-12 s units at silences."""

import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, materialized, video_of
from .partitions import videos
from .resources.chunking import make_chunks
from .resources.engines import VadEngine, engine_version
from .resources.media import read_audio
from .resources.storage import MediaStore
from .stems import stems


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


@dg.asset(partitions_def=videos, group_name="listen", kinds={"onnx"}, deps=[stems],
          code_version=engine_version("vad"), automation_condition=DOWNSTREAM)
def chunks(context: dg.AssetExecutionContext, media_store: MediaStore, vad: VadEngine) -> dg.MaterializeResult:
    """Speech regions (Silero VAD on the vocals stem) and the chunks built from them."""
    started = time.perf_counter()
    video = video_of(context)
    detector = vad.get()
    with media_store.open_local(derived_key(video, "stems", "vocals_16k.wav")) as src:
        regions = detector.speech_regions(src)
        samples, rate = read_audio(src, mono=True)
    duration = len(samples) / rate
    built = make_chunks(regions, min_len=vad.min_chunk_s, max_len=vad.max_chunk_s, min_silence=vad.min_silence_s)
    out = derived_key(video, "chunks", "chunks.json")
    chunk_dicts = [c.to_dict() for c in built]
    speech_s = sum(e - s for s, e in regions)
    media_store.put_json({"duration_s": duration, "speech_regions": regions, "chunks": chunk_dicts}, out)
    if not built:
        context.log.warning("no speech detected: the dub will carry the background only")
    return materialized(media_store, [out], started, model=detector.version, speech_s=round(speech_s, 2),
                        speech_ratio=round(speech_s / duration, 3) if duration else 0.0,
                        **chunk_stats(chunk_dicts, speech_s, vad.min_chunk_s, vad.max_chunk_s))
