"""translation: each transcript line in the target language."""

import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, fail, materialized, video_and_lang
from .partitions import VIDEO_DIMENSION, video_lang
from .resources.engines import TranslationEngine, engine_version, gpu_pool
from .resources.storage import MediaStore
from .resources.translation import UnsupportedLanguagePair, same_language, translate_lines
from .transcript import transcript


def overrides_key(video: str, lang: str) -> str:
    """User edits of one video's dub in one language: ``{"<line index>": "text to speak"}``."""
    return f"overrides/{video}/{lang}.json"


def read_overrides(media_store: MediaStore, video: str, lang: str, line_count: int) -> dict[int, str]:
    """The overrides for a video x language ({} when none); a bad file raises ValueError with one line."""
    key = overrides_key(video, lang)
    if not media_store.exists(key):
        return {}
    try:
        doc = media_store.read_json(key)
    except ValueError as e:
        raise ValueError(f"{key} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{key} must map line indices to texts, got {type(doc).__name__}")
    out = {}
    for index, text in doc.items():
        if not str(index).isdigit() or not 0 <= int(index) < line_count:
            raise ValueError(f"{key}: line {index!r} does not exist (the video has {line_count} lines)")
        if not isinstance(text, str) or not any(ch.isalnum() for ch in text):
            raise ValueError(f"{key}: line {index} needs a text with something to say, got {text!r}")
        out[int(index)] = " ".join(text.split())
    return out


def set_override(media_store: MediaStore, video: str, lang: str, index: int, text: str | None) -> None:
    """Set (or with ``text`` None, remove) the override of one line; re-materializing translation and
    dubbed_chunks then re-synthesizes only that line."""
    key = overrides_key(video, lang)
    doc = media_store.read_json(key) if media_store.exists(key) else {}
    if text is None:
        doc.pop(str(index), None)
    else:
        doc[str(index)] = text
    media_store.put_json(doc, key)


@dg.asset(partitions_def=video_lang, group_name="speak", kinds={"translate"},
          deps=[dg.AssetDep(transcript, partition_mapping=VIDEO_DIMENSION)],
          # each line from its own spoken language since per-line-source-v1
          code_version=engine_version("translation") + "+per-line-source-v1", automation_condition=DOWNSTREAM,
          pool=gpu_pool("translation"))   # "gpu" with an NLLB/SeamlessM4T chain, else any worker
def translation(context: dg.AssetExecutionContext, media_store: MediaStore,
                translator: TranslationEngine) -> dg.MaterializeResult:
    """Per-line target text (same timing and speaker as the source line); the lines a user edited in
    ``overrides/<video>/<lang>.json`` take the user's text. Each line is translated from its own spoken
    language (a line already in the target language passes through); the lines of one language go to
    the engine in one batch, in order, so an engine that reads context sees each line's neighbours."""
    started = time.perf_counter()
    video, lang = video_and_lang(context)
    doc = media_store.read_json(derived_key(video, "transcript", "transcript.json"))
    source = doc["language"]
    lines = doc["lines"]
    engine = translator.get()
    try:
        texts, sources = translate_lines(engine, lines, source, lang, log=context.log.warning) if lines else ([], [])
    except UnsupportedLanguagePair as e:
        raise fail(context, f"cannot translate {source}->{lang}: {e}") from None
    try:
        overrides = read_overrides(media_store, video, lang, len(lines))
    except ValueError as e:
        raise fail(context, str(e)) from None
    out_lines = [{**{k: ln[k] for k in ("index", "start", "end", "speaker")}, "source_text": ln["text"],
                  "source_language": src, "text": overrides.get(ln["index"], t), "machine_text": t,
                  "overridden": ln["index"] in overrides}
                 for ln, t, src in zip(lines, texts, sources)]
    used = getattr(engine, "last_engine", None)
    out = derived_key(video, lang, "translation.json")
    media_store.put_json({"source_language": source, "language": lang, "engine": engine.version,
                          "engine_used": used.version if used else engine.version, "lines": out_lines}, out)
    src_chars = sum(len(ln["source_text"]) for ln in out_lines)
    dst_chars = sum(len(ln["text"]) for ln in out_lines)
    sample = "\n".join(f"- {ln['source_text']}\n  → {ln['text']}" for ln in out_lines[:5])
    return materialized(media_store, [out], started, model=engine.version, source_language=source,
                        target_language=lang, line_count=len(out_lines), lines_overridden=len(overrides),
                        lines_from_other_languages=sum(not same_language(s, source) for s in sources),
                        engine_used=used.name if used else engine.name,
                        length_ratio=round(dst_chars / src_chars, 3) if src_chars else 0.0,
                        sample=dg.MetadataValue.md(sample or "(no lines)"))
