"""Final video: the original video stream copied bit-exact, one dubbed audio track per language."""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import srt

from .cpus import available_cores
from .media import run_ffmpeg

# ISO 639-1 -> ISO 639-2/B, the form MP4/Matroska language tags use.
ISO639_2 = {"en": "eng", "pt": "por", "es": "spa", "fr": "fre", "it": "ita", "ca": "cat", "de": "ger",
            "gl": "glg", "ja": "jpn", "zh": "chi", "hi": "hin", "nl": "dut", "ru": "rus", "ar": "ara"}
LANGUAGE_NAMES = {"en": "English", "pt": "Português", "es": "Español", "fr": "Français", "it": "Italiano",
                  "ca": "Català", "de": "Deutsch", "gl": "Galego", "ja": "日本語", "zh": "中文", "hi": "हिन्दी"}


#: Sample rates the AAC encoder accepts; any other (odd) rate is resampled to 48 kHz.
AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


@dataclass(frozen=True)
class AudioTrack:
    path: str
    language: str      # ISO 639-1
    title: str
    channels: int = 2
    sample_rate: int = 48000
    stream: str = "a:0"  # which audio stream of ``path``


@dataclass(frozen=True)
class SubtitleTrack:
    path: str          # an SRT file
    language: str      # ISO 639-1
    title: str


def iso639_2(lang: str) -> str:
    return ISO639_2.get(lang, lang)


def _bitrate_for(bitrate: str, channels: int) -> str:
    """``bitrate`` is per stereo pair: a 5.1 track gets three times a stereo one's."""
    if not bitrate.endswith("k"):
        return bitrate
    return f"{int(float(bitrate[:-1]) * max(1, channels) / 2)}k"


def _encode_track(video_path: str, t: AudioTrack, duration_s: float, codec: str, bitrate: str, dest: Path) -> None:
    """One audio track encoded alone, padded/trimmed to exactly ``duration_s``."""
    rate = t.sample_rate if t.sample_rate in AAC_SAMPLE_RATES else 48000
    n = round(duration_s * rate)
    stream = (ffmpeg.input(t.path)[t.stream].filter("aresample", rate).filter("apad", whole_len=n)
              .filter("atrim", end_sample=n))
    run_ffmpeg(ffmpeg.output(stream, str(dest), acodec=codec, ar=rate, f="mp4", map_metadata="-1",
                             **{"b:a": _bitrate_for(bitrate, t.channels)}),
               f"encoding the {t.title} audio of {Path(video_path).name}")


def mux(video_path: str | os.PathLike, tracks: list[AudioTrack], duration_s: float, out_path: str | os.PathLike,
        keep_original_audio: bool = False, audio_codec: str = "aac", audio_bitrate: str = "192k",
        original_language: str | None = None, subtitles: list[SubtitleTrack] = (),
        original_audio: AudioTrack | None = None, has_video: bool = True) -> None:
    """Mux into an MP4 of exactly ``duration_s``: video copied (no re-encode), audio tracks in order
    (the first one default), then the original audio if asked, then soft subtitles (mov_text).

    Every audio track is padded/trimmed to the same sample count, so each stream ends with the
    video; tracks at a sample rate AAC cannot carry are resampled to 48 kHz; multichannel (5.1)
    tracks keep their layout. The tracks are encoded at once, one ffmpeg each (an encoder uses one
    core), then muxed with the video by stream copy.
    """
    all_tracks = list(tracks)
    if keep_original_audio:
        all_tracks.append(original_audio or AudioTrack(str(video_path), original_language or "und", "Original"))
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.part")
    with tempfile.TemporaryDirectory(prefix="octavia-mux-") as work_dir:
        work = Path(work_dir)
        encoded = [work / f"audio{i}.m4a" for i in range(len(all_tracks))]
        with ThreadPoolExecutor(max(1, min(len(all_tracks), available_cores()))) as pool:
            for job in [pool.submit(_encode_track, str(video_path), t, duration_s, audio_codec, audio_bitrate, dest)
                        for t, dest in zip(all_tracks, encoded)]:
                job.result()
        streams = [ffmpeg.input(str(video_path))["v:0"]] if has_video else []   # audio-only upload: audio-only MP4
        streams += [ffmpeg.input(str(path))["a:0"] for path in encoded]
        args: dict[str, str] = {}
        for i, t in enumerate(all_tracks):
            args[f"metadata:s:a:{i}"] = f"language={iso639_2(t.language)}"
            args[f"disposition:a:{i}"] = "default" if i == 0 else "0"
        args.update({"c:v": "copy", "c:a": "copy", "t": f"{duration_s:.6f}", "movflags": "+faststart",
                     "map_metadata": "-1", "f": "mp4"})
        if subtitles:
            args["c:s"] = "mov_text"
        # Track titles: MP4 keeps a track's name in its handler (hdlr), which players show; set through a
        # second metadata option addressed by absolute stream index (ffmpeg-python takes each name once).
        for i, t in enumerate(all_tracks):
            args[f"metadata:s:{int(has_video) + i}"] = f"handler_name={t.title}"
        for i, sub in enumerate(subtitles):
            args[f"metadata:s:{int(has_video) + len(all_tracks) + i}"] = f"handler_name={sub.title}"
        for i, sub in enumerate(subtitles):
            padded = _pad_subtitles_to(sub.path, duration_s, work / f"{i}.srt")
            streams.append(ffmpeg.input(str(padded))["s:0"])
            args[f"metadata:s:s:{i}"] = f"language={iso639_2(sub.language)}"
            args[f"disposition:s:{i}"] = "0"
        try:
            run_ffmpeg(ffmpeg.output(*streams, str(tmp), **args), f"muxing {out_path.name}")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, out_path)


def _pad_subtitles_to(path: str, duration_s: float, dest: Path) -> Path:
    """A copy of an SRT file whose last cue ends at ``duration_s``.

    An MP4 subtitle track ends with its last cue and ffmpeg drops empty cues, so a final cue holding
    only a zero-width space (it renders as nothing) makes the track last as long as the video.
    """
    cues = list(srt.parse(Path(path).read_text(encoding="utf-8")))
    end = dt.timedelta(seconds=duration_s)
    last = max((c.end for c in cues), default=dt.timedelta(0))
    if last < end:
        start = max(last, end - dt.timedelta(milliseconds=40))
        cues.append(srt.Subtitle(index=len(cues) + 1, start=start, end=end, content="\u200b"))
    dest.write_text(srt.compose(cues, reindex=True), encoding="utf-8")
    return dest
