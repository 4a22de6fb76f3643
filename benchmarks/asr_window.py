"""Whisper's encoder window: the padded 30 s against the chunk plus padding (asr.py WINDOW_MIN_S/_PAD_S).

On the benchmark's input of ``--minutes`` (benchmarks/run.py builds it from ../shared/media), the
pipeline's own listening stages up to the chunks run once (separation, Silero VAD, diarization,
chunking); then the same chunks are transcribed with per-chunk language id, as the transcript asset
does, once per window setting. Printed per setting: CPU seconds of the transcription, corpus WER of
the English utterances against the builder's reference transcripts (words assigned to the utterance
holding their midpoint), and against the 30-s window: agreement WER and word-time differences.

    .venv/bin/python benchmarks/asr_window.py [--minutes 10]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = {"30 s (Whisper's window)": None, "chunk + 3 s, at least 15 s (default)": "default"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from benchmarks.run import build_input
    from octavia_assets import evaluation as ev
    from octavia_assets.resources.asr import FasterWhisperTranscriber
    from octavia_assets.resources.engines import (
        DiarizationEngine,
        SeparationEngine,
        VadEngine,
        configured_engine,
    )
    from octavia_assets.resources.metrics import word_error_rate

    composite = build_input(args.minutes).parent
    reference = json.loads((composite / "reference.json").read_text())
    with tempfile.TemporaryDirectory(prefix="octavia-asr-window-") as tmp_name:
        tmp = Path(tmp_name)
        _, vocals16k = ev.eval_separation(composite, tmp, SeparationEngine(engine=configured_engine("separation")).get())
        vad = VadEngine(engine=configured_engine("vad"))
        turns = DiarizationEngine(engine=configured_engine("diarization")).get().diarize(vocals16k)
        _, chunks, _ = ev.eval_chunking(vocals16k, reference, vad.get(), turns, vad)
        print(f"{args.minutes:g}-minute input: {len(chunks)} chunks, "
              f"{sum(c.duration < 4 for c in chunks)} shorter than 4 s", flush=True)
        words_of = {}
        rows = []
        for name, setting in SETTINGS.items():
            transcriber = FasterWhisperTranscriber()
            if setting is None:
                transcriber.model.window_s = None
            started = time.process_time()
            results = transcriber.transcribe_in_languages(vocals16k, chunks, "en", 0.5)
            cpu = time.process_time() - started
            words_of[name] = [r.words for r in results]
            english = [u for u in reference["utterances"] if u.get("transcript") and u["language"] == "en"]
            hyps = ev.utterance_hypotheses(english, [w for r in results for w in r.words])
            rows.append([name, round(cpu, 1), round(word_error_rate([u["transcript"] for u in english], hyps), 4),
                         len(english)])
    base = words_of[next(iter(SETTINGS))]
    print("| encoder window | transcription CPU s | WER (en utterances) | utterances | agreement WER with 30 s "
          "| word start+end difference mean / p95 s |")
    print("|---|---|---|---|---|---|")
    for row, (name, words) in zip(rows, words_of.items()):
        agree = word_error_rate([" ".join(w.text for w in ws) or "-" for ws in base],
                                [" ".join(w.text for w in ws) for ws in words])
        diffs = [abs(a.start - b.start) + abs(a.end - b.end) for wa, wb in zip(base, words) if len(wa) == len(wb)
                 for a, b in zip(wa, wb)]
        print(f"| {' | '.join(str(v) for v in row)} | {agree:.4f} | "
              f"{np.mean(diffs):.3f} / {np.percentile(diffs, 95):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
