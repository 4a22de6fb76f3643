"""Voice data at rest: what identifies a person's voice is sealed with AES-256-GCM, per video.

Voice data here is each speaker's profile (CAM++ embedding — a voice fingerprint —, pitch, gender
guess and the reference intervals that point at their cleanest speech). The per-video key is
derived with HKDF-SHA256 from a master key and the video id, so it is never stored anywhere: the
master key lives in ``OCTAVIA_VOICE_KEY`` (32 bytes, base64), or for a local install in a key file
outside the media store (``$DAGSTER_HOME/voice.key``, mode 0600), never next to the data.

Nonces are synthetic (SIV-style): HMAC-SHA256 of the object key and plaintext under a nonce key of
its own (HKDF, separate from the AES key), truncated to 96 bits. A nonce repeats only for the very
same plaintext under the same object key, which then seals to the same bytes and reveals nothing
new; a collision between different plaintexts needs about 2^48 objects under one video's key.
Determinism is wanted: re-runs keep their content-hash data versions. The nonce travels in the
sealed object, so objects sealed by the earlier derivation (AES key reused as the HMAC key) still
open: the format (MAGIC) is unchanged.

Not sealed, by decision: the vocals stem (``derived/<video>/stems/``). It is the source the
reference clips are cut from, but it is derived from the upload, which sits in ``uploads/`` in
plaintext (and whose voice is in the delivered video's original-audio track), and five stages
and every re-dub read it; sealing it would protect nothing the upload does not already expose.
It is covered by the store's access control and the retention job. What is voice data proper
(profiles: embeddings and reference intervals; reference clips) is sealed, and deleted once every
target language of the video is mixed (``speakers.delete_voice_data``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .storage import MediaStore

#: sealed objects start with this tag, so a reader can tell them from plaintext JSON.
MAGIC = b"OCTV1"
NONCE_BYTES = 12


class VoiceKeyError(ValueError):
    """The master key is missing, malformed, or not the one the data was sealed with."""


def master_key() -> bytes:
    raw = os.environ.get("OCTAVIA_VOICE_KEY", "").strip()
    if raw:
        try:
            key = base64.b64decode(raw, validate=True)
        except ValueError:
            raise VoiceKeyError("OCTAVIA_VOICE_KEY is not base64 (expected 32 random bytes, base64)") from None
        if len(key) != 32:
            raise VoiceKeyError(f"OCTAVIA_VOICE_KEY decodes to {len(key)} bytes, expected 32")
        return key
    from ..settings import octavia_home
    path = octavia_home() / "voice.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temp file, then linked into place: a worker starting at the
        # same time sees either no key file or the complete one, and both end up with one key.
        tmp = path.with_name(f".voice.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return base64.b64decode(path.read_text().strip())


def video_key(video: str, master: bytes | None = None) -> bytes:
    """The AES-256 key of one video: HKDF-SHA256(master, info = video id)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"octavia-voice-data-v1",
                info=video.encode()).derive(master if master is not None else master_key())


def seal(video: str, object_key: str, plaintext: bytes) -> bytes:
    """MAGIC | nonce | AES-GCM(ciphertext+tag); the object key is authenticated, so a sealed object
    copied under another key (or another video) does not open.

    The nonce is a keyed hash of the plaintext (synthetic IV): the same profiles seal to the same
    bytes, so content-hash data versions stay stable on re-runs, and a nonce repeats only with
    the very same plaintext, which reveals nothing new."""
    master = master_key()
    key = video_key(video, master)
    nonce_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"octavia-voice-nonce-v1",
                     info=video.encode()).derive(master)
    nonce = hmac.new(nonce_key, object_key.encode() + b"\0" + plaintext, hashlib.sha256).digest()[:NONCE_BYTES]
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, object_key.encode())


def unseal(video: str, object_key: str, sealed: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    if not sealed.startswith(MAGIC):
        raise VoiceKeyError(f"{object_key}: not sealed voice data")
    nonce = sealed[len(MAGIC):len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(video_key(video)).decrypt(nonce, sealed[len(MAGIC) + NONCE_BYTES:], object_key.encode())
    except InvalidTag:
        raise VoiceKeyError(f"{object_key}: cannot open the voice data with this OCTAVIA_VOICE_KEY "
                            "(wrong key, or the object was altered)") from None


def put_sealed_json(store: MediaStore, video: str, obj: Any, key: str) -> None:
    store.put_bytes(seal(video, key, json.dumps(obj, ensure_ascii=False).encode()), key)


def read_sealed_json(store: MediaStore, video: str, key: str) -> Any:
    return json.loads(unseal(video, key, store.read_bytes(key)))
