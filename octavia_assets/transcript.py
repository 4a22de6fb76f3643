"""transcript: words with timestamps per chunk, split into lines of one speaker each."""

import dataclasses
import re
import time

import dagster as dg

from .chunks import chunks
from .common import DOWNSTREAM, derived_key, materialized, video_of
from .partitions import videos
from .pre_analysis import LANGUAGE_MIN_PROBABILITY
from .resources.asr import ChunkTranscript
from .resources.diarization import UNKNOWN_SPEAKER, speaker_at  # noqa: F401 (re-exported)
from .resources.engines import AsrEngine, engine_version
from .resources.storage import MediaStore
from .resources.types import Chunk, Line, SpeakerTurn
from .speakers import speaker_map


def join_words(words: list[str]) -> str:
    """Words (stripped by the engine) back into text: spaces between, none before punctuation."""
    text = " ".join(w.strip() for w in words if w.strip())
    return re.sub(r"\s+([,.;:!?%)\]}])", r"\1", text)


def lines_from(transcripts: list[ChunkTranscript], chunk_list: list[Chunk], turns: list[SpeakerTurn]) -> list[Line]:
    """One line per run of consecutive words by the same speaker inside a chunk (never split a word)."""
    by_index = {c.index: c for c in chunk_list}
    lines: list[Line] = []
    for ct in transcripts:
        chunk = by_index[ct.chunk]
        if not ct.words:
            continue
        groups: list[tuple[str, list]] = []
        for w in ct.words:
            who = speaker_at(w.start, w.end, turns)
            if groups and groups[-1][0] == who:
                groups[-1][1].append(w)
            else:
                groups.append((who, [w]))
        for who, words in groups:
            text = join_words([w.text for w in words])
            if not text:
                continue
            start = chunk.start if words is groups[0][1] else words[0].start
            end = chunk.end if words is groups[-1][1] else words[-1].end
            conf = sum(w.probability for w in words) / len(words)
            lines.append(Line(index=len(lines), start=round(start, 3), end=round(end, 3), speaker=who, text=text,
                              words=[w.to_dict() for w in words], confidence=round(conf, 3),
                              language=ct.language or ""))
    return merge_fragments(lines)


# A line of at most FRAGMENT_MAX_WORDS words is a fragment, not a line of its own, when its words
# are squeezed into almost no time or Whisper barely believes them: the debris ASR leaves where two
# voices overlap or a chunk edge cuts a word (a real short reply, "Yes.", is heard clearly and takes
# its time). A 0.1-s slot cannot be dubbed without rushing and a lone word cannot be translated.
FRAGMENT_MAX_WORDS = 2
FRAGMENT_MAX_S = 0.2
FRAGMENT_MIN_CONFIDENCE = 0.5
FRAGMENT_MAX_GAP_S = 0.5       # how far away the line it joins may be


def _is_fragment(line: Line) -> bool:
    return (0 < len(line.words) <= FRAGMENT_MAX_WORDS
            and (line.end - line.start < FRAGMENT_MAX_S or line.confidence < FRAGMENT_MIN_CONFIDENCE))


def merge_fragments(lines: list[Line]) -> list[Line]:
    """Each fragment joins the neighbouring line it touches, every word kept in order: the previous
    line (it usually ends that sentence) unless only the next one is of the same speaker; never
    across languages or a gap over FRAGMENT_MAX_GAP_S. Lines are renumbered."""
    out = list(lines)
    i = 0
    while i < len(out):
        frag = out[i]
        if not _is_fragment(frag):
            i += 1
            continue
        prev = out[i - 1] if i > 0 else None
        nxt = out[i + 1] if i + 1 < len(out) else None
        near = [ln for ln in (prev, nxt) if ln is not None and ln.language == frag.language
                and max(frag.start - ln.end, ln.start - frag.end) <= FRAGMENT_MAX_GAP_S]
        same = [ln for ln in near if ln.speaker == frag.speaker]
        into = (same or near or [None])[0]
        if into is None:
            i += 1
            continue
        j = i - 1 if into is prev else i + 1
        words = into.words + frag.words if into is prev else frag.words + into.words
        probs = [w.get("probability", 1.0) for w in words]
        out[j] = dataclasses.replace(into, start=min(into.start, frag.start), end=max(into.end, frag.end),
                                     text=join_words([w["text"] for w in words]), words=words,
                                     confidence=round(sum(probs) / len(probs), 3))
        del out[i]
        i = max(0, i - 1)    # the grown line may now touch another fragment
    return [dataclasses.replace(ln, index=k) for k, ln in enumerate(out)]


# A chunk is transcribed in its own language when Whisper is at least this sure of it on the chunk
# alone (a Spanish answer in an English interview), else in the video's language.
CHUNK_LANGUAGE_MIN_PROBABILITY = 0.8


def transcribe_by_language(transcriber, src, chunk_list: list[Chunk], language: str) -> list[ChunkTranscript]:
    """Each chunk transcribed in its own language (see CHUNK_LANGUAGE_MIN_PROBABILITY), in chunk order."""
    return transcriber.transcribe_in_languages(src, chunk_list, language, CHUNK_LANGUAGE_MIN_PROBABILITY)


@dg.asset(partitions_def=videos, group_name="listen", kinds={"whisper"}, deps=[chunks, speaker_map],
          code_version=engine_version("asr") + "+chunk-language-v2+fragments-v1", automation_condition=DOWNSTREAM, pool="gpu")
def transcript(context: dg.AssetExecutionContext, media_store: MediaStore, asr: AsrEngine) -> dg.MaterializeResult:
    """Transcribed lines: text, word timestamps, speaker and language."""
    started = time.perf_counter()
    video = video_of(context)
    transcriber = asr.get()
    chunk_doc = media_store.read_json(derived_key(video, "chunks", "chunks.json"))
    chunk_list = [Chunk.from_dict(c) for c in chunk_doc["chunks"]]
    turns = [SpeakerTurn.from_dict(t) for t in media_store.read_json(
        derived_key(video, "speaker_map", "speaker_map.json"))["turns"]]
    language, language_p = "und", 0.0
    analysis = media_store.read_json(derived_key(video, "pre_analysis", "pre_analysis.json"))
    with media_store.open_local(derived_key(video, "stems", "vocals_16k.wav")) as src:
        if chunk_list and analysis.get("language_probability", 0.0) >= LANGUAGE_MIN_PROBABILITY:
            language, language_p = analysis["language"], analysis["language_probability"]
            results = transcribe_by_language(transcriber, src, chunk_list, language)
        elif chunk_list:    # unsure on the mixture: ask again on the clean vocals
            language, language_p = transcriber.detect_language(src)
            results = transcribe_by_language(transcriber, src, chunk_list, language)
        else:
            results = []
    lines = lines_from(results, chunk_list, turns)
    out = derived_key(video, "transcript", "transcript.json")
    media_store.put_json({"language": language, "language_probability": language_p,
                          "lines": [ln.to_dict() for ln in lines]}, out)
    words = sum(len(ln.words) for ln in lines)
    preview = "\n".join(f"[{ln.start:6.1f}s {ln.speaker}] {ln.text}" for ln in lines[:8])
    other = sorted({ln.language for ln in lines if ln.language and ln.language != language})
    return materialized(
        media_store, [out], started, model=transcriber.version, language=language,
        other_languages=", ".join(other) or "none",
        lines_in_other_languages=sum(bool(ln.language) and ln.language != language for ln in lines),
        language_probability=round(language_p, 3), line_count=len(lines), word_count=words,
        mean_confidence=round(sum(ln.confidence for ln in lines) / len(lines), 3) if lines else 0.0,
        preview=dg.MetadataValue.md(f"```\n{preview}\n```") if lines else "(no speech)",
    )
