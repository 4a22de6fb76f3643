"""Fast, deterministic test doubles for the model-bearing engines (unit tests of orchestration only;
the demo and the end-to-end test use the real engines)."""
import numpy as np
import soundfile as sf

from octavia_assets.resources.asr import ChunkTranscript, Transcriber
from octavia_assets.resources.diarization import Diarizer
from octavia_assets.resources.engines import AsrEngine, DiarizationEngine, SeparationEngine, TranslationEngine, TtsEngine
from octavia_assets.resources.media import read_audio, write_audio
from octavia_assets.resources.separation import Separator
from octavia_assets.resources.translation import Translator
from octavia_assets.resources.tts import Synthesizer, VoiceInfo
from octavia_assets.resources.types import SpeakerTurn, Word


class FakeSeparator(Separator):
    version = "fake-separator"

    def separate(self, audio_path, vocals_path, background_path) -> dict:
        audio, rate = read_audio(audio_path)
        write_audio(vocals_path, audio, rate)
        write_audio(background_path, audio * 0.2, rate)
        return {"engine": "fake"}


class FakeDiarizer(Diarizer):
    version = "fake-diarizer"

    def diarize(self, wav16k_path):
        duration = sf.info(str(wav16k_path)).duration
        return [SpeakerTurn(0.0, duration / 2, "SPEAKER_00"), SpeakerTurn(duration / 2, duration, "SPEAKER_01")]


class FakeEmbedder:
    version = "fake-embedder"

    def embed(self, samples):
        v = np.ones(192, np.float32) * (1 + float(np.mean(np.abs(samples))))
        return v / np.linalg.norm(v)


class FakeTranscriber(Transcriber):
    version = "fake-asr"

    def detect_language(self, wav16k_path):
        return "en", 1.0

    def detect_language_samples(self, samples):
        return "en", 1.0

    def transcribe(self, wav16k_path, chunks, language=None):
        out = []
        for c in chunks:
            n = max(1, int(c.duration))
            step = c.duration / n
            # A different model hears different words: the text depends on the version.
            tag = "v2" if "upgraded" in self.version else "w"
            words = [Word(c.start + i * step, c.start + (i + 0.8) * step, f"{tag}{c.index}_{i}", 0.9) for i in range(n)]
            out.append(ChunkTranscript(chunk=c.index, text=" ".join(w.text for w in words), words=words, language="en"))
        return out


class FakeTranslator(Translator):
    version = "fake-mt"
    name = "fake-mt"

    def supports(self, source, target):
        return True

    def translate(self, texts, source, target):
        return [f"{target}: {t}" for t in texts]


class FakeSynthesizer(Synthesizer):
    """Speaks 40 ms of tone per character: deterministic, so re-runs produce identical bytes."""
    version = "fake-tts"
    name = "fake"
    sample_rate = 24000
    calls = 0

    def voices(self):
        return [VoiceInfo("fa", "female", [], f0_hz=220.0), VoiceInfo("fb", "female", [], f0_hz=260.0),
                VoiceInfo("ma", "male", [], f0_hz=110.0), VoiceInfo("mb", "male", [], f0_hz=130.0)]

    def supports_language(self, language):
        return True

    def synthesize(self, text, voice, language, speed=1.0):
        FakeSynthesizer.calls += 1
        n = int(len(text) * 0.04 / speed * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        freq = 200 if "upgraded" in self.version else 180   # a new model sounds different
        return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


class FakeSeparationEngine(SeparationEngine):
    def get(self):
        return FakeSeparator()


class FakeDiarizationEngine(DiarizationEngine):
    def get(self):
        return FakeDiarizer()

    def get_embedder(self):
        return FakeEmbedder()


class FakeAsrEngine(AsrEngine):
    def get(self):
        return FakeTranscriber()


class FakeTranslationEngine(TranslationEngine):
    def get(self):
        return FakeTranslator()


class FakeTtsEngine(TtsEngine):
    def get(self, language=None):
        return FakeSynthesizer()


def fake_resources() -> dict:
    """Real media store and VAD; fakes for the model-bearing stages."""
    from octavia_assets.resources.engines import VadEngine
    from octavia_assets.resources.storage import LocalMediaStore
    return {"media_store": LocalMediaStore(), "separation": FakeSeparationEngine(), "vad": VadEngine(),
            "diarization": FakeDiarizationEngine(), "asr": FakeAsrEngine(), "translator": FakeTranslationEngine(),
            "tts": FakeTtsEngine()}
