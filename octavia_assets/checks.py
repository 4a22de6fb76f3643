"""Quality gates of a dub, as plain functions over measured figures (testable without Dagster), and
the asset-check specs the deliver stages attach them to.

Blocking (ERROR) where a bad output must not be delivered: duration match, dropped lines. Warnings
for the rest: speed-up caps, loudness/true peak, original-voice leakage, silent dub over speech.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import numpy as np

#: Limits (the issue's acceptance targets).
LOUDNESS_TOLERANCE_LU = 1.0
TRUE_PEAK_CEILING_DBTP = -1.0
MAX_LEAKAGE_DB = -15.0
#: A line's dub counts as speaking when its RMS over the original line's span is above this.
SILENT_DUB_DBFS = -45.0


@dataclass
class Outcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)

    def result(self, check_name: str, severity: dg.AssetCheckSeverity, asset_key=None) -> dg.AssetCheckResult:
        plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in self.metadata.items()}
        return dg.AssetCheckResult(check_name=check_name, passed=bool(self.passed), severity=severity,
                                   asset_key=asset_key, description=self.description, metadata=plain)


def duration_match(stream_deltas_s: dict[str, float], fps: float, subtitle_ends_s: dict[str, float] | None = None,
                   duration_s: float | None = None) -> Outcome:
    """Every stream lasts the source's duration within one video frame (subtitle tracks are padded to
    the video's end by the muxer); subtitles never run past the video."""
    frame = 1.0 / fps
    worst = max(abs(d) for d in stream_deltas_s.values())
    late_subs = {k: v for k, v in (subtitle_ends_s or {}).items() if duration_s is not None and v > duration_s + frame}
    frames = {k: round(d * fps, 3) for k, d in stream_deltas_s.items()}
    passed = worst <= frame + 1e-6 and not late_subs
    desc = (f"every stream within one frame of the source ({worst * fps:.2f} frames at most)" if passed else
            f"stream duration off by {worst * fps:.2f} frames (limit 1)" if worst > frame + 1e-6 else
            f"subtitles run past the video: {sorted(late_subs)}")
    return Outcome(passed, desc, {"delta_frames": frames, "max_delta_frames": round(worst * fps, 3)})


def no_dropped_lines(transcript_lines: list[dict], dubs: dict[str, dict]) -> Outcome:
    """Every transcribed line has a dubbed line with audio in every language."""
    expected = {ln["index"] for ln in transcript_lines if ln.get("text", "").strip()}
    dropped = {}
    for lang, doc in dubs.items():
        spoken = {ln["index"] for ln in doc["lines"] if ln.get("duration_s", 0) > 0 and ln.get("text", "").strip()}
        if missing := sorted(expected - spoken):
            dropped[lang] = missing
    desc = ("every line dubbed in " + ", ".join(sorted(dubs)) if not dropped else
            "dropped lines: " + "; ".join(f"{lang}: {ids}" for lang, ids in dropped.items()))
    return Outcome(not dropped, desc, {"lines": len(expected), "dropped": dropped})


def speedup_cap(dubs: dict[str, dict], cap: float) -> Outcome:
    """No line sped up past the cap, and every line fits its slot."""
    over, not_fitting, worst = {}, {}, 1.0
    for lang, doc in dubs.items():
        lines = doc["lines"]
        worst = max([worst] + [ln["speedup"] for ln in lines])
        if ids := [ln["index"] for ln in lines if ln["speedup"] > cap + 1e-3]:
            over[lang] = ids
        if ids := [ln["index"] for ln in lines if not ln.get("fits", True)]:
            not_fitting[lang] = ids
    passed = not over and not not_fitting
    desc = (f"max speed-up x{worst:.2f} (cap x{cap:.2f}), every line fits" if passed else
            f"max speed-up x{worst:.2f} (cap x{cap:.2f}); over cap: {over}; not fitting: {not_fitting}")
    return Outcome(passed, desc, {"speedup_max": round(worst, 3), "cap": cap, "over_cap": over,
                                  "not_fitting": not_fitting})


def loudness(integrated_lufs: float, true_peak_dbtp: float, target_lufs: float) -> Outcome:
    ok_i = abs(integrated_lufs - target_lufs) <= LOUDNESS_TOLERANCE_LU
    ok_tp = true_peak_dbtp <= TRUE_PEAK_CEILING_DBTP
    desc = (f"{integrated_lufs:.2f} LUFS (target {target_lufs:g} ±{LOUDNESS_TOLERANCE_LU:g}), "
            f"true peak {true_peak_dbtp:.2f} dBTP (ceiling {TRUE_PEAK_CEILING_DBTP:g})")
    return Outcome(ok_i and ok_tp, desc, {"integrated_lufs": integrated_lufs, "true_peak_dbtp": true_peak_dbtp,
                                          "target_lufs": target_lufs})


def leakage(leakage_db: float, reference: str) -> Outcome:
    passed = leakage_db <= MAX_LEAKAGE_DB
    return Outcome(passed, f"original voice at {leakage_db:.1f} dB relative to the dub (limit {MAX_LEAKAGE_DB:g} dB; "
                           f"reference: {reference})", {"leakage_db": leakage_db, "reference": reference})


def dub_speaks_where_speech_was(dub: np.ndarray, rate: int, speech_lines: list[dict]) -> Outcome:
    """The dub track is not silent over any span where the original had a line."""
    silent = []
    for ln in speech_lines:
        seg = np.asarray(dub[int(ln["start"] * rate):int(ln["end"] * rate)], np.float64)
        rms_db = 10 * np.log10(float(np.mean(seg ** 2)) + 1e-20) if len(seg) else -200.0
        if rms_db < SILENT_DUB_DBFS:
            silent.append(ln.get("index"))
    desc = (f"dub speaks over all {len(speech_lines)} original lines" if not silent else
            f"dub silent over original lines {silent}")
    return Outcome(not silent, desc, {"lines": len(speech_lines), "silent_lines": silent})


WARN, ERROR = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR
