"""Voice data at rest: speaker profiles (embedding = voice fingerprint, pitch, reference intervals)
are sealed with AES-GCM under a per-video key derived from OCTAVIA_VOICE_KEY; nothing in the media
store holds them in plaintext, and the key is not in the store."""
import base64
import json

import dagster as dg
import pytest

from octavia_assets.definitions import defs as real_defs
from octavia_assets.registry import register_upload
from octavia_assets.resources import voice_vault
from octavia_assets.speakers import voice_profiles, voice_profiles_key
from tests.conftest import SAMPLE_VIDEO, make_media
from tests.fakes import fake_resources

MASTER = base64.b64encode(bytes(range(32))).decode()


def test_voice_profiles_are_sealed_and_nothing_plaintext_is_left_in_the_store(octavia_home, tmp_path, monkeypatch):
    monkeypatch.setenv("OCTAVIA_VOICE_KEY", MASTER)
    clip = make_media(tmp_path / "talk.mp4", "-t", "6", "-i", str(SAMPLE_VIDEO), "-c:v", "copy", "-c:a", "aac")
    defs = dg.Definitions(assets=list(real_defs.assets), jobs=list(real_defs.jobs), resources=fake_resources())
    store = fake_resources()["media_store"]
    with dg.instance_for_test() as instance:
        video = register_upload(store, store.put_file(clip, "uploads/talk.mp4"))
        instance.add_dynamic_partitions("videos", [video])
        assert defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, partition_key=video).success
    profiles = voice_profiles(store, video)
    assert profiles and all(len(p["embedding"]) == 192 for p in profiles.values())
    # Scan every object: no embedding, reference interval or key material in plaintext.
    key_b64, key_hex = MASTER.encode(), voice_vault.video_key(video).hex().encode()
    sealed = store.read_bytes(voice_profiles_key(video))
    for info in store.list_objects("", limit=100_000):
        data = store.read_bytes(info.key)
        assert b"embedding" not in data and b"reference_intervals" not in data, info.key
        assert key_b64 not in data and key_hex not in data and voice_vault.video_key(video) not in data, info.key
        assert json.dumps(profiles).encode()[:200] not in data
    assert sealed.startswith(voice_vault.MAGIC)
    # The per-video key opens only this video's object under its own key name.
    with pytest.raises(voice_vault.VoiceKeyError, match="cannot open"):
        voice_vault.unseal("another-video", voice_profiles_key(video), sealed)
    with pytest.raises(voice_vault.VoiceKeyError, match="cannot open"):
        voice_vault.unseal(video, "derived/x/speaker_map/voice_profiles.sealed", sealed)
    monkeypatch.setenv("OCTAVIA_VOICE_KEY", base64.b64encode(b"\x01" * 32).decode())
    with pytest.raises(voice_vault.VoiceKeyError, match="wrong key"):
        voice_profiles(store, video)


def test_sealing_is_deterministic_so_reruns_keep_their_data_version(monkeypatch):
    monkeypatch.setenv("OCTAVIA_VOICE_KEY", MASTER)
    a = voice_vault.seal("v1", "k", b'{"SPEAKER_00": {}}')
    assert a == voice_vault.seal("v1", "k", b'{"SPEAKER_00": {}}')
    assert a != voice_vault.seal("v2", "k", b'{"SPEAKER_00": {}}')
    assert voice_vault.unseal("v1", "k", a) == b'{"SPEAKER_00": {}}'


def test_a_malformed_master_key_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("OCTAVIA_VOICE_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(voice_vault.VoiceKeyError, match="expected 32"):
        voice_vault.master_key()


def test_without_a_configured_key_a_local_key_file_is_made_outside_the_media_store(octavia_home, monkeypatch):
    monkeypatch.delenv("OCTAVIA_VOICE_KEY", raising=False)
    key = voice_vault.master_key()
    assert len(key) == 32 and voice_vault.master_key() == key
    path = octavia_home / "voice.key"
    assert path.is_file() and oct(path.stat().st_mode & 0o777) == "0o600"
    assert not (octavia_home / "media").exists() or "voice.key" not in {p.name for p in (octavia_home / "media").rglob("*")}


def test_objects_sealed_with_the_earlier_nonce_derivation_still_open(monkeypatch):
    # Earlier seals derived the nonce with the AES key itself; the nonce travels in the object.
    import hashlib
    import hmac
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    monkeypatch.setenv("OCTAVIA_VOICE_KEY", MASTER)
    key, plaintext = voice_vault.video_key("v1"), b'{"SPEAKER_00": {}}'
    nonce = hmac.new(key, b"k\0" + plaintext, hashlib.sha256).digest()[:voice_vault.NONCE_BYTES]
    earlier = voice_vault.MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, b"k")
    assert voice_vault.unseal("v1", "k", earlier) == plaintext
    assert voice_vault.seal("v1", "k", plaintext)[len(voice_vault.MAGIC):][:12] != nonce   # separate nonce key now
