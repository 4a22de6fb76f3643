"""Final mix: dub on top of the background, the background ducked under the dub, then EBU R128 (one gain,
and a true-peak limiter only where the gain would push peaks over the ceiling)."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np
import pyloudnorm
import soundfile as sf
from scipy.signal import lfilter

from .media import run_ffmpeg


@dataclass(frozen=True)
class MixSettings:
    """Ducking starts from the seeds' threshold (-30 dB) and ratio (8). Release 800 ms bridges the
    gaps between words, so the bed stays down through a line instead of swelling between words
    (benchmarks/mix_eval.py on the dev composite: duck depth 10.3 dB vs 9.1 dB at 400 ms, lower
    gain variance under speech)."""
    target_lufs: float = -16.0
    # the limiter's ceiling, 0.5 dB under the checks' -1 dBTP: headroom for the resampling back to
    # 48 kHz and the 24-bit rounding after it
    true_peak_db: float = -1.5
    limiter_attack_ms: float = 5.0
    limiter_release_ms: float = 50.0
    duck_threshold_db: float = -30.0
    duck_ratio: float = 8.0
    duck_attack_ms: float = 30.0
    duck_release_ms: float = 800.0
    background_gain_db: float = 0.0
    sample_rate: int = 48000

    @property
    def version(self) -> str:
        return (f"duck{self.duck_threshold_db:g}dB-r{self.duck_ratio:g}-a{self.duck_attack_ms:g}"
                f"-rel{self.duck_release_ms:g}+gain{self.target_lufs:g}+tplimit{self.true_peak_db:g}"
                f"-a{self.limiter_attack_ms:g}-rel{self.limiter_release_ms:g}")


def place_clips(clips: list[tuple[float, np.ndarray]], duration_s: float, sample_rate: int) -> np.ndarray:
    """A mono timeline of exactly ``duration_s`` with each (start_s, samples) clip added at its start."""
    n = int(round(duration_s * sample_rate))
    track = np.zeros(n, np.float32)
    for start, samples in clips:
        i = max(0, int(round(start * sample_rate)))
        seg = np.asarray(samples, np.float32)[: max(0, n - i)]
        track[i:i + len(seg)] += seg
    return track


class AudioFile:
    """A read-only, array-like view of a sound file: ``len()``, ``shape``, ``ndim`` and ``[a:b]``
    slices read only the frames asked for (float32, mono as the channel mean, like ``read_audio``),
    so the measurements below never hold a whole track: memory stays flat in the track's length."""

    def __init__(self, path: str | os.PathLike, mono: bool = False):
        info = sf.info(str(path))
        self.path, self.mono = str(path), mono
        self.sample_rate, self.channels, self.frames = int(info.samplerate), int(info.channels), int(info.frames)

    def __len__(self) -> int:
        return self.frames

    @property
    def ndim(self) -> int:
        return 1 if self.mono else 2

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.frames,) if self.mono else (self.frames, self.channels)

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("AudioFile supports contiguous [a:b] slices only")
        start, stop, _ = key.indices(self.frames)
        with sf.SoundFile(self.path) as f:
            f.seek(start)
            data = f.read(max(0, stop - start), dtype="float32", always_2d=True)
        return data.mean(axis=1) if self.mono else data


class PlacedTrack:
    """``place_clips`` of sound files as a lazy view (same samples: clips added in order in float32):
    a slice reads only the clips it overlaps, so the dub timeline of a long video is never held whole.
    ``clips``: (start_s, path) of mono-mixed clips, all at one rate (``sample_rate`` when none)."""

    ndim = 1

    def __init__(self, clips: list[tuple[float, str | os.PathLike]], duration_s: float, sample_rate: int = 24000):
        files = [AudioFile(path, mono=True) for _, path in clips]
        rates = {f.sample_rate for f in files}
        if len(rates) > 1:
            raise ValueError(f"clips at several sample rates: {sorted(rates)}")
        self.sample_rate = rates.pop() if rates else int(sample_rate)
        self.frames = int(round(duration_s * self.sample_rate))
        self.clips = [(max(0, int(round(start * self.sample_rate))), f) for (start, _), f in zip(clips, files)]
        self.longest = max((len(f) for _, f in self.clips), default=0)

    def __len__(self) -> int:
        return self.frames

    @property
    def shape(self) -> tuple[int]:
        return (self.frames,)

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("PlacedTrack supports contiguous [a:b] slices only")
        start, stop, _ = key.indices(self.frames)
        stop = max(start, stop)
        out = np.zeros(stop - start, np.float32)
        for i, clip in self.clips:
            if i >= stop or i + self.longest <= start:
                continue
            a, b = max(start, i), min(stop, i + len(clip), self.frames)
            if b > a:
                out[a - start:b - start] += clip[a - i:b - i]
        return out


def write_audio_blocks(dest: str | os.PathLike, source, sample_rate: int, subtype: str,
                       block: int = 1 << 20) -> None:
    """``write_audio`` of an array or a view (AudioFile, PlacedTrack) ``block`` frames at a time: the
    same file, without the whole float32 track in memory; atomic like ``write_audio``."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.part")
    channels = 1 if source.ndim == 1 else source.shape[1]
    with sf.SoundFile(str(tmp), "w", int(sample_rate), channels, subtype=subtype, format="WAV") as out:
        for a in range(0, len(source), block):
            out.write(np.asarray(source[a:a + block], np.float32))
    os.replace(tmp, dest)


def copy_audio(src: str | os.PathLike, dest: str | os.PathLike, subtype: str, block: int = 1 << 20) -> None:
    """Re-encode a WAV ``block`` frames at a time (the samples ``write_audio`` would write from the
    whole float32 track)."""
    source = AudioFile(src)
    write_audio_blocks(dest, source, source.sample_rate, subtype, block)


def integrated_loudness(samples, sample_rate: int, block: int = 1 << 20) -> float:
    """BS.1770-4 integrated loudness exactly as ``pyloudnorm.Meter.integrated_loudness`` (K-weighting,
    400 ms blocks every 100 ms, -70 LUFS and -10 LU gates), computed ``block`` samples at a time:
    the filter state carries across blocks and each gating block's energy comes from running sums
    at the block edges, so only one block is ever in float64 (pyloudnorm copies the whole track).
    ``samples``: an array (n,) / (n, ch) or an :class:`AudioFile`."""
    meter = pyloudnorm.Meter(sample_rate)
    n = len(samples)
    t_g, step = meter.block_size, 1.0 - meter.overlap
    if n / sample_rate <= t_g:      # pyloudnorm's own error for too-short input
        return float(meter.integrated_loudness(np.asarray(samples[0:n], np.float64)))
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    # the gating-block edges, computed with pyloudnorm's float expressions so they fall on the same samples
    num_blocks = int(np.round((n / sample_rate - t_g) / (t_g * step))) + 1
    j = np.arange(num_blocks)
    lo = np.minimum(n, (t_g * (j * step) * sample_rate).astype(np.int64))
    hi = np.minimum(n, (t_g * (j * step + 1) * sample_rate).astype(np.int64))
    edges = np.unique(np.concatenate([lo, hi]))
    cum = np.zeros((len(edges), channels))          # sum of filtered squares before each edge
    stages = [(f.b, f.a, f.passband_gain) for f in meter._filters.values()]
    state = [[np.zeros(2) for _ in range(channels)] for _ in stages]
    running = np.zeros(channels)
    for a in range(0, n, block):
        b = min(n, a + block)
        x = np.array(samples[a:b], np.float64).reshape(b - a, channels)     # a copy: filtered in place
        for k, (fb, fa, gain) in enumerate(stages):
            for c in range(channels):
                y, state[k][c] = lfilter(fb, fa, x[:, c], zi=state[k][c])
                x[:, c] = gain * y
        cs = np.cumsum(np.square(x), axis=0)
        inside = (edges > a) & (edges <= b)
        cum[inside] = running + cs[edges[inside] - a - 1]
        running = running + cs[-1]
    z = (cum[np.searchsorted(edges, hi)] - cum[np.searchsorted(edges, lo)]).T / (t_g * sample_rate)
    weights = np.array([1.0, 1.0, 1.0, 1.41, 1.41][:channels])
    with np.errstate(divide="ignore", invalid="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(weights @ z)
        gated = block_lufs >= -70.0
        # no block above -70 LUFS: pyloudnorm's relative gate is NaN, which then gates every block out
        rel = -0.691 + 10.0 * np.log10(weights @ z[:, gated].mean(axis=1)) - 10.0 if gated.any() else np.nan
        gated = (block_lufs > rel) & (block_lufs > -70.0)
        mean = np.nan_to_num(z[:, gated].mean(axis=1)) if gated.any() else np.zeros(channels)
        return float(-0.691 + 10.0 * np.log10(weights @ mean))


def true_peak_db(samples, oversample: int = 4, block: int = 1 << 20) -> float:
    """True peak estimate (BS.1770: 4x oversampled peak), in dBTP.

    Oversampled a block at a time, each with a margin of input on both sides longer than the
    interpolation filter, so the result equals oversampling the whole track at once while memory
    stays that of one block (a whole hour at 4x in float64 would be 5.5 GB per channel)."""
    from scipy.signal import resample_poly
    x = samples if isinstance(samples, (AudioFile, PlacedTrack)) else np.asarray(samples)
    n, margin = len(x), 64          # resample_poly's filter spans 10 input samples each side
    peak = 0.0
    for start in range(0, n, block):
        lo, hi = max(0, start - margin), min(n, start + block + margin)
        seg = np.asarray(x[lo:hi])
        seg = seg if seg.ndim == 2 else seg[:, None]
        for c in range(seg.shape[1]):
            y = resample_poly(np.asarray(seg[:, c], np.float64), oversample, 1)
            inner = y[(start - lo) * oversample:(min(n, start + block) - lo) * oversample]
            peak = max(peak, float(np.max(np.abs(inner))))
    return 20 * np.log10(max(peak, 1e-12))


def loudness_over_time(samples, sample_rate: int, window_s: float = 3.0,
                       hop_s: float = 1.0, group: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Loudness of each ``window_s`` window (BS.1770 via pyloudnorm, 3 s like EBU short-term) every ``hop_s``.

    Returns (window centre times in s, LUFS); a silent window is -inf. ``samples``: an array or an
    :class:`AudioFile` (read ``group`` windows at a time).
    """
    import warnings
    x = samples if isinstance(samples, (AudioFile, PlacedTrack)) else np.asarray(samples)
    n = len(x)
    win, hop = int(window_s * sample_rate), int(hop_s * sample_rate)
    meter = pyloudnorm.Meter(sample_rate)
    starts = range(0, max(1, n - win + 1), hop)
    times, values = [], []
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore")   # pyloudnorm warns on clipping-free silent windows
        # windows read `group` at a time (one span in float64), each measured exactly as before
        for g in range(0, len(starts), group):
            first, last = starts[g], starts[min(len(starts), g + group) - 1]
            span = np.asarray(x[first:min(n, last + win)], np.float64)
            for i in starts[g:g + group]:
                seg = span[i - first:i - first + win]
                values.append(float(meter.integrated_loudness(seg)))
                times.append((i + len(seg) / 2) / sample_rate)
    return np.asarray(times), np.asarray(values)


def voice_leakage_db(final_mix: np.ndarray, mix_rate: int, original_voice: np.ndarray, voice_rate: int,
                     dub: np.ndarray, dub_rate: int, frame_s: float = 0.1, block_frames: int = 600) -> dict:
    """How loud the original voice still is in ``final_mix``, relative to the dub speech in it.

    Both references are resampled to the mix rate; in every ``frame_s`` frame the mix (mono) is
    projected on each reference (least-squares gain per frame, so ducking and loudnorm gains are
    followed), and the projected energies are summed over the frames where the original voice is
    active (frame energy within 30 dB of its loudest frame). ``leakage_db`` = 10 log10(E_voice /
    E_dub). Uncorrelated material projects with energy ~1/N of the frame's, which puts the floor of
    the method near -30 dB here (see ``floor_db``: the same projection of the mix minus both parts).

    Computed ``block_frames`` frames at a time (references resampled per block with a filter
    margin, so the sums equal the whole-track computation): memory does not grow with the length.
    """
    n = int(frame_s * mix_rate)
    xx, ev, ed, xv, xd = leakage_frame_sums(final_mix, mix_rate, original_voice, voice_rate, dub, dub_rate, n,
                                           block_frames)
    frames = len(xx)
    active = ev > ev.max() * 10 ** (-30 / 10) if frames else np.zeros(0, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        e_voice = np.where(ev > 0, xv ** 2 / ev, 0.0)
        e_dub = np.where(ed > 0, xd ** 2 / ed, 0.0)
    leak, dub_e = float(e_voice[active].sum()), float(e_dub[active].sum())
    # The floor: what an unrelated signal with the mix's energy would project onto the voice.
    floor = float((xx[active] / n).sum())
    db = lambda a, b: round(10 * np.log10(a / b), 2) if a > 0 and b > 0 else float("-inf")
    return {"leakage_db": db(leak, dub_e), "floor_db": db(floor, dub_e),
            "active_s": round(float(active.sum()) * frame_s, 1)}


def leakage_frame_sums(final_mix: np.ndarray, mix_rate: int, original_voice: np.ndarray, voice_rate: int,
                       dub: np.ndarray, dub_rate: int, n: int, block_frames: int = 600) -> np.ndarray:
    """Per ``n``-sample frame of the mix (mono): |x|^2, |v|^2, |d|^2, x.v, x.d with the references
    resampled to the mix rate; ``block_frames`` frames at a time."""
    frames = len(final_mix) // n
    sums = np.zeros((5, frames))
    refs = [(sig if isinstance(sig, (AudioFile, PlacedTrack)) else np.asarray(sig), int(rate))
            for sig, rate in ((original_voice, voice_rate), (dub, dub_rate))]
    for f0 in range(0, frames, block_frames):
        f1 = min(frames, f0 + block_frames)
        a, b = f0 * n, f1 * n
        x = np.asarray(final_mix[a:b], np.float64)
        x = x.mean(axis=1) if x.ndim == 2 else x
        v, d = (_resampled_span(sig, rate, mix_rate, a, b) for sig, rate in refs)
        shape = (f1 - f0, n)
        X, V, D = x.reshape(shape), v.reshape(shape), d.reshape(shape)
        sums[:, f0:f1] = [(X * X).sum(1), (V * V).sum(1), (D * D).sum(1), (X * V).sum(1), (X * D).sum(1)]
    return sums


def _resampled_span(sig: np.ndarray, rate: int, out_rate: int, a: int, b: int) -> np.ndarray:
    """Samples ``a:b`` (at ``out_rate``) of mono ``sig`` resampled from ``rate``, zero past its end;
    equal to slicing the whole signal resampled at once (the block is resampled with a margin of
    input on both sides longer than the filter, from a position the rate ratio maps exactly)."""
    from scipy.signal import resample_poly
    g = int(np.gcd(rate, out_rate))
    up, down = out_rate // g, rate // g
    # output position q*up maps to input position q*down: start the block there
    q0, q1 = a // up, -(-b // up)
    margin = 64 * down                      # input samples, a multiple of down; the filter spans ~10*max(up, down)/up
    lo = max(0, q0 * down - margin)
    hi = min(len(sig), q1 * down + margin)
    if lo >= hi:
        return np.zeros(b - a)
    seg = np.asarray(sig[lo:hi], np.float64)
    seg = seg.mean(axis=1) if seg.ndim == 2 else seg
    y = seg if up == down == 1 else resample_poly(seg, up, down)
    first = lo * up // down                 # output index of y[0]
    out = np.zeros(b - a)
    i0, i1 = max(a, first), min(b, first + len(y), int(np.ceil(len(sig) * up / down)))
    if i1 > i0:
        out[i0 - a:i1 - a] = y[i0 - first:i1 - first]
    return out


def _gain_and_limit(src: Path, dest: Path, gain_db: float, n: int, s: MixSettings, limit: bool) -> None:
    """``src`` times one gain, into ``dest`` (24-bit WAV) of exactly ``n`` samples; with ``limit``, then ffmpeg's
    look-ahead limiter at 4x the rate (192 kHz: its sample peaks are the true peaks that BS.1770
    measures) holds the peaks under ``s.true_peak_db``. ``latency`` keeps the output aligned."""
    chain = ffmpeg.input(str(src)).audio.filter("volume", f"{gain_db:.4f}dB")
    if limit:
        chain = (chain.filter("aresample", 4 * s.sample_rate)
                 .filter("alimiter", limit=10 ** (s.true_peak_db / 20), attack=s.limiter_attack_ms,
                         release=s.limiter_release_ms, level=0, latency=1)
                 .filter("aresample", s.sample_rate))
    # a mask-less WAV loses its layout in the chain; apad then cannot negotiate one
    chain = chain.filter("aformat", channel_layouts="stereo").filter("apad", whole_len=n).filter("atrim", end_sample=n)
    run_ffmpeg(ffmpeg.output(chain, str(dest), acodec="pcm_s24le", ar=s.sample_rate), "loudness normalisation")


def mix(background_path: str | os.PathLike, dub: np.ndarray, dub_rate: int, duration_s: float,
        out_path: str | os.PathLike, settings: MixSettings = MixSettings()) -> dict:
    """Write the final stereo mix of exactly ``duration_s``; return measured figures."""
    s = settings
    with tempfile.TemporaryDirectory(prefix="octavia-mix-") as tmp:
        tmp = Path(tmp)
        dub_path = tmp / "dub.wav"
        write_audio_blocks(dub_path, dub, dub_rate, "PCM_16")   # dub: an array or a PlacedTrack
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

        # EBU R128 by one gain (the mix keeps its dynamics), measured as the checks measure it
        # (pyloudnorm's BS.1770 and 4x-oversampled true peak, a block at a time)
        mixed_file = AudioFile(ducked)
        input_lufs = integrated_loudness(mixed_file, mixed_file.sample_rate)
        if not math.isfinite(input_lufs):
            # A silent mix (silent soundtrack, nothing dubbed) has no loudness to normalise: silence
            # stays silence.
            copy_audio(ducked, out_path, "PCM_24")
            sr = mixed_file.sample_rate
            return {"integrated_lufs": -70.0, "true_peak_dbtp": -70.0, "samples": len(mixed_file), "sample_rate": sr,
                    "duration_s": len(mixed_file) / sr, "target_lufs": s.target_lufs,
                    "input_lufs_before_norm": -70.0, "normalization_type": "none: silent mix"}
        gain = s.target_lufs - input_lufs
        limit = true_peak_db(mixed_file) + gain > s.true_peak_db     # the gain alone would pass the ceiling
        normalised = tmp / "normalised.wav"          # written as delivered (24-bit), measured as delivered
        lufs = None
        for attempt in range(3):
            _gain_and_limit(ducked, normalised, gain, n, s, limit)
            if not limit:
                break
            # the limiter takes a little loudness off the peaks: give it back, and limit again
            lufs = integrated_loudness(AudioFile(normalised), s.sample_rate)
            if abs(s.target_lufs - lufs) <= 0.1 or attempt == 2:
                break
            gain += s.target_lufs - lufs
        final = AudioFile(normalised)
        sr = final.sample_rate
        if lufs is None:
            lufs = integrated_loudness(final, sr)
        tp = true_peak_db(final)
        shutil.copyfile(normalised, out_path)
    return {"integrated_lufs": round(lufs, 2), "true_peak_dbtp": round(tp, 2), "samples": len(final),
            "sample_rate": sr, "duration_s": len(final) / sr, "target_lufs": s.target_lufs,
            "input_lufs_before_norm": round(input_lufs, 2), "gain_db": round(gain, 2),
            "normalization_type": "gain+true-peak limiter" if limit else "gain"}
