"""translation: each transcript line in the target language."""

import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, fail, materialized, video_and_lang
from .partitions import VIDEO_DIMENSION, video_lang
from .resources.engines import TranslationEngine, engine_version
from .resources.storage import MediaStore
from .resources.translation import UnsupportedLanguagePair
from .transcript import transcript


@dg.asset(partitions_def=video_lang, group_name="speak", kinds={"translate"},
          deps=[dg.AssetDep(transcript, partition_mapping=VIDEO_DIMENSION)],
          code_version=engine_version("translation"), automation_condition=DOWNSTREAM)
def translation(context: dg.AssetExecutionContext, media_store: MediaStore,
                translator: TranslationEngine) -> dg.MaterializeResult:
    """Per-line target text (same timing and speaker as the source line)."""
    started = time.perf_counter()
    video, lang = video_and_lang(context)
    doc = media_store.read_json(derived_key(video, "transcript", "transcript.json"))
    source = doc["language"]
    lines = doc["lines"]
    engine = translator.get()
    try:
        texts = engine.translate([ln["text"] for ln in lines], source, lang) if lines else []
    except UnsupportedLanguagePair as e:
        raise fail(context, f"cannot translate {source}->{lang}: {e}") from None
    out_lines = [{**{k: ln[k] for k in ("index", "start", "end", "speaker")}, "source_text": ln["text"], "text": t}
                 for ln, t in zip(lines, texts)]
    out = derived_key(video, lang, "translation.json")
    media_store.put_json({"source_language": source, "language": lang, "engine": engine.version,
                          "lines": out_lines}, out)
    src_chars = sum(len(ln["source_text"]) for ln in out_lines)
    dst_chars = sum(len(ln["text"]) for ln in out_lines)
    sample = "\n".join(f"- {ln['source_text']}\n  → {ln['text']}" for ln in out_lines[:5])
    return materialized(media_store, [out], started, model=engine.version, source_language=source,
                        target_language=lang, line_count=len(out_lines),
                        length_ratio=round(dst_chars / src_chars, 3) if src_chars else 0.0,
                        sample=dg.MetadataValue.md(sample or "(no lines)"))
