"""final_video: the original video stream copied, one dubbed audio track per target language."""

import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, fail, materialized, output_key, video_of, workdir
from .mix import final_mix
from .partitions import VIDEO_DIMENSION, video_lang, videos
from .resources.media import probe
from .resources.muxing import LANGUAGE_NAMES, AudioTrack, mux
from .resources.storage import MediaStore
from .source import source_video

def target_languages_of_catalogue() -> list[str]:
    return video_lang.get_partitions_def_for_dimension("lang").get_partition_keys()


def duration_report(source: dict, out_facts) -> dict:
    """Per-stream duration of the output against the source's, in seconds and video frames."""
    fps = next((s["fps"] for s in source["streams"] if s["codec_type"] == "video" and s.get("fps")), None) or 25.0
    deltas = {f"{s.codec_type}{s.index}": (s.duration or out_facts.duration) - source["duration"] for s in out_facts.streams}
    worst = max(abs(d) for d in deltas.values())
    return {"source_duration_s": round(source["duration"], 4), "output_duration_s": round(out_facts.duration, 4),
            "max_stream_delta_s": round(worst, 4), "max_stream_delta_frames": round(worst * fps, 3), "fps": fps}


@dg.asset(partitions_def=videos, group_name="deliver", kinds={"ffmpeg"},
          deps=[source_video, dg.AssetDep(final_mix, partition_mapping=VIDEO_DIMENSION)],
          code_version="mux-v1", automation_condition=DOWNSTREAM)
def final_video(context: dg.AssetExecutionContext, media_store: MediaStore) -> dg.MaterializeResult:
    """MP4 with the source video stream copied bit-exact and the original duration, one track per language."""
    started = time.perf_counter()
    video = video_of(context)
    source = media_store.read_json(derived_key(video, "source", "probe.json"))
    languages = target_languages_of_catalogue()
    missing = [lang for lang in languages if not media_store.exists(derived_key(video, lang, "final_mix.wav"))]
    if missing:
        raise fail(context, f"no final mix yet for {', '.join(missing)}: materialize final_mix for those languages first")
    out = output_key(video, f"{video}.dubbed.mp4")
    with workdir("mux") as tmp:
        local_mixes = []
        for lang in languages:
            path = tmp / f"{lang}.wav"
            with media_store.open_local(derived_key(video, lang, "final_mix.wav")) as mix_path:
                path.write_bytes(mix_path.read_bytes())
            local_mixes.append(AudioTrack(str(path), lang, f"{LANGUAGE_NAMES.get(lang, lang)} (dub)"))
        with media_store.open_local(source["object_key"]) as src:
            mux(src, local_mixes, source["duration"], tmp / "out.mp4")
        facts = probe(tmp / "out.mp4")
        media_store.put_file(tmp / "out.mp4", out)
    return materialized(media_store, [out], started, languages=",".join(languages),
                        **duration_report(source, facts))
