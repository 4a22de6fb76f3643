"""quality_report: the figures of one dub, gathered from every stage, as JSON and markdown."""

import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, materialized, output_key, video_of
from .delivery import duration_report, final_video, target_languages_of_catalogue
from .dubbing import speedup_stats
from .partitions import videos
from .resources.media import probe
from .resources.mixing import integrated_loudness
from .resources.media import read_audio
from .resources.storage import MediaStore


def _section(lang: str, dub: dict, mix_lufs: float) -> dict:
    lines = dub["lines"]
    return {"language": lang, "lines": len(lines), "lines_not_fitting": sum(not ln["fits"] for ln in lines),
            "overlaps": sum(1 for a, b in zip(lines, lines[1:]) if a["end"] > b["start"] + 1e-3),
            "integrated_lufs": round(mix_lufs, 2), **speedup_stats([ln["speedup"] for ln in lines])}


@dg.asset(partitions_def=videos, group_name="deliver", deps=[final_video], code_version="report-v1",
          automation_condition=DOWNSTREAM)
def quality_report(context: dg.AssetExecutionContext, media_store: MediaStore) -> dg.MaterializeResult:
    """Duration match, speed-ups, loudness, speakers and transcript confidence for one video."""
    started = time.perf_counter()
    video = video_of(context)
    source = media_store.read_json(derived_key(video, "source", "probe.json"))
    transcript = media_store.read_json(derived_key(video, "transcript", "transcript.json"))
    speakers = media_store.read_json(derived_key(video, "speaker_map", "speaker_map.json"))["speakers"]
    with media_store.open_local(output_key(video, f"{video}.dubbed.mp4")) as path:
        durations = duration_report(source, probe(path))
    sections = []
    for lang in target_languages_of_catalogue():
        dub = media_store.read_json(derived_key(video, lang, "dubbed_chunks.json"))
        with media_store.open_local(derived_key(video, lang, "final_mix.wav")) as mix_path:
            samples, rate = read_audio(mix_path)
        sections.append(_section(lang, dub, integrated_loudness(samples, rate)))
    lines = transcript["lines"]
    report = {
        "video": video, "source": source["object_key"], "durations": durations,
        "source_language": transcript["language"], "speaker_count": len(speakers),
        "transcript_lines": len(lines),
        "mean_asr_confidence": round(sum(ln["confidence"] for ln in lines) / len(lines), 3) if lines else 0.0,
        "languages": sections,
    }
    out = output_key(video, "quality_report.json")
    media_store.put_json(report, out)
    rows = "\n".join(f"| {s['language']} | {s['lines']} | {s['speedup_median']} | {s['speedup_max']} | "
                     f"{s['lines_not_fitting']} | {s['overlaps']} | {s['integrated_lufs']} |" for s in sections)
    md = (f"Duration delta: {durations['max_stream_delta_frames']} frames\n\n"
          "| lang | lines | speed-up median | max | not fitting | overlaps | LUFS |\n|---|---|---|---|---|---|---|\n"
          + rows)
    return materialized(media_store, [out], started, report=dg.MetadataValue.md(md),
                        duration_delta_frames=durations["max_stream_delta_frames"], speaker_count=len(speakers))
