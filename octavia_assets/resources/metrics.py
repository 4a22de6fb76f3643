"""Objective quality measures shared by tests and benchmarks."""
from __future__ import annotations

import numpy as np


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019).

    Both signals are flattened (so multichannel arrays are scored jointly) and mean-removed; they must
    have the same shape and sample rate. Returns +inf for a perfect (rescaled) match and -inf when the
    estimate is orthogonal to the reference; raises ValueError for a silent reference.
    """
    est = np.asarray(estimate, np.float64).ravel()
    ref = np.asarray(reference, np.float64).ravel()
    if est.shape != ref.shape:
        raise ValueError(f"shape mismatch: estimate {np.shape(estimate)} vs reference {np.shape(reference)}")
    est = est - est.mean()
    ref = ref - ref.mean()
    ref_energy = float(ref @ ref)
    if ref_energy == 0.0:
        raise ValueError("the reference is silent")
    target = (float(est @ ref) / ref_energy) * ref
    target_energy = float(target @ target)
    residual = est - target
    noise_energy = float(residual @ residual)
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(target_energy / noise_energy)) if noise_energy else float("inf")


# --------------------------------------------------------------------------------------------------
# Word error rate (jiwer) with the usual normalisation: case, punctuation, apostrophes, spacing.
# --------------------------------------------------------------------------------------------------

def normalise_text(text: str) -> str:
    """Lower case, punctuation and apostrophes removed, single spaces ("Don't stop." -> "dont stop")."""
    import re

    text = text.lower().replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (total edits / total reference words) after :func:`normalise_text`, by jiwer."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalise_text(r) for r in references]
    hyps = [normalise_text(h) for h in hypotheses]
    kept = [(r, h) for r, h in zip(refs, hyps) if r]
    if not kept:
        raise ValueError("no reference words to score")
    return float(jiwer.wer([r for r, _ in kept], [h for _, h in kept]))


# --------------------------------------------------------------------------------------------------
# Diarization error rate: pyannote.metrics when installed (the `eval` extra), else our frame-based one.
# --------------------------------------------------------------------------------------------------

def diarization_error_rate(reference, hypothesis, collar: float = 0.0,
                           scored: tuple[float, float] | None = None) -> tuple[float, str]:
    """(DER, scorer) for lists of SpeakerTurn; ``collar`` as in pyannote.metrics (total width
    around each reference boundary, i.e. collar/2 either side), overlapped speech scored.

    ``scored``: the (start, end) region to score (the UEM); default: the union of both extents.
    The scorer is "pyannote.metrics X.Y" or "octavia der() (frame-based, 10 ms)".
    """
    try:
        from importlib.metadata import version

        from pyannote.core import Annotation, Segment, Timeline
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        from .diarization import der_breakdown

        ref = _clip_turns(reference, scored)
        hyp = _clip_turns(hypothesis, scored)
        return der_breakdown(ref, hyp, collar=collar)["der"], "octavia der() (frame-based, 10 ms)"

    def annotation(turns) -> "Annotation":
        a = Annotation()
        for i, t in enumerate(turns):
            if t.end > t.start:
                a[Segment(float(t.start), float(t.end)), i] = t.speaker
        return a

    ref, hyp = annotation(reference), annotation(hypothesis)
    if scored is None:
        ends = [t.end for t in list(reference) + list(hypothesis)] or [0.0]
        scored = (0.0, max(ends))
    uem = Timeline([Segment(*scored)])
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    return float(metric(ref, hyp, uem=uem)), f"pyannote.metrics {version('pyannote.metrics')}"


def _clip_turns(turns, scored):
    if scored is None:
        return list(turns)
    from .types import SpeakerTurn

    a, b = scored
    return [SpeakerTurn(start=max(a, t.start), end=min(b, t.end), speaker=t.speaker)
            for t in turns if min(b, t.end) > max(a, t.start)]
