"""Remote TTS over the OpenAI-compatible ``POST {base}/audio/speech`` API (engine name ``openai-speech``).

Any server speaking that API works: OpenAI itself, or a self-hosted / serverless worker (the seeds'
VibeVoice worker exposes one). Configuration from the environment:

* ``OCTAVIA_TTS_URL``      base URL including the version, e.g. ``https://host/v1`` (required)
* ``OCTAVIA_TTS_API_KEY``  bearer token (optional; never logged or put in errors)
* ``OCTAVIA_TTS_MODEL``    the ``model`` field (default ``tts-1``)
* ``OCTAVIA_TTS_VOICES``   ``voice:gender[:f0_hz]`` comma-separated (default OpenAI's six voices)
* ``OCTAVIA_TTS_LANGUAGES`` ISO 639-1 codes the server speaks (default ``en,pt,es,fr,de,it``)
* ``OCTAVIA_TTS_TIMEOUT_S`` per request (default 120), ``OCTAVIA_TTS_RETRIES`` (default 3)
* ``OCTAVIA_TTS_NATIVE_SPEED`` ``0`` for servers that ignore ``speed``: it is not sent, and lines
  too long for their slot are time-stretched instead (default ``1``)

Requests ask for ``response_format: wav``; 5xx, 429 and connection errors are retried with
exponential backoff (``Retry-After`` honoured), other 4xx fail at once with the server's message.
"""
from __future__ import annotations

import io
import json
import math
import os
import random
import struct
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from .tts import Synthesizer, VoiceInfo, _check_text, _peak_limit

#: OpenAI's voices with the gender they are usually heard as (pitch measured on first use).
DEFAULT_VOICES = "alloy:female,echo:male,fable:male,onyx:male,nova:female,shimmer:female"
DEFAULT_LANGUAGES = "en,pt,es,fr,de,it"


class RemoteTtsError(RuntimeError):
    """The server refused the request (4xx) or kept failing after the retries."""


def _parse_voices(raw: str) -> list[VoiceInfo]:
    voices = []
    for item in [x.strip() for x in raw.split(",") if x.strip()]:
        parts = item.split(":")
        if len(parts) not in (2, 3) or parts[1] not in ("male", "female") or not parts[0]:
            raise ValueError(f"OCTAVIA_TTS_VOICES: {item!r} is not 'voice:male|female[:f0_hz]'")
        voices.append(VoiceInfo(id=parts[0], gender=parts[1], languages=[],
                                f0_hz=float(parts[2]) if len(parts) == 3 else None, note="remote voice"))
    if not voices:
        raise ValueError("OCTAVIA_TTS_VOICES is empty")
    return voices


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """float32 mono samples and rate of a WAV body, streamed ones included (a data size of 0 or
    0xFFFFFFFF, written before the length was known: PCM 16/32-bit and float32 are read to the end)."""
    import soundfile as sf
    try:
        audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001 - fall back to the tolerant parser below
        audio, sr = None, 0
    if audio is not None and (len(audio) or len(data) <= 44):   # data size 0 reads as empty: parse below
        return audio.mean(axis=1), int(sr)
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RemoteTtsError(f"response is not a WAV file (starts with {data[:16]!r})")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", data[body:body + 16])
        elif cid == b"data":
            if fmt is None:
                break
            tag, channels, sr, _, _, bits = fmt
            end = len(data) if size in (0, 0xFFFFFFFF) or body + size > len(data) else body + size
            raw = data[body:end]
            if tag == 1 and bits == 16:
                x = np.frombuffer(raw[:len(raw) // 2 * 2], "<i2").astype(np.float32) / 32768.0
            elif tag == 1 and bits == 32:
                x = np.frombuffer(raw[:len(raw) // 4 * 4], "<i4").astype(np.float32) / 2147483648.0
            elif tag == 3 and bits == 32:
                x = np.frombuffer(raw[:len(raw) // 4 * 4], "<f4").astype(np.float32)
            else:
                break
            x = x[:len(x) // channels * channels].reshape(-1, channels)
            return x.mean(axis=1), int(sr)
        pos = body + size + (size & 1)
    raise RemoteTtsError("response WAV has no readable PCM data chunk")


class RemoteSpeechSynthesizer(Synthesizer):
    """Synthesizer over an OpenAI-compatible speech endpoint; output resampled to ``sample_rate``."""

    name = "openai-speech"
    min_speed = 0.25        # the API's documented range
    max_speed = 4.0
    max_input_chars = 1000
    thread_safe = True      # one HTTP request per call: dubbed_chunks may send several lines at once

    def __init__(self, url: str | None = None, api_key: str | None = None, model: str | None = None,
                 voices: str | None = None, languages: str | None = None, sample_rate: int = 24000,
                 timeout_s: float | None = None, retries: int | None = None, backoff_s: float = 1.0,
                 native_speed: bool | None = None):
        env = os.environ
        base = (url or env.get("OCTAVIA_TTS_URL") or "").strip()
        if not base:
            raise ValueError("openai-speech TTS needs OCTAVIA_TTS_URL (e.g. https://host/v1)")
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"OCTAVIA_TTS_URL must be an http(s) URL, not {base!r}")
        if parsed.username or parsed.password:
            raise ValueError("OCTAVIA_TTS_URL must not carry credentials: use OCTAVIA_TTS_API_KEY")
        self._endpoint = base.rstrip("/") + ("" if base.rstrip("/").endswith("/audio/speech") else "/audio/speech")
        self._api_key = api_key if api_key is not None else env.get("OCTAVIA_TTS_API_KEY") or None
        self.model = model or env.get("OCTAVIA_TTS_MODEL", "tts-1")
        self._voices = _parse_voices(voices or env.get("OCTAVIA_TTS_VOICES", DEFAULT_VOICES))
        langs = languages or env.get("OCTAVIA_TTS_LANGUAGES", DEFAULT_LANGUAGES)
        self.languages = [x.strip().lower() for x in langs.split(",") if x.strip()]
        for v in self._voices:
            v.languages = list(self.languages)
        self.sample_rate = int(sample_rate)
        self.timeout_s = float(timeout_s if timeout_s is not None else env.get("OCTAVIA_TTS_TIMEOUT_S", 120))
        self.retries = int(retries if retries is not None else env.get("OCTAVIA_TTS_RETRIES", 3))
        self.backoff_s = float(backoff_s)
        if native_speed is None:
            native_speed = env.get("OCTAVIA_TTS_NATIVE_SPEED", "1").strip().lower() not in ("0", "false", "no")
        self.supports_speed = bool(native_speed)
        # The server and model identify the voice output; the key and path details do not.
        self.version = (f"openai-speech:{self.model}@{parsed.hostname}{parsed.path.rstrip('/')}+{self.sample_rate}"
                        + ("" if self.supports_speed else "-nospeed"))
        self.requests_made = 0

    def __repr__(self) -> str:          # never shows the key
        return f"RemoteSpeechSynthesizer({self._endpoint!r}, model={self.model!r})"

    def voices(self) -> list[VoiceInfo]:
        return list(self._voices)

    def supports_language(self, language: str) -> bool:
        return (language or "").strip().lower().replace("_", "-").split("-")[0] in self.languages

    def synthesize(self, text: str, voice: str, language: str, speed: float = 1.0) -> np.ndarray:
        from scipy.signal import resample_poly

        text = _check_text(text)
        if voice not in {v.id for v in self._voices}:
            raise ValueError(f"unknown remote voice {voice!r}; configured: {[v.id for v in self._voices]}")
        if not self.supports_language(language):
            raise ValueError(f"remote TTS is configured for {self.languages}, not {language!r}")
        if not self.min_speed - 1e-9 <= speed <= self.max_speed + 1e-9:
            raise ValueError(f"speed {speed} outside {self.min_speed}-{self.max_speed}")
        request = {"model": self.model, "input": text, "voice": voice, "response_format": "wav"}
        if self.supports_speed:
            request["speed"] = round(float(speed), 4)
        elif abs(speed - 1.0) > 1e-9:
            raise ValueError("OCTAVIA_TTS_NATIVE_SPEED=0: this server is not asked for other speeds")
        body = json.dumps(request).encode()
        audio, sr = decode_wav(self._post(body))
        if sr != self.sample_rate:
            g = math.gcd(sr, self.sample_rate)
            audio = resample_poly(audio, self.sample_rate // g, sr // g).astype(np.float32)
        if not audio.size:
            raise RemoteTtsError("the server returned an empty WAV")
        return _peak_limit(audio)

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "audio/wav"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff_s * (2 ** attempt) * (0.75 + 0.5 * random.random())
            req = urllib.request.Request(self._endpoint, data=body, headers=headers, method="POST")
            self.requests_made += 1
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return resp.read()
            except urllib.error.HTTPError as e:
                detail = e.read(500).decode("utf-8", "replace").strip()
                last = f"HTTP {e.code} from {self._endpoint}: {detail[:300]}"
                if e.code != 429 and e.code < 500:
                    raise RemoteTtsError(f"remote TTS refused the request: {last}") from None
                retry_after = e.headers.get("Retry-After") if e.headers else None
                if retry_after and retry_after.strip().isdigit():
                    wait = min(float(retry_after), 60.0)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = f"{type(e).__name__} talking to {self._endpoint}: {reason}"
            if attempt < self.retries:
                time.sleep(wait)
        raise RemoteTtsError(f"remote TTS failed after {self.retries + 1} attempts: {last}")
