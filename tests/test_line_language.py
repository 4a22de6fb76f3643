"""Lines in another language than the video's: identified per chunk, transcribed and translated in it."""
from __future__ import annotations

import pytest

from octavia_assets.resources.asr import ChunkTranscript, Transcriber
from octavia_assets.resources.types import Chunk, Word
from octavia_assets.transcript import CHUNK_LANGUAGE_MIN_PROBABILITY, lines_from, transcribe_by_language
from tests.conftest import SHARED_MEDIA


class Scripted(Transcriber):
    """Says each chunk's language from a script; transcribes a chunk with the language it is given."""
    version = "scripted"

    def __init__(self, found):
        self.found, self.asked = found, []

    def detect_language(self, wav16k_path):
        return "en", 1.0

    def chunk_languages(self, wav16k_path, chunks, main_language):
        return [self.found[c.index] for c in chunks]

    def transcribe(self, wav16k_path, chunks, language=None):
        self.asked.append((language, [c.index for c in chunks]))
        return [ChunkTranscript(chunk=c.index, text=f"{language}{c.index}",
                                words=[Word(c.start, c.end, f"{language}{c.index}", 0.9)], language=language)
                for c in chunks]


def test_each_chunk_is_transcribed_in_its_own_language():
    chunks = [Chunk(0, 0.0, 5.0), Chunk(1, 5.0, 9.0), Chunk(2, 9.0, 14.0), Chunk(3, 14.0, 18.0)]
    t = Scripted({0: ("en", 0.99), 1: ("es", 0.97), 2: ("es", CHUNK_LANGUAGE_MIN_PROBABILITY - 0.1), 3: ("en", 0.6)})
    out = transcribe_by_language(t, "unused.wav", chunks, "en")
    assert [r.chunk for r in out] == [0, 1, 2, 3]                       # chunk order kept
    assert [r.language for r in out] == ["en", "es", "en", "en"]        # an unsure chunk stays in the main one
    assert sorted(t.asked) == [("en", [0, 2, 3]), ("es", [1])]          # one call per language
    lines = lines_from(out, chunks, [])
    assert [ln.language for ln in lines] == ["en", "es", "en", "en"]


def test_the_base_transcriber_keeps_the_main_language():
    class Plain(Scripted):
        chunk_languages = Transcriber.chunk_languages
    t = Plain({})
    out = transcribe_by_language(t, "unused.wav", [Chunk(0, 0.0, 5.0)], "fr")
    assert [r.language for r in out] == ["fr"] and t.asked == [("fr", [0])]


def test_whisper_identifies_the_spanish_chunk_of_the_composite():
    pytest.importorskip("faster_whisper")
    dialogue = SHARED_MEDIA / "composites" / "dev" / "dialogue.wav"
    if not dialogue.is_file():
        pytest.skip("needs ../shared/media/composites/dev/dialogue.wav")
    from octavia_assets.resources.asr import FasterWhisperTranscriber
    t = FasterWhisperTranscriber(cpu_threads=2)
    chunks = [Chunk(0, 13.8, 23.39), Chunk(1, 39.34, 46.1), Chunk(2, 34.7, 36.44), Chunk(3, 40.0, 41.0)]
    (en, _), (es, p_es), short_en, too_short = t.chunk_languages(dialogue, chunks, "en")
    assert en == "en" and es == "es" and p_es >= CHUNK_LANGUAGE_MIN_PROBABILITY
    assert short_en[0] == "en"
    assert too_short == ("en", 1.0)                                      # 1 s: too little to tell


def test_language_id_and_decoding_share_one_encoder_pass(monkeypatch):
    pytest.importorskip("faster_whisper")
    dialogue = SHARED_MEDIA / "composites" / "dev" / "dialogue.wav"
    if not dialogue.is_file():
        pytest.skip("needs ../shared/media/composites/dev/dialogue.wav")
    from faster_whisper import WhisperModel

    from octavia_assets.resources.asr import FasterWhisperTranscriber
    t = FasterWhisperTranscriber(cpu_threads=2)
    chunks = [Chunk(0, 13.8, 23.39), Chunk(1, 39.34, 46.1), Chunk(2, 40.0, 41.0)]   # en, es, too short to tell
    encoded = []
    real_encode = WhisperModel.encode
    monkeypatch.setattr(WhisperModel, "encode", lambda self, f: encoded.append(1) or real_encode(self, f))
    fused = t.transcribe_in_languages(dialogue, chunks, "en", CHUNK_LANGUAGE_MIN_PROBABILITY)
    assert len(encoded) == 3                      # one pass per chunk, language id included
    encoded.clear()
    apart = Transcriber.transcribe_in_languages(t, dialogue, chunks, "en", CHUNK_LANGUAGE_MIN_PROBABILITY)
    assert len(encoded) == 5                      # language id, then decoding, each encoding again
    assert [r.language for r in fused] == ["en", "es", "en"]
    # The confident chunks decode greedily: identical. The 1 s Spanish chunk decoded as English falls
    # back to temperature sampling, which is random from run to run, so only its language is compared.
    assert [(r.chunk, r.text, r.words, r.language) for r in fused[:2]] == \
        [(r.chunk, r.text, r.words, r.language) for r in apart[:2]]
    assert fused[2].chunk == apart[2].chunk == 2 and fused[2].language == apart[2].language == "en"
