"""A user's own voice sample for a speaker of a video (the "personal cloned voice").

The sample lives in the media store next to the video's other user inputs, only sealed (AES-GCM
under the video's key, :mod:`.voice_vault`)::

    voices/<video>/main.wav.sealed         the video's main speaker (most speech)
    voices/<video>/<SPEAKER_xx>.wav.sealed one diarized speaker

:func:`store_user_sample` (the CLI's ``--voice-sample``) converts any audio file to 16 kHz mono WAV
and seals it. A plaintext file dropped by hand into ``voices/<video>/`` (``main.wav``,
``SPEAKER_01.flac``, ...) is sealed and its plaintext deleted the next time the voices stage runs
(:func:`seal_dropped_samples`). The voices stage then gives the sample precedence for its speaker:
a cloning engine clones it (it is handed over as that speaker's reference clip), a shipped-voice
engine speaks with the shipped voice closest to it (CAM++).
"""
from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import numpy as np

from .storage import MediaStore
from .voice_vault import seal, unseal

SAMPLE_RATE = 16000
MAIN = "main"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac")
SEALED_SUFFIX = ".wav.sealed"
# Shortest usable sample: CAM++ and XTTS both want a few seconds of speech.
MIN_SAMPLE_S = 2.0
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def samples_prefix(video: str) -> str:
    return f"voices/{video}/"


def sample_key(video: str, speaker: str = MAIN) -> str:
    if not _NAME.match(speaker) or speaker.startswith("."):
        raise ValueError(f"bad speaker name for a voice sample: {speaker!r} (use 'main' or a speaker id like SPEAKER_00)")
    return f"{samples_prefix(video)}{speaker}{SEALED_SUFFIX}"


def _wav16k_bytes(path: str | Path) -> bytes:
    """Any audio file as 16 kHz mono 16-bit WAV bytes; too short or silent raises ValueError."""
    import soundfile as sf

    from .media import read_audio, resample
    with tempfile.TemporaryDirectory(prefix="octavia-sample-") as tmp:
        wav = Path(tmp) / "sample.wav"
        try:
            resample(path, wav, SAMPLE_RATE, 1)
        except Exception as e:       # noqa: BLE001 - ffmpeg's reason, one line
            raise ValueError(f"voice sample {Path(path).name}: not readable audio ({e})") from None
        audio, _ = read_audio(wav, mono=True)
    if audio.size < MIN_SAMPLE_S * SAMPLE_RATE or float(np.abs(audio).max(initial=0.0)) < 1e-3:
        raise ValueError(f"voice sample {Path(path).name}: needs at least {MIN_SAMPLE_S:.0f} s of audible speech "
                         f"(got {audio.size / SAMPLE_RATE:.1f} s)")
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def store_user_sample(store: MediaStore, video: str, path: str | Path, speaker: str = MAIN) -> str:
    """Convert ``path`` to 16 kHz mono and store it sealed as ``speaker``'s sample; returns the key."""
    key = sample_key(video, speaker)
    store.put_bytes(seal(video, key, _wav16k_bytes(path)), key)
    return key


def seal_dropped_samples(store: MediaStore, video: str) -> list[str]:
    """Seal the plaintext audio files a user put in ``voices/<video>/`` and delete the plaintext."""
    sealed = []
    for obj in store.list_objects(samples_prefix(video)):
        name = obj.key[len(samples_prefix(video)):]
        stem, dot, suffix = name.rpartition(".")
        if "/" in name or not dot or f".{suffix.lower()}" not in AUDIO_SUFFIXES:
            continue
        with store.open_local(obj.key) as local:
            data = _wav16k_bytes(local)
        key = sample_key(video, stem)
        store.put_bytes(seal(video, key, data), key)
        store.delete(obj.key)
        sealed.append(key)
    return sealed


def user_samples(store: MediaStore, video: str, profiles: dict[str, dict]) -> dict[str, str]:
    """{speaker: sealed sample key} for this video: ``main`` goes to the speaker with the most speech;
    a sample named after a speaker wins over ``main`` for that speaker. Names that are no speaker of
    the video are ignored."""
    found = {}
    for obj in store.list_objects(samples_prefix(video)):
        name = obj.key[len(samples_prefix(video)):]
        if name.endswith(SEALED_SUFFIX) and "/" not in name:
            found[name[:-len(SEALED_SUFFIX)]] = obj.key
    out = {s: k for s, k in found.items() if s in profiles}
    if MAIN in found and profiles:
        main = min(profiles, key=lambda s: (-float(profiles[s].get("speech_s") or 0.0), s))
        out.setdefault(main, found[MAIN])
    return out


def sample_audio(store: MediaStore, video: str, key: str) -> np.ndarray:
    """The unsealed sample as 16 kHz float32 samples (in memory only)."""
    import soundfile as sf
    audio, sr = sf.read(io.BytesIO(unseal(video, key, store.read_bytes(key))), dtype="float32", always_2d=True)
    assert sr == SAMPLE_RATE, sr
    return audio.mean(axis=1)
