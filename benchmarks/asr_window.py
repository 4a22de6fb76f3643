"""Whisper's encoder window (the padded 30 s against the chunk plus padding, asr.py WINDOW_MIN_S/_PAD_S)
its beam size (BEAM_SIZE 5 against greedy decoding) and its temperature fallback (TEMPERATURE).

On the benchmark's input of ``--minutes`` (benchmarks/run.py builds it from ../shared/media), the
pipeline's own listening stages up to the chunks run once (separation, Silero VAD, diarization,
chunking); then the same chunks are transcribed with per-chunk language id, as the transcript asset
does, once per setting. Printed per setting: CPU seconds of the transcription, corpus WER of the English
and of the Spanish utterances against the builder's reference transcripts (words assigned to the
utterance holding their midpoint), and against the first setting: agreement WER and word-time
differences.

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

# name -> (encoder window trimmed to the chunk, beam size, temperatures)
FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)     # faster-whisper's default: sampling when a decode looks bad
SETTINGS = {"30-s window, beam 5, fallback": (False, 5, FALLBACK),
            "chunk + 3 s, at least 15 s, beam 5, fallback": (True, 5, FALLBACK),
            "chunk + 3 s, at least 15 s, greedy, fallback": (True, 1, FALLBACK),
            "chunk + 3 s, at least 15 s, beam 5, no fallback (default)": (True, 5, 0.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--only", type=int, nargs="+", help="run only these settings (1-based, in table order)")
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
        settings = [item for i, item in enumerate(SETTINGS.items(), 1) if not args.only or i in args.only]
        for name, (trimmed, beam, temperature) in settings:
            transcriber = FasterWhisperTranscriber()
            transcriber.BEAM_SIZE, transcriber.TEMPERATURE = beam, temperature
            if not trimmed:
                transcriber.model.window_s = None
            started = time.process_time()
            results = transcriber.transcribe_in_languages(vocals16k, chunks, "en", 0.5)
            cpu = time.process_time() - started
            words_of[name] = [r.words for r in results]
            row = [name, round(cpu, 1)]
            for language in ("en", "es"):
                spoken = [u for u in reference["utterances"] if u.get("transcript") and u["language"] == language]
                hyps = ev.utterance_hypotheses(spoken, [w for r in results for w in r.words])
                row.append(f"{word_error_rate([u['transcript'] for u in spoken], hyps):.4f} ({len(spoken)})")
            rows.append(row)
    base = next(iter(words_of.values()))
    print("| setting | transcription CPU s | WER en (utterances) | WER es (utterances) | agreement WER with the first "
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
