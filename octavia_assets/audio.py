"""audio: the soundtrack decoded once into the working formats the listening stages need."""

import time

import dagster as dg
import numpy as np

from .common import DOWNSTREAM, derived_key, fail, materialized, video_of, workdir
from .partitions import videos
from .resources.media import MediaError, extract_audio, read_audio
from .resources.storage import MediaStore
from .source import source_video

# Separation models expect 44.1 kHz stereo; VAD, diarization and ASR expect 16 kHz mono.
SEPARATION_RATE = 44100
SPEECH_RATE = 16000


def silence_fraction(samples: np.ndarray, rate: int, frame_s: float = 0.05, threshold_db: float = -50.0) -> float:
    n = int(frame_s * rate)
    frames = samples[: len(samples) // n * n].reshape(-1, n) if len(samples) >= n else samples[None, :]
    rms_db = 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-12)
    return float(np.mean(rms_db < threshold_db))


@dg.asset(partitions_def=videos, group_name="ingest", kinds={"ffmpeg"}, deps=[source_video],
          code_version="audio-v1", automation_condition=DOWNSTREAM)
def audio(context: dg.AssetExecutionContext, media_store: MediaStore) -> dg.MaterializeResult:
    """The soundtrack as 44.1 kHz stereo (for separation) and 16 kHz mono (for speech stages)."""
    started = time.perf_counter()
    video = video_of(context)
    facts = media_store.read_json(derived_key(video, "source", "probe.json"))
    stereo_key, mono_key = derived_key(video, "audio", "audio_44k.wav"), derived_key(video, "audio", "audio_16k.wav")
    with media_store.open_local(facts["object_key"]) as src, workdir("audio") as tmp:
        try:
            extract_audio(src, tmp / "stereo.wav", SEPARATION_RATE, 2)
            extract_audio(src, tmp / "mono.wav", SPEECH_RATE, 1)
        except MediaError as e:
            raise fail(context, f"cannot decode the soundtrack: {e}") from None
        mono, rate = read_audio(tmp / "mono.wav", mono=True)
        if len(mono) == 0:
            raise fail(context, "the audio stream decodes to no samples")
        media_store.put_file(tmp / "stereo.wav", stereo_key)
        media_store.put_file(tmp / "mono.wav", mono_key)
    peak = float(np.max(np.abs(mono)))
    return materialized(
        media_store, [stereo_key, mono_key], started,
        duration_s=round(len(mono) / rate, 3), source_channels=facts["streams"][0].get("channels") or 0,
        peak_dbfs=round(20 * np.log10(peak + 1e-12), 1), silent_fraction=round(silence_fraction(mono, rate), 3),
    )
