"""Subtitles: SRT and WebVTT cues from timed lines, composed with the `srt` package."""
from __future__ import annotations

import os
import textwrap
from datetime import timedelta
from pathlib import Path

import srt

#: Broadcast practice: at most two lines of about 42 characters on screen at once.
MAX_LINE_CHARS = 42
MAX_LINES = 2
MIN_CUE_S = 0.7


def cues_from_lines(lines: list[dict], duration_s: float) -> list[srt.Subtitle]:
    """One cue per line ({start, end, text}), split into several cues (time shared by characters) when
    its text does not fit two lines; cues never overlap the next line and never pass ``duration_s``."""
    cues: list[srt.Subtitle] = []
    ordered = sorted((ln for ln in lines if ln.get("text", "").strip()), key=lambda ln: ln["start"])
    for i, ln in enumerate(ordered):
        start = max(0.0, float(ln["start"]))
        limit = min(duration_s, ordered[i + 1]["start"] if i + 1 < len(ordered) else duration_s)
        end = min(max(float(ln["end"]), start + MIN_CUE_S), limit)
        if end <= start:
            continue
        wrapped = textwrap.wrap(" ".join(ln["text"].split()), MAX_LINE_CHARS)
        pages = [wrapped[j:j + MAX_LINES] for j in range(0, len(wrapped), MAX_LINES)]
        weights = [sum(len(x) for x in page) for page in pages]
        t = start
        for page, w in zip(pages, weights):
            t_end = t + (end - start) * w / sum(weights)
            cues.append(srt.Subtitle(index=len(cues) + 1, start=timedelta(seconds=round(t, 3)),
                                     end=timedelta(seconds=round(t_end, 3)), content="\n".join(page)))
            t = t_end
    return cues


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def to_webvtt(cues: list[srt.Subtitle]) -> str:
    """WebVTT from the same cues: srt's timestamps with '.' as the decimal separator."""
    blocks = ["WEBVTT", ""]
    for c in cues:
        stamp = lambda td: srt.timedelta_to_srt_timestamp(td).replace(",", ".")
        blocks += [f"{stamp(c.start)} --> {stamp(c.end)}", c.content, ""]
    return "\n".join(blocks)


def write_subtitles(lines: list[dict], duration_s: float, stem: Path) -> tuple[Path, Path, int]:
    """Write ``stem``.srt and ``stem``.vtt; return both paths and the cue count."""
    cues = cues_from_lines(lines, duration_s)
    srt_path, vtt_path = stem.with_name(stem.name + ".srt"), stem.with_name(stem.name + ".vtt")
    _atomic_write(srt_path, srt.compose(cues))
    _atomic_write(vtt_path, to_webvtt(cues))
    return srt_path, vtt_path, len(cues)
