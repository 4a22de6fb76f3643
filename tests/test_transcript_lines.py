"""Lines from transcribed chunks: ASR debris (a word squeezed into no time, or barely heard) joins the
line it touches instead of becoming a line of its own that no dub can fit."""
from octavia_assets.resources.asr import ChunkTranscript
from octavia_assets.resources.types import Chunk, SpeakerTurn, Word
from octavia_assets.transcript import lines_from, merge_fragments


def _chunk(index, words, language="en"):
    return ChunkTranscript(chunk=index, text=" ".join(w.text for w in words), words=words, language=language)


def test_overlap_debris_joins_the_sentence_it_ends():
    # the dev composite's overlap at 34.7 s, as Whisper and the speaker map left it
    chunks = [Chunk(0, 24.6, 34.722), Chunk(1, 34.722, 35.072), Chunk(2, 35.072, 36.638)]
    turns = [SpeakerTurn(24.6, 34.72, "A"), SpeakerTurn(34.70, 34.73, "B"), SpeakerTurn(34.73, 35.09, "A"),
             SpeakerTurn(35.09, 36.7, "B")]
    out = lines_from([
        _chunk(0, [Word(24.7, 25.0, "The", 0.99), Word(25.0, 34.5, "narrative", 0.99), Word(34.5, 34.722, "to", 0.98)]),
        _chunk(1, [Word(34.722, 34.725, "the", 0.32), Word(34.74, 35.06, "self.", 0.33)]),
        _chunk(2, [Word(35.072, 35.073, "be", 0.05), Word(35.072, 35.092, "a", 0.19),
                   Word(35.092, 35.892, "comparatively", 0.97), Word(35.892, 36.332, "modern.", 0.77)]),
    ], chunks, turns)
    assert [(ln.index, ln.speaker, ln.text) for ln in out] == [
        (0, "A", "The narrative to the self. be a"), (1, "B", "comparatively modern.")]
    assert out[0].end == 35.092 and [w["text"] for w in out[0].words][-4:] == ["the", "self.", "be", "a"]


def test_a_clear_short_reply_stays_its_speakers_line():
    chunks = [Chunk(0, 0.0, 4.0), Chunk(1, 4.0, 4.5), Chunk(2, 4.6, 9.0)]
    out = lines_from([
        _chunk(0, [Word(0.2, 3.9, "Are you coming tonight?", 0.95)]),
        _chunk(1, [Word(4.05, 4.45, "Yes.", 0.93)]),
        _chunk(2, [Word(4.7, 8.8, "Good, then bring the map.", 0.95)]),
    ], chunks, [SpeakerTurn(0, 4.0, "A"), SpeakerTurn(4.0, 4.5, "B"), SpeakerTurn(4.6, 9.0, "A")])
    assert [(ln.speaker, ln.text) for ln in out] == [
        ("A", "Are you coming tonight?"), ("B", "Yes."), ("A", "Good, then bring the map.")]


def test_a_fragment_prefers_its_own_speaker_then_stays_when_alone():
    from octavia_assets.resources.types import Line
    a = Line(0, 0.0, 3.0, "A", "one two three", words=[{"start": 0.0, "end": 3.0, "text": "one two three", "probability": 0.9}])
    frag = Line(1, 3.0, 3.05, "B", "uh", words=[{"start": 3.0, "end": 3.05, "text": "uh", "probability": 0.9}], confidence=0.9)
    b = Line(2, 3.1, 6.0, "B", "four five", words=[{"start": 3.1, "end": 6.0, "text": "four five", "probability": 0.9}])
    merged = merge_fragments([a, frag, b])
    assert [(ln.index, ln.speaker, ln.text) for ln in merged] == [(0, "A", "one two three"), (1, "B", "uh four five")]
    assert merged[1].start == 3.0
    far = Line(1, 5.0, 5.05, "B", "uh", words=frag.words, confidence=0.9)
    other_language = Line(1, 3.0, 3.05, "B", "eh", words=frag.words, confidence=0.9, language="es")
    assert len(merge_fragments([a, far])) == 2                          # nothing within reach
    assert len(merge_fragments([a, other_language])) == 2               # never across languages
