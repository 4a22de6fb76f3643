"""Offline translation quality: chrF and BLEU (sacrebleu) of each route the chain could take for a
pair, on the small parallel sets in benchmarks/data/mt_<src>_<tgt>.tsv.

    .venv/bin/python benchmarks/translation_eval.py [--json out.json]

A route is one engine or pivot on its own (no fallback), so routes are compared on the same
sentences; the last row per pair is the default chain as the pipeline runs it. The sets are small
(40 sentences): differences under about 3 chrF are noise.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from octavia_assets.resources.translation import ApertiumEngine, FastTranslateEngine  # noqa: E402
from octavia_assets.resources.translation import PivotTranslator, default_translator  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def read_set(path: Path) -> tuple[str, str, list[str], list[str]]:
    """(source language, target language, sources, references) of one ``mt_<src>_<tgt>.tsv``."""
    _, src, tgt = path.stem.split("_")
    rows = [r for r in csv.reader((ln for ln in path.read_text(encoding="utf-8").splitlines()
                                   if ln and not ln.startswith("#")), delimiter="\t")]
    header, body = rows[0], rows[1:]
    if header != [src, tgt] or any(len(r) != 2 for r in body):
        raise ValueError(f"{path.name}: expected two tab-separated columns '{src}\\t{tgt}'")
    return src, tgt, [r[0] for r in body], [r[1] for r in body]


def routes() -> list:
    fast, apertium = FastTranslateEngine(), ApertiumEngine()
    legs = [fast, apertium, PivotTranslator(fast, apertium, via="pt")]    # en->pt->es is one leg too
    out = list(legs)
    for via in ("pt", "es", "en"):
        for first in legs:
            for second in legs:
                if not (isinstance(first, PivotTranslator) and isinstance(second, PivotTranslator)):
                    out.append(PivotTranslator(first, second, via=via))
    return out


def evaluate(paths: list[Path]) -> list[dict]:
    import sacrebleu
    rows = []
    for path in paths:
        src, tgt, sources, refs = read_set(path)
        chain = default_translator()
        seen: set[str] = set()
        candidates = [r for r in routes() if r.supports(src, tgt) and not (r.name in seen or seen.add(r.name))]
        candidates.append(chain)
        for engine in candidates:
            started = time.perf_counter()
            hyps = engine.translate(sources, src, tgt)
            seconds = time.perf_counter() - started
            used = getattr(engine, "last_engine", None)
            rows.append({"pair": f"{src}->{tgt}", "route": f"default chain ({used.name})" if used else engine.name,
                         "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 1),
                         "bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 1),
                         "ms_per_sentence": round(1000 * seconds / len(sources), 1), "sentences": len(sources),
                         "sample": hyps[:3]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the rows (with three sample outputs each) here")
    ap.add_argument("sets", nargs="*", type=Path, help="TSV files (default: benchmarks/data/mt_*.tsv)")
    args = ap.parse_args(argv)
    rows = evaluate(args.sets or sorted(DATA.glob("mt_*_*.tsv")))
    print("| pair | route | chrF | BLEU | ms/sentence |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pair']} | {r['route']} | {r['chrf']} | {r['bleu']} | {r['ms_per_sentence']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
