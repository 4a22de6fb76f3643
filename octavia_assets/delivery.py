"""final_video: the original video stream copied, one dubbed audio track per target language, the
original audio as an option, soft subtitles (source and every target); SRT/WebVTT files beside it."""

import os
import shutil
import time
import warnings
from dataclasses import dataclass

import dagster as dg

from . import checks
from .common import DOWNSTREAM, derived_key, fail, materialized, output_key, video_of, workdir
from .mix import final_mix
from .partitions import VIDEO_DIMENSION, video_lang, videos
from .resources.engines import TtsEngine
from .resources.media import probe
from .resources.muxing import LANGUAGE_NAMES, AudioTrack, SubtitleTrack, mux
from .resources.storage import MediaStore
from .resources.subtitles import write_subtitles
from .source import source_video


@dataclass(frozen=True)
class DeliverySettings:
    audio_codec: str = "aac"
    audio_bitrate: str = "192k"        # per stereo pair; 5.1 gets three times this
    keep_original_audio: bool = True   # the source soundtrack as the last (non-default) track

    @property
    def version(self) -> str:
        return f"{self.audio_codec}-{self.audio_bitrate}-orig{int(self.keep_original_audio)}"


def delivery_settings() -> DeliverySettings:
    return DeliverySettings(audio_codec=os.environ.get("OCTAVIA_AUDIO_CODEC", "aac"),
                            audio_bitrate=os.environ.get("OCTAVIA_AUDIO_BITRATE", "192k"),
                            keep_original_audio=os.environ.get("OCTAVIA_KEEP_ORIGINAL_AUDIO", "1") != "0")


def target_languages_of_catalogue() -> list[str]:
    return video_lang.get_partitions_def_for_dimension("lang").get_partition_keys()


def subtitle_key(video: str, lang: str, ext: str) -> str:
    return output_key(video, "subtitles", f"{video}.{lang}.{ext}")


def duration_report(source: dict, out_facts) -> dict:
    """Per-stream duration of the output against the source's, in seconds and video frames: video,
    audio and subtitle streams (the muxer pads subtitle tracks to the video's end)."""
    fps = next((s["fps"] for s in source["streams"] if s["codec_type"] == "video" and s.get("fps")), None) or 25.0
    # The video stream is copied bit-exact, so it is held to the source's own video stream, which
    # may end before the container (variable frame rate, a last frame held).
    source_video_s = next((s["duration"] for s in source["streams"] if s["codec_type"] == "video" and s.get("duration")),
                          source["duration"])
    deltas = {f"{s.codec_type}{s.index}": (s.duration or out_facts.duration)
              - (source_video_s if s.codec_type == "video" else source["duration"])
              for s in out_facts.streams if s.codec_type in ("audio", "video", "subtitle")}
    worst = max(abs(d) for d in deltas.values())
    return {"source_duration_s": round(source["duration"], 4), "output_duration_s": round(out_facts.duration, 4),
            "max_stream_delta_s": round(worst, 4), "max_stream_delta_frames": round(worst * fps, 3), "fps": fps,
            "stream_delta_frames": {k: round(d * fps, 3) for k, d in deltas.items()},
            "subtitle_ends_s": {f"subtitle{s.index}": s.duration for s in out_facts.streams
                                if s.codec_type == "subtitle"}}


# Per-partition check results (partitions_def on a check spec) are preview in Dagster 1.13.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    DELIVERY_CHECKS = [
        dg.AssetCheckSpec("duration_match", asset="final_video", partitions_def=videos, blocking=True,
                          description="Every stream (video, audio, subtitles) lasts the source's duration within one video frame."),
        dg.AssetCheckSpec("no_dropped_lines", asset="final_video", partitions_def=videos, blocking=True,
                          description="Every transcribed line is dubbed, with audio, in every language."),
        dg.AssetCheckSpec("speedup_cap", asset="final_video", partitions_def=videos,
                          description="No dubbed line sped up past the TTS cap; every line fits its slot."),
    ]


@dg.asset(partitions_def=videos, group_name="deliver", kinds={"ffmpeg"},
          # It also reads the transcript and the dubbed lines (for subtitles and checks): both are
          # upstream of final_mix, so every change reaches this asset through the mixes, once.
          deps=[source_video, dg.AssetDep(final_mix, partition_mapping=VIDEO_DIMENSION)],
          check_specs=DELIVERY_CHECKS, code_version="mux-v2+subs-v1+" + delivery_settings().version,
          automation_condition=DOWNSTREAM)
def final_video(context: dg.AssetExecutionContext, media_store: MediaStore, tts: TtsEngine) -> dg.MaterializeResult:
    """MP4 with the source video stream copied bit-exact and the original duration, one track per
    language (first default), the original audio, and mov_text subtitles; SRT + WebVTT per language."""
    started = time.perf_counter()
    video = video_of(context)
    settings = delivery_settings()
    source = media_store.read_json(derived_key(video, "source", "probe.json"))
    doc = media_store.read_json(derived_key(video, "transcript", "transcript.json"))
    source_lang = doc["language"]
    languages = target_languages_of_catalogue()
    missing = [lang for lang in languages if not media_store.exists(derived_key(video, lang, "final_mix.wav"))]
    if missing:
        raise fail(context, f"no final mix yet for {', '.join(missing)}: materialize final_mix for those languages first")
    dubs = {lang: media_store.read_json(derived_key(video, lang, "dubbed_chunks.json")) for lang in languages}
    out = output_key(video, f"{video}.dubbed.mp4")
    sub_keys, cue_counts = [], {}
    with workdir("mux") as tmp:
        tracks, subs = [], []
        for lang in languages:
            path = tmp / f"{lang}.wav"
            with media_store.open_local(derived_key(video, lang, "final_mix.wav")) as mix_path:
                shutil.copyfile(mix_path, path)    # streamed: an hour of 48 kHz stereo is ~700 MB
            tracks.append(AudioTrack(str(path), lang, f"{LANGUAGE_NAMES.get(lang, lang)} (dub)"))
        # Source cues follow the original speech; each target's follow its dubbed speech.
        for lang, lines in [(source_lang, doc["lines"])] + [(lang, dubs[lang]["lines"]) for lang in languages]:
            if lang in cue_counts:
                continue   # a target equal to the source language keeps the transcript's cues
            srt_path, vtt_path, cue_counts[lang] = write_subtitles(lines, source["duration"], tmp / lang)
            kind = "original" if lang == source_lang else "dub"
            subs.append(SubtitleTrack(str(srt_path), lang, f"{LANGUAGE_NAMES.get(lang, lang)} ({kind})"))
            for path, ext in ((srt_path, "srt"), (vtt_path, "vtt")):
                media_store.put_file(path, subtitle_key(video, lang, ext))
                sub_keys.append(subtitle_key(video, lang, ext))
        source_audio = next(s for s in source["streams"] if s["codec_type"] == "audio")
        with media_store.open_local(source["object_key"]) as src:
            original = AudioTrack(str(src), source_lang, f"{LANGUAGE_NAMES.get(source_lang, source_lang)} (original)",
                                  channels=source_audio.get("channels") or 2,
                                  sample_rate=source_audio.get("sample_rate") or 48000)
            mux(src, tracks, source["duration"], tmp / "out.mp4", keep_original_audio=settings.keep_original_audio,
                audio_codec=settings.audio_codec, audio_bitrate=settings.audio_bitrate, subtitles=subs,
                original_audio=original, has_video=any(s["codec_type"] == "video" for s in source["streams"]))
        facts = probe(tmp / "out.mp4")
        media_store.put_file(tmp / "out.mp4", out)
    durations = duration_report(source, facts)
    results = [
        checks.duration_match({k: v / durations["fps"] for k, v in durations["stream_delta_frames"].items()},
                              durations["fps"], durations["subtitle_ends_s"], source["duration"])
        .result("duration_match", checks.ERROR),
        checks.no_dropped_lines(doc["lines"], dubs).result("no_dropped_lines", checks.ERROR),
        checks.speedup_cap(dubs, tts.max_speedup).result("speedup_cap", checks.WARN),
    ]
    streams = [f"{s.index}:{s.codec_type}/{s.codec_name}/{s.language}" for s in facts.streams]
    result = materialized(media_store, [out] + sub_keys, started, languages=",".join(languages),
                          streams=dg.MetadataValue.json(streams), subtitle_cues=dg.MetadataValue.json(cue_counts),
                          **{k: v for k, v in durations.items() if not isinstance(v, dict)},
                          stream_delta_frames=dg.MetadataValue.json(durations["stream_delta_frames"]))
    return dg.MaterializeResult(metadata=result.metadata, data_version=result.data_version, check_results=results)
