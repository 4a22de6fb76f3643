"""Production separation: Demucs v4 Hybrid Transformer (``htdemucs``, ``htdemucs_ft``, ``htdemucs_6s``).

Weights come only from the model directory (``$OCTAVIA_MODEL_DIR/<name>/``, a demucs "local repo":
``<name>.yaml`` + ``<sig>-<checksum>.th``; ``octavia models fetch htdemucs_ft`` fills it). Needs
``demucs==4.1.0`` (MIT), which installs beside torch without torchaudio.

Long videos: the soundtrack is read from disk in windows of ``window_s`` seconds joined with a
linear cross-fade, and each window goes through ``demucs.apply.apply_model`` (its own segment +
overlap split), so memory stays flat whatever the duration. Background = sum of the non-vocal stems.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from . import media
from .model_dir import MODELS, ModelMissing, require, weights_fingerprint
from .separation import Separator, separate_in_windows

DEMUCS_INSTALL_HINT = "pip install demucs==4.1.0"


class DemucsSeparator(Separator):
    """Demucs vocals / background on CUDA (fp16 autocast where it gives finite output) or CPU.

    ``shifts`` is 0 by default so that output is deterministic (demucs' random time shifts trade
    ~0.2 dB SDR for run-to-run differences).
    """

    def __init__(self, name: str = "htdemucs_ft", window_s: float = 60.0, crossfade_s: float = 2.0,
                 overlap: float = 0.25, shifts: int = 0, device: str | None = None, half: bool | None = None,
                 segment: float | None = None):
        if not 0 <= crossfade_s < window_s / 2:
            raise ValueError("crossfade_s must be >= 0 and shorter than half of window_s")
        self.name = name
        self.window_s, self.crossfade_s = float(window_s), float(crossfade_s)
        self.overlap, self.shifts, self.segment = float(overlap), int(shifts), segment
        self._device, self._half = device, half
        # Version without loading: checkpoint names carry their sha256 prefix; sizes guard the rest.
        self.version = (f"demucs-{name}@{weights_fingerprint(name, ('*.th', '*.yaml'))}"
                        f"+win{self.window_s:g}s-xf{self.crossfade_s:g}s-ov{self.overlap:g}-sh{self.shifts}"
                        + (f"-seg{segment:g}" if segment else ""))
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                # Registry models: every checkpoint named; others (own training): the bag file.
                root = require(self.name, None if self.name in MODELS else [f"{self.name}.yaml"])
                if not any(root.glob("*.th")):
                    raise ModelMissing(f"model {self.name!r}: no <sig>-<checksum>.th checkpoint in {root}")
                try:
                    from demucs.pretrained import get_model
                except ImportError as e:
                    raise RuntimeError(f"demucs is not installed ({e}): {DEMUCS_INSTALL_HINT}") from None
                # repo= keeps demucs off the network: LocalRepo only, checksums verified from names.
                self._model = get_model(self.name, repo=root)
                self._model.eval()
            return self._model

    def device(self) -> str:
        import torch
        return self._device or ("cuda" if torch.cuda.is_available() else "cpu")

    def separate(self, audio_path: str | os.PathLike, vocals_path: str | os.PathLike,
                 background_path: str | os.PathLike) -> dict:
        audio_path, vocals_path, background_path = Path(audio_path), Path(vocals_path), Path(background_path)
        if not audio_path.is_file():
            raise media.MediaError(f"{audio_path.name}: file not found")
        started = time.perf_counter()
        model = self._load()
        rate, channels = int(model.samplerate), int(model.audio_channels)
        if "vocals" not in model.sources:
            raise ValueError(f"{self.name} has no 'vocals' source (sources: {model.sources})")
        with tempfile.TemporaryDirectory(prefix=".octavia-demucs-", dir=vocals_path.parent) as tmp:
            source = audio_path
            if not self._is_ready(audio_path, rate, channels):
                source = Path(tmp) / "input.wav"
                media.resample(audio_path, source, rate, channels)
            stats = self._separate_windows(model, source, vocals_path, background_path)
        seconds = time.perf_counter() - started
        audio_seconds = stats["frames"] / rate
        return {
            "engine": f"demucs {self.name} (demucs 4.1.0, local weights)",
            "version": self.version,
            "sample_rate": rate,
            "channels": channels,
            "device": stats["device"],
            "fp16": stats["fp16"],
            "audio_seconds": round(audio_seconds, 3),
            "seconds": round(seconds, 3),
            "rtf": round(seconds / audio_seconds, 4) if audio_seconds else None,
            "windows": stats["windows"],
            "clipped_samples": stats["clipped"],
        }

    @staticmethod
    def _is_ready(path: Path, rate: int, channels: int) -> bool:
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError):
            return False
        return info.samplerate == rate and info.channels == channels

    @staticmethod
    def _stats(reader: sf.SoundFile, block: int) -> tuple[float, float]:
        """Mean and std of the mono mix over the whole file, streamed (demucs normalises by them)."""
        n, s, s2 = 0, 0.0, 0.0
        reader.seek(0)
        while True:
            x = reader.read(block, dtype="float32", always_2d=True)
            if not len(x):
                break
            m = x.mean(axis=1, dtype=np.float64)
            n, s, s2 = n + len(m), s + float(m.sum()), s2 + float((m * m).sum())
        mean = s / max(n, 1)
        std = max((s2 / max(n, 1) - mean * mean) ** 0.5, 1e-8)
        return mean, std

    def _apply(self, model, block: np.ndarray, device: str) -> tuple[np.ndarray, bool]:
        """(frames, ch) float32 -> ((sources, frames, ch), fp16 used), with demucs' own segment split."""
        import torch
        from demucs.apply import apply_model
        mix = torch.from_numpy(np.ascontiguousarray(block.T))[None]
        half = self._half if self._half is not None else device.startswith("cuda")
        with torch.inference_mode():
            if half and device.startswith("cuda"):
                with torch.autocast("cuda", dtype=torch.float16):
                    out = apply_model(model, mix, shifts=self.shifts, split=True, overlap=self.overlap,
                                      device=device, segment=self.segment, progress=False)
                out = out.float()
                if torch.isfinite(out).all():
                    return out[0].cpu().numpy().transpose(0, 2, 1), True
                self._half = False                # fp16 overflowed on this input: stay in fp32
            out = apply_model(model, mix, shifts=self.shifts, split=True, overlap=self.overlap,
                              device=device, segment=self.segment, progress=False)
        return out[0].float().cpu().numpy().transpose(0, 2, 1), False

    def _separate_windows(self, model, source: Path, vocals_path: Path, background_path: Path) -> dict:
        rate = int(model.samplerate)
        vocal_index = list(model.sources).index("vocals")
        window = max(1, round(self.window_s * rate))
        device = self.device()
        with sf.SoundFile(str(source)) as reader:
            channels = reader.channels
            mean, std = self._stats(reader, window)
        used_half = False

        def separate_block(block: np.ndarray) -> dict[str, np.ndarray]:
            nonlocal used_half
            if not len(block):
                return {"vocals": np.zeros((0, channels), np.float32), "background": np.zeros((0, channels), np.float32)}
            est, half = self._apply(model, (block - mean) / std, device)
            used_half |= half
            est = est * std                       # the mix's DC offset goes to the background
            return {"vocals": est[vocal_index], "background": est.sum(axis=0) - est[vocal_index] + mean}

        stats = separate_in_windows(source, {"vocals": vocals_path, "background": background_path}, rate,
                                    window=window, overlap=round(self.crossfade_s * rate),
                                    separate_block=separate_block)
        return {**stats, "device": device, "fp16": used_half}
