"""quality_report: the figures of one dub, gathered from every stage, as JSON, an HTML page with
plots, and Dagster metadata (markdown with the plots inline, JSON)."""

import base64
import contextlib
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from .common import DOWNSTREAM, derived_key, materialized, output_key, video_of, workdir
from .delivery import duration_report, final_video, target_languages_of_catalogue
from .dubbing import speedup_stats
from .mix import MIX_CHECKS, mix_settings, placed_dub, stored_mix_figures
from .partitions import video_language_key, videos
from .resources.engines import TtsEngine
from .resources.media import probe
from .resources.mixing import (
    AudioFile,
    integrated_loudness,
    loudness_over_time,
    true_peak_db,
    voice_leakage_db,
)
from .resources.report_html import loudness_plot, render_html, speaker_timeline, speedup_histogram
from .resources.storage import MediaStore


def _section(lang: str, dub: dict, source_lines: dict[int, dict], figures: dict, wer_by_line: dict[int, float]) -> dict:
    lines = dub["lines"]
    chunks = [{k: ln.get(k) for k in ("index", "speaker", "start", "end", "slot_s", "speedup", "fits", "text")}
              | {"source_text": source_lines.get(ln["index"], {}).get("text", ""),
                 "roundtrip_wer": wer_by_line.get(ln["index"])}
              for ln in lines]
    return {"language": lang, "lines": len(lines), "lines_not_fitting": sum(not ln["fits"] for ln in lines),
            "overlaps": sum(1 for a, b in itertools.pairwise(lines) if a["end"] > b["start"] + 1e-3),
            **figures, **speedup_stats([ln["speedup"] for ln in lines]), "chunks": chunks}


def _latest_checks(instance, video: str, languages: list[str]) -> list[dict]:
    """The latest evaluation of each check of final_mix (per language) and final_video, for this video."""
    from dagster._core.event_api import PartitionKeyFilter

    from .delivery import DELIVERY_CHECKS
    wanted = [(spec, video) for spec in DELIVERY_CHECKS]
    wanted += [(spec, str(video_language_key(video, lang))) for spec in MIX_CHECKS for lang in languages]
    rows = []
    for spec, partition in wanted:
        records = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [spec.key], partition_filter=PartitionKeyFilter(key=partition))
        record = records.get(spec.key)
        evaluation = record.event.dagster_event.event_specific_data if record and record.event else None
        if evaluation is None:
            continue
        rows.append({"asset": spec.asset_key.to_user_string(), "partition": partition, "check": spec.name,
                     "severity": evaluation.severity.value, "passed": bool(evaluation.passed),
                     "description": evaluation.description or ""})
    return rows


def _mix_figures(media_store: MediaStore, files: contextlib.ExitStack, video: str, lang: str,
                 mix: AudioFile, dub_track) -> dict:
    """final_mix's own loudness, true peak and leakage of this very mix; measured here only for a
    mix stored without them (made before they were kept)."""
    stored = stored_mix_figures(media_store, video, lang)
    if stored is not None:
        return stored
    vocals = AudioFile(files.enter_context(media_store.open_local(derived_key(video, "stems", "vocals.wav"))),
                       mono=True)
    leak = voice_leakage_db(mix, mix.sample_rate, vocals, vocals.sample_rate, dub_track, dub_track.sample_rate)
    return {"integrated_lufs": round(integrated_loudness(mix, mix.sample_rate), 2),
            "true_peak_dbtp": round(true_peak_db(mix), 2), "leakage_vs_vocals_db": leak["leakage_db"]}


@dg.asset(partitions_def=videos, group_name="deliver", deps=[final_video], code_version="report-v4",
          automation_condition=DOWNSTREAM)
def quality_report(context: dg.AssetExecutionContext, media_store: MediaStore, tts: TtsEngine) -> dg.MaterializeResult:
    """Duration match, speed-ups, loudness over time, leakage, speakers, per-line table and checks."""
    started = time.perf_counter()
    video = video_of(context)
    source = media_store.read_json(derived_key(video, "source", "probe.json"))
    transcript = media_store.read_json(derived_key(video, "transcript", "transcript.json"))
    speaker_map = media_store.read_json(derived_key(video, "speaker_map", "speaker_map.json"))
    target = mix_settings().target_lufs
    with media_store.open_local(output_key(video, f"{video}.dubbed.mp4")) as path:
        durations = duration_report(source, probe(path))
    # Tracks are measured from their files a block at a time (AudioFile), never loaded whole: memory
    # stays flat in the video's length. The files stay open (local) until the report is built.
    with contextlib.ExitStack() as files, ThreadPoolExecutor(1) as pool:
        original = AudioFile(files.enter_context(media_store.open_local(derived_key(video, "audio", "audio_44k.wav"))))
        orig_rate = original.sample_rate
        # the original's figures on a second thread while the mixes are measured (the K-weighting
        # filters release the GIL for part of their work)
        original_lufs = pool.submit(integrated_loudness, original, orig_rate)
        original_curve = pool.submit(loudness_over_time, original, orig_rate)
        source_lines = {ln["index"]: ln for ln in transcript["lines"]}
        languages = target_languages_of_catalogue()
        sections, curves, dubs = [], {}, {}
        for lang in languages:
            dub_track, dub = placed_dub(media_store, files, video, lang)
            dubs[lang] = dub
            samples = AudioFile(files.enter_context(media_store.open_local(derived_key(video, lang, "final_mix.wav"))))
            curves[lang] = loudness_over_time(samples, samples.sample_rate)
            figures = _mix_figures(media_store, files, video, lang, samples, dub_track)
            # Round-trip WER per line comes from the on-demand dub_quality asset, when it was materialized.
            quality_key = derived_key(video, lang, "dub_quality.json")
            wer_by_line = ({row["index"]: row["wer"] for row in media_store.read_json(quality_key)["roundtrip"]["lines"]}
                           if media_store.exists(quality_key) else {})
            sections.append(_section(lang, dub, source_lines, wer_by_line=wer_by_line, figures=figures))
        lines = transcript["lines"]
        report = {
            "video": video, "source": source["object_key"], "durations": durations,
            "source_language": transcript["language"], "speaker_count": len(speaker_map["speakers"]),
            "transcript_lines": len(lines), "target_lufs": target, "speedup_cap": tts.max_speedup,
            "mean_asr_confidence": round(sum(ln["confidence"] for ln in lines) / len(lines), 3) if lines else 0.0,
            "original_integrated_lufs": round(original_lufs.result(), 2),
            "languages": sections, "checks": _latest_checks(context.instance, video, languages),
        }
        plots = {
            "loudness": loudness_plot(original_curve.result(), curves, target),
            "speedups": speedup_histogram({lang: [ln["speedup"] for ln in d["lines"]] for lang, d in dubs.items()},
                                          tts.max_speedup),
            "speakers": speaker_timeline(speaker_map["turns"], {lang: d["lines"] for lang, d in dubs.items()},
                                         source["duration"]),
        }
        keys = [output_key(video, "quality_report.json"), output_key(video, "quality_report.html")]
        media_store.put_json(report, keys[0])
        with workdir("report") as tmp:
            (tmp / "report.html").write_text(render_html(report, plots), encoding="utf-8")
            media_store.put_file(tmp / "report.html", keys[1])
            for name, png in plots.items():
                (tmp / f"{name}.png").write_bytes(png)
                keys.append(output_key(video, "report", f"{name}.png"))
                media_store.put_file(tmp / f"{name}.png", keys[-1])
        failed = [f"{c['check']} ({c['partition']})" for c in report["checks"] if not c["passed"]]
        rows = "\n".join(f"| {s['language']} | {s['lines']} | {s['integrated_lufs']} | {s['true_peak_dbtp']} | "
                         f"{s['leakage_vs_vocals_db']} | {s['speedup_median']} | {s['speedup_max']} | "
                         f"{s['lines_not_fitting']} |" for s in sections)
        inline = lambda name: f"![{name}](data:image/png;base64,{base64.b64encode(plots[name]).decode()})"
        md = (f"**Duration delta:** {durations['max_stream_delta_frames']} frames (worst stream)  \n"
              f"**Checks:** {len(report['checks']) - len(failed)}/{len(report['checks'])} passed"
              + (f"; failed: {', '.join(failed)}" if failed else "") + "\n\n"
              "| lang | lines | LUFS | true peak dBTP | leakage dB (vs vocals) | speed-up median | max | not fitting |\n"
              "|---|---|---|---|---|---|---|---|\n" + rows + "\n\n" + inline("loudness") + "\n\n" + inline("speedups")
              + "\n\n" + inline("speakers"))
        return materialized(media_store, keys, started, report=dg.MetadataValue.md(md),
                            report_json=dg.MetadataValue.json({k: v for k, v in report.items() if k != "languages"}),
                            html=dg.MetadataValue.path(media_store.uri(keys[1])),
                            duration_delta_frames=durations["max_stream_delta_frames"],
                            speaker_count=len(speaker_map["speakers"]), checks_failed=len(failed))
