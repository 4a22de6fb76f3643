"""pre_analysis: a quick listen to the whole soundtrack before the heavy stages.

What it finds steers them: a speech-only soundtrack skips separation (stems), and a confidently
detected language is handed to ASR (transcript) instead of being guessed again per file.
"""

import time

import dagster as dg
import soundfile as sf

from .audio import SPEECH_RATE, audio
from .common import DOWNSTREAM, derived_key, materialized, video_of
from .partitions import videos
from .resources.chunking import background_level_of_file
from .resources.diarization import estimate_speaker_count
from .resources.engines import AsrEngine, DiarizationEngine, VadEngine, engine_version
from .resources.media import ProbeResult
from .resources.storage import MediaStore

#: below this background score (share of non-speech time with sound 35 dB under the speech or
#: louder) the soundtrack counts as speech only and separation is skipped.
SPEECH_ONLY_MAX_BACKGROUND = 0.2
#: the language is passed to ASR only when language id is at least this sure.
LANGUAGE_MIN_PROBABILITY = 0.8


def transcriber_scan_s(transcriber) -> float:
    """Seconds from the start that language id looks at (all of it when the engine does not say)."""
    return getattr(transcriber, "LID_SCAN_SECONDS", 4 * 3600.0)


def analyse_soundtrack(wav16k_path, speech_detector, transcriber, embedder) -> dict:
    """Speech regions, background level, language and speaker-count hint of a 16 kHz WAV.

    Every step reads the file in blocks or windows, so memory does not grow with its length.
    """
    regions = speech_detector.speech_regions(wav16k_path)
    info = sf.info(str(wav16k_path))
    rate = info.samplerate
    heard = {"regions": regions, "duration_s": info.frames / rate, "speech_s": sum(e - s for s, e in regions),
             "background": background_level_of_file(wav16k_path, regions), "language": "und",
             "language_probability": 0.0, "speakers": {"speakers": 0, "windows": 0, "cluster_sizes": []}}
    if regions and rate == SPEECH_RATE:
        head, _ = sf.read(str(wav16k_path), stop=int(transcriber_scan_s(transcriber) * rate), dtype="float32",
                          always_2d=True)
        heard["language"], heard["language_probability"] = transcriber.detect_language_samples(head.mean(axis=1))
        heard["speakers"] = estimate_speaker_count(wav16k_path, regions, embedder)
    return heard


def plan(background_score: float | None, speech_ratio: float) -> dict:
    """Decisions for the downstream stages, from the measured figures."""
    speech_only = (speech_ratio > 0.0 and background_score is not None
                   and background_score < SPEECH_ONLY_MAX_BACKGROUND)
    return {"separate": not speech_only, "speech_only": speech_only}


@dg.asset(partitions_def=videos, group_name="listen", kinds={"onnx", "whisper"}, deps=[audio],
          code_version="pre-analysis-v1+" + "+".join(engine_version(s) for s in ("vad", "asr", "diarization")),
          automation_condition=DOWNSTREAM)
def pre_analysis(context: dg.AssetExecutionContext, media_store: MediaStore, vad: VadEngine, asr: AsrEngine,
                 diarization: DiarizationEngine) -> dg.MaterializeResult:
    """ffprobe facts, speech ratio, spoken language, speaker-count hint and a music/background score."""
    started = time.perf_counter()
    video = video_of(context)
    facts = ProbeResult.from_dict({k: v for k, v in media_store.read_json(
        derived_key(video, "source", "probe.json")).items() if k != "object_key"})
    stream = facts.audio
    with media_store.open_local(derived_key(video, "audio", "audio_16k.wav")) as src:
        heard = analyse_soundtrack(src, vad.get(), asr.get(), diarization.get_embedder())
    regions, duration, speech_s = heard["regions"], heard["duration_s"], heard["speech_s"]
    background, speakers = heard["background"], heard["speakers"]
    language, language_p = heard["language"], heard["language_probability"]
    decisions = plan(background["background_score"], speech_s / duration if duration else 0.0)
    doc = {
        "duration_s": round(duration, 3),
        "source": {"format": facts.format_name, "audio_codec": stream.codec_name if stream else None,
                   "channels": stream.channels if stream else None,
                   "sample_rate": stream.sample_rate if stream else None, "has_video": facts.video is not None},
        "speech_regions": regions,
        "speech_s": round(speech_s, 2),
        "speech_ratio": round(speech_s / duration, 3) if duration else 0.0,
        "language": language,
        "language_probability": round(language_p, 3),
        "speaker_count_hint": speakers["speakers"],
        "speaker_hint_clusters": speakers["cluster_sizes"],
        **background,
        **decisions,
    }
    out = derived_key(video, "pre_analysis", "pre_analysis.json")
    media_store.put_json(doc, out)
    if not regions:
        context.log.warning("no speech detected in the soundtrack")
    return materialized(media_store, [out], started, **{k: v for k, v in doc.items()
                                                        if isinstance(v, (int, float, str, bool)) and k != "source"},
                        source_channels=doc["source"]["channels"] or 0)
