"""Final video: the original video stream copied bit-exact, one dubbed audio track per language."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from .media import run_ffmpeg

# ISO 639-1 -> ISO 639-2/B, the form MP4/Matroska language tags use.
ISO639_2 = {"en": "eng", "pt": "por", "es": "spa", "fr": "fre", "it": "ita", "ca": "cat", "de": "ger",
            "gl": "glg", "ja": "jpn", "zh": "chi", "hi": "hin", "nl": "dut", "ru": "rus", "ar": "ara"}
LANGUAGE_NAMES = {"en": "English", "pt": "Português", "es": "Español", "fr": "Français", "it": "Italiano",
                  "ca": "Català", "de": "Deutsch", "gl": "Galego", "ja": "日本語", "zh": "中文", "hi": "हिन्दी"}


@dataclass(frozen=True)
class AudioTrack:
    path: str
    language: str      # ISO 639-1
    title: str


def mux(video_path: str | os.PathLike, tracks: list[AudioTrack], duration_s: float, out_path: str | os.PathLike,
        keep_original_audio: bool = False, audio_codec: str = "aac", audio_bitrate: str = "192k",
        original_language: str | None = None) -> None:
    """Mux into an MP4: video copied (no re-encode), tracks in order, the first one default."""
    src = ffmpeg.input(str(video_path))
    streams = [src["v:0"]]
    inputs = [ffmpeg.input(t.path)["a:0"] for t in tracks]
    streams += inputs
    metadata: dict[str, str] = {}
    all_tracks = list(tracks)
    if keep_original_audio:
        streams.append(src["a:0"])
        all_tracks.append(AudioTrack(str(video_path), original_language or "und", "Original"))
    for i, t in enumerate(all_tracks):
        metadata[f"metadata:s:a:{i}"] = f"language={ISO639_2.get(t.language, t.language)}"
        metadata[f"disposition:a:{i}"] = "default" if i == 0 else "0"
    args = {"c:v": "copy", "c:a": audio_codec, "b:a": audio_bitrate, "t": f"{duration_s:.6f}",
            "movflags": "+faststart", "map_metadata": "-1", "f": "mp4"}
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.part")
    out = ffmpeg.output(*streams, str(tmp), **args, **metadata)
    # Titles go through -metadata:s:a:N title=..., which needs a second key per stream.
    title_args = []
    for i, t in enumerate(all_tracks):
        title_args += [f"-metadata:s:a:{i}", f"title={t.title}"]
    run_ffmpeg(out.global_args(*title_args), f"muxing {out_path.name}")
    os.replace(tmp, out_path)
