"""Voice data is deleted after the final mix: the speakers' voice profiles (embedding = voice
fingerprint, reference intervals) and their sealed reference clips go once every target language of
the video is mixed; a later re-dub re-derives what it needs from the stems. A scan of the whole
store after a full run finds no voice data left and no audio among the voice data."""
import base64

import dagster as dg
import pytest

from octavia_assets.definitions import defs as real_defs
from octavia_assets.partitions import video_language_key
from octavia_assets.registry import register_upload
from octavia_assets.resources import voice_vault
from octavia_assets.resources.prod_tts_xtts import seal_references
from octavia_assets.settings import target_languages
from octavia_assets.speakers import (
    delete_voice_data,
    reference_clips_prefix,
    restore_reference_clips,
    voice_profiles,
    voice_profiles_key,
)
from tests.conftest import SAMPLE_VIDEO, make_media
from tests.fakes import FakeDiarizationEngine, fake_resources

MASTER = base64.b64encode(bytes(range(32))).decode()
# Container/codec signatures of audio a voice could be recovered from.
AUDIO_MAGICS = (b"RIFF", b"WAVE", b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"ftypM4A", b"caff")
# Objects that are audio by design: the upload, the working audio and stems, the dub, the mixes and
# the delivered video. None of them is voice data kept for voice matching or cloning.
AUDIO_BY_DESIGN = ("uploads/", "/audio/", "/stems/", "/dub/", "final_mix.wav", "outputs/")


def _run(defs, job, instance, partition_key):
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition_key,
                                                          raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]


def test_voice_data_is_gone_after_the_final_mix_and_a_redub_rederives_it(octavia_home, tmp_path, monkeypatch):
    monkeypatch.setenv("OCTAVIA_VOICE_KEY", MASTER)
    clip = make_media(tmp_path / "talk.mp4", "-t", "6", "-i", str(SAMPLE_VIDEO), "-c:v", "copy", "-c:a", "aac")
    defs = dg.Definitions(assets=list(real_defs.assets), jobs=list(real_defs.jobs), resources=fake_resources())
    store = fake_resources()["media_store"]
    langs = target_languages()
    with dg.instance_for_test() as instance:
        video = register_upload(store, store.put_file(clip, "uploads/talk.mp4"))
        instance.add_dynamic_partitions("videos", [video])
        _run(defs, "ingest_job", instance, video)
        profiles = voice_profiles(store, video)
        assert profiles and all(p["reference_intervals"] for p in profiles.values())
        # What a cloning engine's voices stage stores: each speaker's reference clip, sealed.
        with store.open_local(f"derived/{video}/stems/vocals_16k.wav") as vocals:
            refs = seal_references(store, video, vocals, profiles,
                                   lambda s: reference_clips_prefix(video) + f"{s}.wav.sealed")
        assert refs
        clips = {k: voice_vault.unseal(video, k, store.read_bytes(k)) for k in refs.values()}
        assert all(c.startswith(b"RIFF") for c in clips.values())   # sealed, the plaintext is a WAV

        for lang in langs[:-1]:
            _run(defs, "dub_job", instance, video_language_key(video, lang))
            assert store.exists(voice_profiles_key(video)), "deleted before every language was mixed"
        _run(defs, "dub_job", instance, video_language_key(video, langs[-1]))
        _run(defs, "deliver_job", instance, video)
        assert store.exists(f"outputs/{video}/{video}.mp4") or store.list_objects(f"outputs/{video}/")

        # The scan: no voice profile, no reference clip, nothing audio among the voice data, and no
        # plaintext embedding or reference interval anywhere in the store.
        objects = store.list_objects("", limit=100_000)
        keys = [o.key for o in objects]
        assert voice_profiles_key(video) not in keys
        assert not [k for k in keys if k.startswith(reference_clips_prefix(video))], keys
        for key in keys:
            data = store.read_bytes(key)
            assert b"embedding" not in data and b"reference_intervals" not in data, key
            if key.endswith(".sealed"):
                assert data.startswith(voice_vault.MAGIC), key
            if any(part in key for part in AUDIO_BY_DESIGN):
                continue   # the vocals stem is where the clips were cut from: see voice_vault's docstring
            assert not any(data[:12].find(m) >= 0 for m in AUDIO_MAGICS), f"audio where it does not belong: {key}"
            for clip in clips.values():
                assert clip[44:4044] not in data, f"{key} holds a reference clip's samples"

        # A re-dub after the deletion: voices re-derives the profiles in memory (same choice), writes
        # no voice data back, and the reference clips come back identical from the stems.
        before = store.read_json(f"derived/{video}/voices/voices.json")
        assert defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key=video, asset_selection=[dg.AssetKey("voices")]).success
        after = store.read_json(f"derived/{video}/voices/voices.json")
        # (the reason may now cite the speaker registry, which learnt this video in the first run)
        assert {s: (v["voice"], v["pitch_shift_semitones"]) for s, v in after["voices"].items()} == \
            {s: (v["voice"], v["pitch_shift_semitones"]) for s, v in before["voices"].items()}
        assert not store.exists(voice_profiles_key(video))
        assert voice_profiles(store, video, FakeDiarizationEngine()) == profiles
        with pytest.raises(FileNotFoundError, match="deleted after its final mix"):
            voice_profiles(store, video)
        restored = restore_reference_clips(store, video, refs, FakeDiarizationEngine())
        assert restored == refs
        assert {k: voice_vault.unseal(video, k, store.read_bytes(k)) for k in refs.values()} == clips
        # ...and the next final mix deletes them again.
        _run(defs, "dub_job", instance, video_language_key(video, langs[-1]))
        assert not store.list_objects(reference_clips_prefix(video))


def test_deletion_waits_for_every_language_and_can_be_turned_off(media_store, monkeypatch):
    monkeypatch.setenv("OCTAVIA_VOICE_KEY", MASTER)
    voice_vault.put_sealed_json(media_store, "v", {"S": {"embedding": [1.0]}}, voice_profiles_key("v"))
    media_store.put_bytes(b"sealed clip", reference_clips_prefix("v") + "S.wav.sealed")
    media_store.put_bytes(b"user sample", "voices/v/main.wav.sealed")
    media_store.put_bytes(b"mix", "derived/v/pt/final_mix.wav")
    assert delete_voice_data(media_store, "v", ["pt", "es"]) == []          # es not mixed yet
    media_store.put_bytes(b"mix", "derived/v/es/final_mix.wav")
    monkeypatch.setenv("OCTAVIA_DELETE_VOICE_DATA", "0")
    assert delete_voice_data(media_store, "v", ["pt", "es"]) == []
    monkeypatch.delenv("OCTAVIA_DELETE_VOICE_DATA")
    assert sorted(delete_voice_data(media_store, "v", ["pt", "es"])) == sorted(
        [voice_profiles_key("v"), reference_clips_prefix("v") + "S.wav.sealed"])
    assert media_store.exists("voices/v/main.wav.sealed")      # the user's own sample is theirs
    with pytest.raises(FileNotFoundError, match="voice samples"):
        media_store.delete("voices/v/main.wav.sealed")
        restore_reference_clips(media_store, "v", {"S": "voices/v/main.wav.sealed"}, FakeDiarizationEngine())
