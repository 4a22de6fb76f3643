"""Production speech synthesis (engine ``xtts-v2``): Coqui XTTS v2 zero-shot cloning of each source
speaker from their own reference clips, weights from the local model directory only::

    $OCTAVIA_MODEL_DIR/xtts_v2/   config.json, model.pth, vocab.json, speakers_xtts.pth (coqui/XTTS-v2)

Licence: Coqui Public Model Licence, non-commercial.

Reference clips are voice data. The voices stage cuts each speaker's reference intervals (from the
sealed profiles) out of the vocals stem and stores them only sealed (AES-GCM, the video's key, see
:mod:`.voice_vault`) with :func:`seal_references`. For synthesis, :func:`opened_references` unseals
them into a private temporary folder that is deleted when the block ends; the conditioning latents
(GPT latents + speaker embedding) are computed once per speaker from those files and kept in
memory only. Each line's sampling is seeded from its text and voice, so a line re-synthesized
with the same inputs sounds the same. XTTS's native ``speed`` (decoder length scale) does the
timing fit's speed-up. Decoding is one line at a time (XTTS's autoregressive GPT decode has no
batched inference API); the GPU work saved is the per-speaker conditioning, done once.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .diarization import SAMPLE_RATE, _read_mono
from .gpu_env import import_gpu_package, models_version, torch_device
from .model_dir import model_path, require
from .storage import MediaStore
from .tts import Synthesizer, VoiceInfo, _base_language, _check_text, _peak_limit, gender_from_f0
from .types import VoiceChoice
from .voice_vault import seal, unseal

ENGINE = "xtts-v2"
COQUI_PIN = "coqui-tts==0.28.0"
MODEL_ID = "xtts_v2"
MODEL_FILES = ("config.json", "model.pth", "vocab.json")
#: XTTS v2's languages (its config.json lists the same); "zh" is spoken as "zh-cn".
XTTS_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu",
                  "ko", "ja", "hi")
CLONE_PREFIX = "clone:"
#: seconds of silence between two reference intervals joined into one clip
REFERENCE_GAP_S = 0.2


# --------------------------------------------------------------------------------------------------
# Reference clips: sealed at rest, plaintext only in a temporary folder while in use
# --------------------------------------------------------------------------------------------------

def reference_audio(wav16k: str | os.PathLike, intervals: list[dict], max_s: float = 30.0) -> np.ndarray:
    """The reference intervals (``{"start", "end"}``, best first) of a 16 kHz file, joined with short
    silences, at most ``max_s`` seconds of speech in all."""
    parts, total = [], 0.0
    gap = np.zeros(int(REFERENCE_GAP_S * SAMPLE_RATE), np.float32)
    for iv in intervals:
        if total >= max_s:
            break
        s, e = float(iv["start"]), min(float(iv["end"]), float(iv["start"]) + max_s - total)
        clip = _read_mono(Path(wav16k), s, e)
        if len(clip) == 0:
            continue
        parts.extend([clip.astype(np.float32), gap])
        total += len(clip) / SAMPLE_RATE
    return np.concatenate(parts[:-1]) if parts else np.zeros(0, np.float32)


def _wav_bytes(samples: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def seal_references(store: MediaStore, video: str, vocals16k: str | os.PathLike, profiles: dict[str, dict],
                    key_for: Callable[[str], str]) -> dict[str, str]:
    """Store each speaker's reference clip sealed under ``key_for(speaker)``; {speaker: key}.

    Speakers without reference intervals (no clean speech alone) get none. The plaintext exists
    only in memory here."""
    keys = {}
    for speaker, prof in sorted(profiles.items()):
        audio = reference_audio(vocals16k, prof.get("reference_intervals") or [])
        if len(audio) < SAMPLE_RATE // 2:
            continue
        key = key_for(speaker)
        store.put_bytes(seal(video, key, _wav_bytes(audio)), key)
        keys[speaker] = key
    return keys


@contextlib.contextmanager
def opened_references(store: MediaStore, video: str, keys: dict[str, str]) -> Iterator[dict[str, Path]]:
    """Unseal the reference clips into a private temporary folder (mode 0700) for the block's duration;
    {speaker: wav path}. The folder and its files are deleted on exit, error or not."""
    with tempfile.TemporaryDirectory(prefix="octavia-refs-") as tmp:
        os.chmod(tmp, 0o700)
        paths = {}
        for i, (speaker, key) in enumerate(sorted(keys.items())):
            path = Path(tmp) / f"ref{i:03d}.wav"      # no speaker name in the path
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(unseal(video, key, store.read_bytes(key)))
            paths[speaker] = path
        yield paths


def clone_voice_id(video: str, speaker: str) -> str:
    return f"{CLONE_PREFIX}{video}:{speaker}"


def line_seed(text: str, voice: str, language: str, speed: float) -> int:
    """A deterministic sampling seed per line (same inputs, same audio)."""
    return int(hashlib.sha256(f"{text}\0{voice}\0{language}\0{speed:.4f}".encode()).hexdigest()[:8], 16)


def xtts_language(language: str) -> str | None:
    lang = (language or "").strip().lower().replace("_", "-")
    base = _base_language(lang)
    if base == "zh":
        return "zh-cn"
    return base if base in XTTS_LANGUAGES else None


# --------------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------------

class XttsSynthesizer(Synthesizer):
    """XTTS v2 voice cloning; voices are ``clone:<video>:<speaker>`` ids prepared by :meth:`prepare_voices`."""

    name = ENGINE
    sample_rate = 24000
    supports_speed = True
    # XTTS's length scale stays natural within about 0.75-1.5x
    min_speed = 0.75
    max_speed = 1.5
    # XTTS warns past ~250 characters for most languages (its tokenizer char_limits)
    max_input_chars = 220
    #: the voices stage gives every speaker a clone of their own voice instead of choosing shipped voices
    clones_speakers = True

    def __init__(self, device: str | None = None, temperature: float = 0.75):
        self._device = device
        self.temperature = temperature
        self.version = models_version(ENGINE, COQUI_PIN, (MODEL_ID,)) + f"+t{temperature:g}"
        self._model = None
        self._latents: dict[str, tuple] = {}
        self._info: dict[str, VoiceInfo] = {}
        self._lock = threading.RLock()

    def _load(self):
        with self._lock:
            if self._model is None:
                root = require(MODEL_ID, MODEL_FILES)
                cfg_mod = import_gpu_package("TTS.tts.configs.xtts_config", ENGINE)
                xtts_mod = import_gpu_package("TTS.tts.models.xtts", ENGINE)
                config = cfg_mod.XttsConfig()
                config.load_json(str(root / "config.json"))
                model = xtts_mod.Xtts.init_from_config(config)
                model.load_checkpoint(config, checkpoint_dir=str(root), use_deepspeed=False, eval=True)
                self.device = torch_device(self._device)
                self._model = model.to(self.device)
            return self._model

    # -- voices ------------------------------------------------------------------------------------
    def voices(self) -> list[VoiceInfo]:
        return list(self._info.values())

    def supports_language(self, language: str) -> bool:
        return xtts_language(language) is not None

    def clone_choices(self, video: str, profiles: dict[str, dict], references: dict[str, str]) -> dict[str, VoiceChoice]:
        """Every speaker with a reference clip speaks with a clone of their own voice; one without
        (no clean speech of their own) borrows the clone of the speaker of the same gender with the
        most reference speech, else of anyone's."""
        out = {}
        for speaker in sorted(profiles):
            if speaker not in references:
                continue
            p = profiles[speaker]
            out[speaker] = VoiceChoice(
                speaker=speaker, engine=self.name, voice=clone_voice_id(video, speaker),
                reason=f"{speaker}: XTTS v2 zero-shot clone from {p.get('reference_s', 0):.1f} s of their own "
                       f"reference speech (SNR {p.get('reference_snr_db')} dB)")
        if profiles and not out:
            raise ValueError(f"no speaker of {video} has a reference clip (clean speech of their own): "
                             f"XTTS v2 has nobody to clone; use a shipped-voice engine for this video")
        for speaker in sorted(set(profiles) - set(out)):
            gender = profiles[speaker].get("gender")
            donors = sorted(out, key=lambda s: (profiles[s].get("gender") != gender,
                                                -float(profiles[s].get("reference_s") or 0), s))
            out[speaker] = VoiceChoice(speaker=speaker, engine=self.name, voice=out[donors[0]].voice,
                                       reason=f"{speaker}: no clean speech of their own to clone; "
                                              f"borrows {donors[0]}'s clone")
        return out

    def prepare_voices(self, video: str, reference_paths: dict[str, Path], profiles: dict[str, dict] | None = None,
                       gpt_cond_len: int = 30) -> list[str]:
        """Conditioning latents, once per speaker, from their (temporary, unsealed) reference files."""
        model = self._load()
        torch = import_gpu_package("torch", ENGINE)
        prepared = []
        with self._lock, torch.inference_mode():
            for speaker, path in sorted(reference_paths.items()):
                voice = clone_voice_id(video, speaker)
                if voice not in self._latents:
                    self._latents[voice] = model.get_conditioning_latents(
                        audio_path=[str(path)], gpt_cond_len=gpt_cond_len, max_ref_length=30)
                prof = (profiles or {}).get(speaker, {})
                f0 = prof.get("f0_hz")
                self._info[voice] = VoiceInfo(id=voice, gender=prof.get("gender") or (gender_from_f0(f0) if f0 else "unknown"),
                                              languages=[xtts_language(x) or x for x in XTTS_LANGUAGES], f0_hz=f0,
                                              note=f"XTTS v2 clone of {speaker}")
                prepared.append(voice)
        return prepared

    def release_voices(self, video: str) -> None:
        """Forget a video's latents (they are derived voice data)."""
        with self._lock:
            for voice in [v for v in self._latents if v.startswith(clone_voice_id(video, ""))]:
                self._latents.pop(voice, None)
                self._info.pop(voice, None)

    # -- synthesis ---------------------------------------------------------------------------------
    def synthesize(self, text: str, voice: str, language: str, speed: float = 1.0) -> np.ndarray:
        text = _check_text(text)
        lang = xtts_language(language)
        if lang is None:
            raise ValueError(f"XTTS v2 does not speak {language!r}; supported: {', '.join(XTTS_LANGUAGES)}")
        if not self.min_speed - 1e-9 <= speed <= self.max_speed + 1e-9:
            raise ValueError(f"speed {speed} outside XTTS's range {self.min_speed}-{self.max_speed}")
        with self._lock:
            if voice not in self._latents:
                raise KeyError(f"voice {voice!r} has no conditioning latents: prepare_voices() with the "
                               f"speaker's reference clips first (model {model_path(MODEL_ID)})")
            gpt_cond_latent, speaker_embedding = self._latents[voice]
            model = self._load()
            torch = import_gpu_package("torch", ENGINE)
            torch.manual_seed(line_seed(text, voice, lang, speed))
            with torch.inference_mode():
                out = model.inference(text, lang, gpt_cond_latent, speaker_embedding,
                                      temperature=self.temperature, speed=float(speed), enable_text_splitting=False)
        wav = out["wav"]
        wav = wav.detach().cpu().numpy() if hasattr(wav, "detach") else np.asarray(wav)
        return _peak_limit(np.asarray(wav, np.float32).ravel())
