"""Speaking-stage evaluation on a video already ingested by `octavia dub` (transcript, voices, speaker_map
in the media store): for each target language, translate the lines with the configured chain, dub them
with the full fallback order (condense, native rate, borrowed silence, capped stretch) and measure

- speed-up median / p95 / max, lines condensed / borrowing silence / stretched / not fitting / dropped,
  overlaps between consecutive lines;
- round-trip WER: every dubbed line transcribed back with the project's ASR (faster-whisper base) and
  compared with the text it was asked to speak;
- speaker similarity: CAM++ cosine of each dubbed voice to every original speaker and to the other voices.

The dubbed lines go to a scratch prefix (``bench/``) of the same media store, so the pipeline's own
outputs are untouched.

    DAGSTER_HOME=... .venv/bin/python benchmarks/dub_eval.py VIDEO_KEY --langs es,pt [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from octavia_assets.common import derived_key  # noqa: E402
from octavia_assets.dubbing import dub_lines, speedup_stats  # noqa: E402
from octavia_assets.resources.condense import RuleCondenser, default_condenser  # noqa: E402
from octavia_assets.resources.dubcheck import roundtrip_wer, speaker_similarity  # noqa: E402
from octavia_assets.resources.engines import DiarizationEngine, TtsEngine, _embedder, _transcriber  # noqa: E402
from octavia_assets.resources.media import read_audio  # noqa: E402
from octavia_assets.resources.storage import LocalMediaStore  # noqa: E402
from octavia_assets.resources.translation import default_translator, translate_lines  # noqa: E402
from octavia_assets.speakers import voice_profiles  # noqa: E402
from octavia_assets.resources.tts import choose_voices  # noqa: E402
from octavia_assets.resources.voice_match import choose_shipped_voices  # noqa: E402
from octavia_assets.resources.types import VoiceChoice  # noqa: E402


def dithered(load, seed: int):
    """``load`` with white noise at -80 dBFS added (its own draw per seed and line): inaudible under speech."""
    import numpy as np

    def load_dithered(key):
        audio, sr = load(key)
        rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
        return (audio + 1e-4 * rng.standard_normal(audio.shape)).astype(np.float32), sr
    return load_dithered


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--langs", default="es,pt")
    ap.add_argument("--no-condense", action="store_true", help="disable the condenser (to compare)")
    ap.add_argument("--no-asr", action="store_true", help="skip the round-trip WER")
    ap.add_argument("--asr-repeats", type=int, default=0, metavar="K",
                    help="also transcribe every line K more times, each under its own inaudible dither (-80 dBFS "
                         "white noise): Whisper's transcript of the same line moves with such changes, so the mean "
                         "and spread of the K WERs tell the dub's intelligibility from the decoder's noise")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--rechoose", action="store_true",
                    help="choose the voices again with the current chooser instead of reading the voices stage's")
    args = ap.parse_args(argv)
    root = os.environ.get("OCTAVIA_MEDIA_ROOT") or str(Path(os.environ["DAGSTER_HOME"]) / "media")
    store = LocalMediaStore(root=root)
    video = args.video
    transcript = store.read_json(derived_key(video, "transcript", "transcript.json"))
    duration = store.read_json(derived_key(video, "chunks", "chunks.json"))["duration_s"]
    # sealed (needs the instance's voice key); re-derived in memory when deleted after the final mix
    profiles = voice_profiles(store, video, DiarizationEngine())
    voice_doc = store.read_json(derived_key(video, "voices", "voices.json"))
    tts = TtsEngine()
    chain = default_translator()
    condenser = default_condenser()
    if args.no_condense:
        class _Off(RuleCondenser):
            version = "off"

            def shorten(self, text, language, max_chars):
                return text
        condenser = _Off()

    def load(key):
        with store.open_local(key) as p:
            return read_audio(p, mono=True)

    report = {}
    for lang in [x.strip() for x in args.langs.split(",") if x.strip()]:
        lines = transcript["lines"]
        t0 = time.perf_counter()
        texts, sources = translate_lines(chain, lines, transcript["language"], lang, log=print)
        engine = chain.last_engine.name if chain.last_engine else "none"
        targets = [{**ln, "text": t} for ln, t in zip(lines, texts)]
        synth = tts.get(lang)
        voices = {s: VoiceChoice.from_dict(v) for s, v in voice_doc["voices"].items()}
        if args.rechoose and synth.name == "kokoro":
            voices = choose_shipped_voices(profiles, synth, _embedder("campplus"), language=lang)
            for c in voices.values():
                print(c.reason)
        elif any(v.engine != synth.name for v in voices.values()):
            voices = choose_voices(profiles, synth, lang)
        t1 = time.perf_counter()
        placed, _ = dub_lines(store, synth, voices, targets, duration, lang,
                              f"bench/{video}/{lang}/{condenser.version}", condenser, tts.max_speedup, log=print)
        t2 = time.perf_counter()
        speedups = [p["speedup"] for p in placed]
        row = {"translation_engine": engine, "lines": len(lines), "translate_s": round(t1 - t0, 1),
               "dub_s": round(t2 - t1, 1), **speedup_stats(speedups),
               "speedups": speedups,
               "lines_condensed": sum(p["condensed"] for p in placed),
               "lines_borrowing": sum(p["lead_s"] > 0 or p.get("tail_s", 0) > 0 for p in placed),
               "lines_delayed": sum(p["delay_s"] > 0 for p in placed),
               "lines_from_other_languages": sum(src != transcript["language"] for src in sources),
               "lines_stretched": sum(p["stretch"] > 1 for p in placed),
               "lines_not_fitting": sum(not p["fits"] for p in placed),
               "lines_dropped": len(lines) - len(placed),
               "overlaps": sum(a["end"] > b["start"] + 1e-3 for a, b in zip(placed, placed[1:])),
               "steps": {p["index"]: p["fit_steps"] for p in placed},
               "texts": {p["index"]: {"translation": p["text"], "spoken": p["spoken_text"]} for p in placed}}
        if not args.no_asr:
            row["roundtrip"] = roundtrip_wer(placed, load, _transcriber("faster-whisper-base"), lang)
            if args.asr_repeats:
                each = [roundtrip_wer(placed, dithered(load, k), _transcriber("faster-whisper-base"), lang)["wer"]
                        for k in range(args.asr_repeats)]
                row["roundtrip_repeats"] = {"wer_each": each, "mean": round(statistics.mean(each), 4),
                                            "sd": round(statistics.stdev(each), 4) if len(each) > 1 else 0.0}
        row["similarity"] = speaker_similarity(placed, load, _embedder("campplus"), profiles)
        report[lang] = row
        print(json.dumps({k: v for k, v in row.items() if k not in ("texts", "steps")}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print("median speed-ups:", {k: statistics.median(v["speedups"]) for k, v in report.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
