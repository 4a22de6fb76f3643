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
