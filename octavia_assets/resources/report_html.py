"""Quality report rendering: PNG plots (matplotlib, Agg) and one self-contained HTML page."""
from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")   # headless: no display in workers
import matplotlib.pyplot as plt
import numpy as np

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def loudness_plot(original: tuple[np.ndarray, np.ndarray], dubs: dict[str, tuple[np.ndarray, np.ndarray]],
                  target_lufs: float) -> bytes:
    fig, ax = plt.subplots(figsize=(9, 2.8))
    ax.plot(original[0], np.where(np.isfinite(original[1]), original[1], np.nan), color="#555", label="original")
    for (lang, (t, v)), c in zip(dubs.items(), COLOURS):
        ax.plot(t, np.where(np.isfinite(v), v, np.nan), color=c, label=f"dub {lang}")
    ax.axhline(target_lufs, color="#999", ls="--", lw=0.8, label=f"target {target_lufs:g} LUFS")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("LUFS (3 s windows)")
    ax.legend(loc="lower right", fontsize=8, ncol=4)
    ax.grid(alpha=0.3)
    return _png(fig)


def speedup_histogram(speedups: dict[str, list[float]], cap: float) -> bytes:
    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    bins = np.arange(0.5, max([cap + 0.1] + [max(v, default=1.0) + 0.05 for v in speedups.values()]), 0.05)
    for (lang, values), c in zip(speedups.items(), COLOURS):
        ax.hist(values, bins=bins, alpha=0.6, color=c, label=lang)
    ax.axvline(cap, color="#d62728", ls="--", lw=0.8, label=f"cap x{cap:g}")
    ax.set_xlabel("speed-up per line")
    ax.set_ylabel("lines")
    ax.legend(fontsize=8)
    return _png(fig)


def speaker_timeline(turns: list[dict], lines_by_lang: dict[str, list[dict]], duration_s: float) -> bytes:
    speakers = sorted({t["speaker"] for t in turns})
    rows = speakers + [f"dub {lang}" for lang in lines_by_lang]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 0.9))
    for i, spk in enumerate(speakers):
        ax.broken_barh([(t["start"], t["end"] - t["start"]) for t in turns if t["speaker"] == spk],
                       (i - 0.35, 0.7), color=COLOURS[i % len(COLOURS)])
    for j, (lang, lines) in enumerate(lines_by_lang.items()):
        row = len(speakers) + j
        colour = {spk: COLOURS[i % len(COLOURS)] for i, spk in enumerate(speakers)}
        ax.broken_barh([(ln["start"], ln["end"] - ln["start"]) for ln in lines], (row - 0.35, 0.7),
                       color=[colour.get(ln["speaker"], "#777") for ln in lines], alpha=0.6)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, duration_s)
    ax.set_xlabel("time (s)")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _wer(chunk: dict) -> str:
    wer = chunk.get("roundtrip_wer")
    return "—" if wer is None else f"{wer:.2f}"


def render_html(report: dict, plots: dict[str, bytes]) -> str:
    """One page, images inlined, so the file can be copied anywhere on its own."""
    e = html.escape
    d = report["durations"]
    check_rows = "".join(
        f'<tr class="{"ok" if c["passed"] else "bad"}"><td>{e(c["asset"])}</td><td>{e(c.get("partition", ""))}</td>'
        f'<td>{e(c["check"])}</td><td>{e(c["severity"])}</td><td>{"pass" if c["passed"] else "FAIL"}</td>'
        f'<td>{e(c["description"])}</td></tr>' for c in report.get("checks", []))
    lang_rows = "".join(
        f'<tr><td>{e(s["language"])}</td><td>{s["lines"]}</td><td>{s["integrated_lufs"]}</td><td>{s["true_peak_dbtp"]}</td>'
        f'<td>{s["leakage_vs_vocals_db"]}</td><td>{s["speedup_median"]}</td><td>{s["speedup_max"]}</td>'
        f'<td>{s["lines_not_fitting"]}</td><td>{s["overlaps"]}</td></tr>' for s in report["languages"])
    chunk_tables = ""
    for s in report["languages"]:
        rows = "".join(
            f'<tr><td>{c["index"]}</td><td>{e(c["speaker"])}</td><td>{c["start"]:.2f}–{c["end"]:.2f}</td>'
            f'<td>{c["slot_s"]:.2f}</td><td class="{"bad" if c["speedup"] > report["speedup_cap"] or not c["fits"] else ""}">'
            f'x{c["speedup"]:.2f}</td><td>{_wer(c)}</td>'
            f'<td>{e(c["source_text"])}</td><td>{e(c["text"])}</td></tr>' for c in s["chunks"])
        chunk_tables += (f'<h3>Lines — {e(s["language"])}</h3><table><tr><th>#</th><th>speaker</th><th>dub (s)</th>'
                         f'<th>slot (s)</th><th>speed-up</th><th>round-trip WER</th><th>source</th><th>dub text</th></tr>'
                         f'{rows}</table>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Octavia quality report — {e(report["video"])}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}}
h1{{font-size:20px}} h2{{font-size:16px;margin-top:28px}} h3{{font-size:14px}}
table{{border-collapse:collapse;margin:8px 0;font-size:12px}} td,th{{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}}
th{{background:#f4f4f4}} tr.ok td:nth-child(5){{color:#187a2f;font-weight:600}} tr.bad td, td.bad{{color:#b00020;font-weight:600}}
.figs{{display:flex;flex-wrap:wrap;gap:12px}} img{{max-width:100%;border:1px solid #eee}}
.kv span{{display:inline-block;margin-right:18px}}
</style></head><body>
<h1>Quality report — {e(report["video"])}</h1>
<p class="kv"><span>source: {e(report["source"])}</span><span>language: {e(report["source_language"])}</span>
<span>speakers: {report["speaker_count"]}</span><span>lines: {report["transcript_lines"]}</span>
<span>mean ASR confidence: {report["mean_asr_confidence"]}</span></p>
<p class="kv"><span>duration: {d["source_duration_s"]} s → {d["output_duration_s"]} s</span>
<span>worst stream delta: {d["max_stream_delta_frames"]} frames at {d["fps"]:g} fps</span></p>
<h2>Checks</h2><table><tr><th>asset</th><th>partition</th><th>check</th><th>severity</th><th>result</th><th>detail</th></tr>{check_rows}</table>
<h2>Tracks</h2><table><tr><th>lang</th><th>lines</th><th>LUFS</th><th>true peak (dBTP)</th><th>voice leakage (dB, vs vocals)</th>
<th>speed-up median</th><th>max</th><th>not fitting</th><th>overlaps</th></tr>{lang_rows}</table>
<h2>Loudness over time</h2>{_img(plots["loudness"], "loudness over time")}
<div class="figs"><div><h2>Speed-ups</h2>{_img(plots["speedups"], "speed-up histogram")}</div></div>
<h2>Speakers</h2>{_img(plots["speakers"], "speaker timeline")}
{chunk_tables}
</body></html>
"""
