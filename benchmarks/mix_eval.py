"""Final-mix evaluation on a composite with a known dialogue stem: loudness, true peak, leakage, pumping.

Runs on a video already dubbed by `octavia dub` (its derived files in the media store), remixes the
background stem and the dub with each ducking setting given, and measures:

- integrated loudness (pyloudnorm) and true peak (4x oversampled) of the final mix;
- original-voice leakage: the final mix projected, 100 ms frame by frame, on the composite's TRUE
  dialogue stem, relative to its projection on the dub (``voice_leakage_db``), over the frames where
  the original dialogue is active; and the separation residual alone (the background stem projected
  on the true dialogue, relative to the dialogue in the source mix), before any ducking;
- ducking depth and pumping: the background's gain in the final mix (mix projected on the background
  stem per 100 ms frame), median under dub speech vs outside it, and its standard deviation inside
  dub speech (dB; high = the bed swells between words).

    DAGSTER_HOME=... .venv/bin/python benchmarks/mix_eval.py VIDEO_KEY LANG ../shared/media/composites/dev \
        [--settings attack_ms:release_ms ...] [--target -16]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from octavia_assets.dubbing import load_dub_track
from octavia_assets.resources.media import read_audio
from octavia_assets.resources.mixing import (
    MixSettings,
    integrated_loudness,
    mix,
    true_peak_db,
    voice_leakage_db,
)
from octavia_assets.resources.storage import LocalMediaStore


def _mono_at(x: np.ndarray, rate: int, to: int, n: int) -> np.ndarray:
    x = x.mean(axis=1) if x.ndim == 2 else x
    if rate != to:
        g = np.gcd(rate, to)
        x = resample_poly(x, to // g, rate // g)
    return np.pad(x, (0, max(0, n - len(x))))[:n]


def background_gain(final: np.ndarray, background: np.ndarray, dub: np.ndarray, rate: int, frame_s: float = 0.1):
    """Per-frame gain (dB) of the background stem inside the final mix, and a dub-speech mask."""
    n = int(frame_s * rate)
    f = len(final) // n
    X, B, D = (a[: f * n].reshape(f, n) for a in (final, background, dub))
    eb = (B * B).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = 20 * np.log10(np.abs((X * B).sum(1) / eb))
    loud_bg = eb > eb.max() * 1e-4
    dub_on = (D * D).sum(1) > ((D * D).sum(1).max() * 1e-3)
    return gain, loud_bg, dub_on


def separation_residual_db(background_stem: np.ndarray, dialogue: np.ndarray, rate: int, frame_s: float = 0.1) -> float:
    """Energy of the true dialogue left in the background stem (per-frame projection) vs the dialogue's own."""
    n = int(frame_s * rate)
    f = min(len(background_stem), len(dialogue)) // n
    B, V = background_stem[: f * n].reshape(f, n), dialogue[: f * n].reshape(f, n)
    ev = (V * V).sum(1)
    active = ev > ev.max() * 1e-3
    leak = ((B * V).sum(1)[active] ** 2 / ev[active]).sum()
    return round(float(10 * np.log10(leak / ev[active].sum())), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("lang")
    ap.add_argument("composite", type=Path)
    ap.add_argument("--root", default=None, help="media store root (default: the configured one)")
    ap.add_argument("--settings", nargs="*", default=["30:400"], help="attack_ms:release_ms[:ratio[:threshold_db]]")
    ap.add_argument("--target", type=float, default=-16.0)
    args = ap.parse_args()
    store = LocalMediaStore(root=args.root) if args.root else LocalMediaStore()
    dub, dub_rate, doc = load_dub_track(store, args.video, args.lang)
    truth, truth_rate = read_audio(args.composite / "dialogue.wav", mono=True)
    source_mix, _ = read_audio(args.composite / "mix.wav", mono=True)
    with store.open_local(f"derived/{args.video}/stems/background.wav") as bg_path:
        bg_stem, bg_rate = read_audio(bg_path, mono=True)
        # Separation residual: background stem projected on the true dialogue, vs the dialogue in the mix.
        n = len(source_mix)
        print(json.dumps({"separation_residual_db": separation_residual_db(
            _mono_at(bg_stem, bg_rate, truth_rate, n), truth, truth_rate)}))
        rows = []
        for spec in args.settings:
            parts = [float(v) for v in spec.split(":")]
            s = MixSettings(target_lufs=args.target, duck_attack_ms=parts[0], duck_release_ms=parts[1],
                            duck_ratio=parts[2] if len(parts) > 2 else 8.0,
                            duck_threshold_db=parts[3] if len(parts) > 3 else -30.0)
            with tempfile.TemporaryDirectory() as tmp:
                mix(bg_path, dub, dub_rate, doc["duration_s"], Path(tmp) / "mix.wav", s)
                final, rate = read_audio(Path(tmp) / "mix.wav")
            leak = voice_leakage_db(final, rate, truth, truth_rate, dub, dub_rate)
            mono = final.mean(axis=1)
            gain, loud_bg, dub_on = background_gain(mono, _mono_at(bg_stem, bg_rate, rate, len(mono)),
                                                    _mono_at(dub, dub_rate, rate, len(mono)), rate)
            under, outside = gain[loud_bg & dub_on], gain[loud_bg & ~dub_on]
            rows.append({"attack_ms": s.duck_attack_ms, "release_ms": s.duck_release_ms, "ratio": s.duck_ratio,
                         "threshold_db": s.duck_threshold_db,
                         "lufs": round(integrated_loudness(final, rate), 2), "true_peak_dbtp": round(true_peak_db(final), 2),
                         "leakage_db": leak["leakage_db"], "leakage_floor_db": leak["floor_db"],
                         "duck_depth_db": round(float(np.median(outside) - np.median(under)), 1),
                         "pumping_std_db": round(float(np.std(under)), 1)})
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
