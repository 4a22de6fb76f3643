"""ffprobe/ffmpeg helpers (through ffmpeg-python) shared by the stages."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import ffmpeg
import numpy as np
import soundfile as sf


class MediaError(ValueError):
    """The input is not usable media; the message says why in one line."""


@dataclass
class StreamInfo:
    index: int
    codec_type: str
    codec_name: str
    duration: float | None
    channels: int | None = None
    sample_rate: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frames: int | None = None
    language: str | None = None


@dataclass
class ProbeResult:
    format_name: str
    duration: float
    size: int
    streams: list[StreamInfo] = field(default_factory=list)

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.codec_type == "video"), None)

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.codec_type == "audio"), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeResult":
        return cls(**{**d, "streams": [StreamInfo(**s) for s in d["streams"]]})


def _float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def probe(path: str | os.PathLike) -> ProbeResult:
    """ffprobe facts; raises MediaError with a one-line reason for empty or non-media files."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path.name}: file not found")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{path.name}: file is empty (0 bytes)")
    try:
        info = ffmpeg.probe(str(path), count_packets=None)
    except ffmpeg.Error as e:
        last = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        # ffprobe names the full local path (a temp download on S3): keep only the file name
        reason = (last[-1] if last else "ffprobe failed").replace(f"{path}: ", "")
        raise MediaError(f"{path.name}: not a readable media file ({reason})") from None
    fmt = info.get("format", {})
    streams = []
    for s in info.get("streams", []):
        fps = None
        if s.get("codec_type") == "video" and s.get("avg_frame_rate") not in (None, "0/0"):
            fps = float(Fraction(s["avg_frame_rate"]))
        frames = s.get("nb_frames") or s.get("nb_read_packets")
        streams.append(StreamInfo(
            index=int(s["index"]), codec_type=s.get("codec_type", "unknown"), codec_name=s.get("codec_name", "unknown"),
            duration=_float(s.get("duration")), channels=s.get("channels"),
            sample_rate=int(s["sample_rate"]) if s.get("sample_rate") else None,
            width=s.get("width"), height=s.get("height"), fps=fps,
            frames=int(frames) if frames not in (None, "N/A") else None,
            language=(s.get("tags") or {}).get("language"),
        ))
    duration = _float(fmt.get("duration")) or max((s.duration or 0.0 for s in streams), default=0.0)
    if not streams:
        raise MediaError(f"{path.name}: no audio or video streams")
    return ProbeResult(format_name=fmt.get("format_name", "unknown"), duration=duration, size=size, streams=streams)


def run_ffmpeg(stream, what: str) -> None:
    """Run an ffmpeg-python graph; turn failures into a MediaError naming the step."""
    try:
        stream.overwrite_output().global_args("-nostdin", "-hide_banner", "-loglevel", "error").run(
            capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as e:
        msg = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        raise MediaError(f"{what} failed: {msg[-1] if msg else 'ffmpeg error'}") from None


def extract_audio(src: str | os.PathLike, dest: str | os.PathLike, sample_rate: int, channels: int,
                  stream_index: int | None = None) -> None:
    """Decode the (first) audio stream to 16-bit PCM WAV at the given rate and channel count."""
    inp = ffmpeg.input(str(src))
    a = inp[f"{stream_index}"] if stream_index is not None else inp.audio
    run_ffmpeg(ffmpeg.output(a, str(dest), acodec="pcm_s16le", ac=channels, ar=sample_rate, vn=None),
               f"decoding audio of {Path(src).name}")


def resample(src: str | os.PathLike, dest: str | os.PathLike, sample_rate: int, channels: int) -> None:
    run_ffmpeg(ffmpeg.output(ffmpeg.input(str(src)).audio, str(dest), acodec="pcm_s16le", ac=channels,
                             ar=sample_rate), f"resampling {Path(src).name}")



@contextmanager
def at_rate(path: Path, sample_rate: int, ready: bool | None = None) -> Iterator[Path]:
    """``path`` itself when libsndfile reads it at ``sample_rate`` (or ``ready`` says it is fit),
    else a temporary mono copy at that rate, removed afterwards."""
    if ready is None:
        try:
            ready = sf.info(str(path)).samplerate == sample_rate
        except RuntimeError:
            ready = False
    if ready:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="octavia-resampled-") as tmp:
        converted = Path(tmp) / f"audio_{sample_rate // 1000}k_mono.wav"
        resample(path, converted, sample_rate, 1)
        yield converted

def read_audio(path: str | os.PathLike, mono: bool = False) -> tuple[np.ndarray, int]:
    """float32 samples, shape (n,) when mono else (n, channels)."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if mono:
        return data.mean(axis=1), sr
    return data, sr


def write_audio(path: str | os.PathLike, data: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write WAV atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    sf.write(str(tmp), np.asarray(data, np.float32), sample_rate, subtype=subtype, format="WAV")
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False))
    os.replace(tmp, path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
