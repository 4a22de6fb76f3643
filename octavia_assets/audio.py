"""audio: the soundtrack decoded once into the working formats the listening stages need."""

import time

import dagster as dg
import numpy as np

from .common import DOWNSTREAM, derived_key, fail, materialized, video_of, workdir
from .partitions import videos
from .resources.media import MediaError, extract_audio
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


def soundtrack_stats(path, frame_s: float = 0.05, threshold_db: float = -50.0) -> tuple[int, int, float, float]:
    """(samples, rate, peak, ``silence_fraction``) of a mono WAV, read a block of whole frames at a time:
    an hour at 16 kHz is 230 MB of float32, twice that with the frame energies."""
    import soundfile as sf
    rate = sf.info(str(path)).samplerate
    n = max(1, int(frame_s * rate))
    total, peak, silent, frames, first = 0, 0.0, 0, 0, None
    for block in sf.blocks(str(path), blocksize=n * 4096, dtype="float32", always_2d=True):
        x = block[:, 0]
        first = x if first is None else first
        total += len(x)
        peak = max(peak, float(np.max(np.abs(x)))) if len(x) else peak
        whole = x[: len(x) // n * n].reshape(-1, n)
        if len(whole):
            rms_db = 20 * np.log10(np.sqrt(np.mean(whole ** 2, axis=1)) + 1e-12)
            silent += int(np.sum(rms_db < threshold_db))
            frames += len(whole)
    if not frames:     # shorter than one frame: one short frame, as silence_fraction does
        return total, rate, peak, silence_fraction(first, rate, frame_s, threshold_db) if total else 0.0
    return total, rate, peak, silent / frames


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
        samples, rate, peak, silent = soundtrack_stats(tmp / "mono.wav")
        if samples == 0:
            raise fail(context, "the audio stream decodes to no samples")
        media_store.put_file(tmp / "stereo.wav", stereo_key)
        media_store.put_file(tmp / "mono.wav", mono_key)
    return materialized(
        media_store, [stereo_key, mono_key], started,
        duration_s=round(samples / rate, 3), source_channels=facts["streams"][0].get("channels") or 0,
        peak_dbfs=round(20 * np.log10(peak + 1e-12), 1), silent_fraction=round(silent, 3),
    )
