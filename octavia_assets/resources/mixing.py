"""Final mix: dub on top of the background, the background ducked under the dub, then EBU R128."""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np
import pyloudnorm

from .media import MediaError, read_audio, run_ffmpeg, write_audio


@dataclass(frozen=True)
class MixSettings:
    """Ducking starts from the seeds' threshold (-30 dB) and ratio (8); attack/release are slow
    enough that the music does not audibly pump between words."""
    target_lufs: float = -16.0
    true_peak_db: float = -1.0
    loudness_range: float = 11.0
    duck_threshold_db: float = -30.0
    duck_ratio: float = 8.0
    duck_attack_ms: float = 30.0
    duck_release_ms: float = 400.0
    background_gain_db: float = 0.0
    sample_rate: int = 48000

    @property
    def version(self) -> str:
        return (f"duck{self.duck_threshold_db:g}dB-r{self.duck_ratio:g}-a{self.duck_attack_ms:g}"
                f"-rel{self.duck_release_ms:g}+loudnorm{self.target_lufs:g}/{self.true_peak_db:g}")


def place_clips(clips: list[tuple[float, np.ndarray]], duration_s: float, sample_rate: int) -> np.ndarray:
    """A mono timeline of exactly ``duration_s`` with each (start_s, samples) clip added at its start."""
    n = int(round(duration_s * sample_rate))
    track = np.zeros(n, np.float32)
    for start, samples in clips:
        i = max(0, int(round(start * sample_rate)))
        seg = np.asarray(samples, np.float32)[: max(0, n - i)]
        track[i:i + len(seg)] += seg
    return track


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    meter = pyloudnorm.Meter(sample_rate)
    return float(meter.integrated_loudness(np.asarray(samples, np.float64)))


def true_peak_db(samples: np.ndarray, oversample: int = 4) -> float:
    """True peak estimate (BS.1770: 4x oversampled peak), in dBTP."""
    from scipy.signal import resample_poly
    x = np.asarray(samples, np.float64)
    x = x if x.ndim == 2 else x[:, None]
    peak = max(float(np.max(np.abs(resample_poly(x[:, c], oversample, 1)))) for c in range(x.shape[1]))
    return 20 * np.log10(max(peak, 1e-12))


def _loudnorm_measure(path: Path, s: MixSettings) -> dict:
    out = (ffmpeg.input(str(path)).filter("loudnorm", I=s.target_lufs, TP=s.true_peak_db, LRA=s.loudness_range,
                                          print_format="json")
           .output("-", format="null"))
    try:
        _, err = out.global_args("-nostdin", "-hide_banner").run(capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as e:
        raise MediaError(f"loudness measurement failed: {(e.stderr or b'').decode(errors='replace')[-300:]}") from None
    match = re.search(r"\{[^{}]*\"input_i\"[^{}]*\}", err.decode(errors="replace"), re.S)
    if not match:
        raise MediaError("loudness measurement failed: ffmpeg printed no loudnorm summary")
    return json.loads(match.group(0))


def mix(background_path: str | os.PathLike, dub: np.ndarray, dub_rate: int, duration_s: float,
        out_path: str | os.PathLike, settings: MixSettings = MixSettings()) -> dict:
    """Write the final stereo mix of exactly ``duration_s``; return measured figures."""
    s = settings
    with tempfile.TemporaryDirectory(prefix="octavia-mix-") as tmp:
        tmp = Path(tmp)
        dub_path = tmp / "dub.wav"
        write_audio(dub_path, dub, dub_rate)
        ducked = tmp / "ducked.wav"
        n = int(round(duration_s * s.sample_rate))
        bg = (ffmpeg.input(str(background_path)).audio
              .filter("aresample", s.sample_rate).filter("aformat", channel_layouts="stereo")
              .filter("volume", f"{s.background_gain_db}dB"))
        voice = (ffmpeg.input(str(dub_path)).audio
                 .filter("aresample", s.sample_rate).filter("aformat", channel_layouts="stereo"))
        split = voice.filter_multi_output("asplit", 2)
        voice_main, voice_key = split[0], split[1]
        bg_ducked = ffmpeg.filter([bg, voice_key], "sidechaincompress",
                                  threshold=10 ** (s.duck_threshold_db / 20), ratio=s.duck_ratio,
                                  attack=s.duck_attack_ms, release=s.duck_release_ms)
        mixed = (ffmpeg.filter([bg_ducked, voice_main], "amix", inputs=2, duration="longest", normalize=0)
                 .filter("apad", whole_len=n).filter("atrim", end_sample=n))
        run_ffmpeg(ffmpeg.output(mixed, str(ducked), acodec="pcm_f32le", ar=s.sample_rate), "ducking the background")

        measured = _loudnorm_measure(ducked, s)
        normalised = tmp / "normalised.wav"
        chain = (ffmpeg.input(str(ducked)).audio
                 .filter("loudnorm", I=s.target_lufs, TP=s.true_peak_db, LRA=s.loudness_range,
                         measured_I=measured["input_i"], measured_TP=measured["input_tp"],
                         measured_LRA=measured["input_lra"], measured_thresh=measured["input_thresh"],
                         offset=measured["target_offset"], linear="true")
                 .filter("aresample", s.sample_rate)
                 # loudnorm drops the layout of a mask-less WAV; apad then cannot negotiate one.
                 .filter("aformat", channel_layouts="stereo")
                 .filter("apad", whole_len=n).filter("atrim", end_sample=n))
        run_ffmpeg(ffmpeg.output(chain, str(normalised), acodec="pcm_f32le", ar=s.sample_rate),
                   "loudness normalisation")
        final, sr = read_audio(normalised)
        write_audio(out_path, final, sr, subtype="PCM_24")

    lufs = integrated_loudness(final, sr)
    tp = true_peak_db(final)
    return {"integrated_lufs": round(lufs, 2), "true_peak_dbtp": round(tp, 2), "samples": len(final),
            "sample_rate": sr, "duration_s": len(final) / sr, "target_lufs": s.target_lufs,
            "input_lufs_before_norm": float(measured["input_i"]), "normalization_type": measured.get("normalization_type")}
