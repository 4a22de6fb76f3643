"""Speaker registry: the same person keeps the same voice across videos."""
import numpy as np

from octavia_assets.resources.speaker_registry import apply_registry, read_registry
from octavia_assets.resources.types import VoiceChoice


def _emb(seed, noise=0.0, base=None):
    rng = np.random.default_rng(seed)
    v = (base if base is not None else rng.normal(size=192)) + noise * rng.normal(size=192)
    return (v / np.linalg.norm(v)).tolist()


def _choice(speaker, voice, pitch=0.0):
    return VoiceChoice(speaker=speaker, engine="kokoro", voice=voice, pitch_shift_semitones=pitch, reason="picked")


def test_same_person_same_voice_across_videos(media_store):
    alice, bob = np.random.default_rng(1).normal(size=192), np.random.default_rng(2).normal(size=192)
    first = apply_registry(media_store, "video-a",
                           {"A": {"embedding": _emb(0, base=alice), "speech_s": 9},
                            "B": {"embedding": _emb(0, base=bob), "speech_s": 5}},
                           {"A": _choice("A", "jf_alpha", -1.0), "B": _choice("B", "jm_kumo", 2.0)}, "kokoro")
    assert first["A"].voice == "jf_alpha"                       # new people keep the chosen voices
    assert len(read_registry(media_store)["people"]) == 2
    # Video b: Alice again (another recording: a noisy embedding), plus a stranger. The voice choice
    # for b alone would have given Alice another voice; the registry puts hers back.
    second = apply_registry(media_store, "video-b",
                            {"X": {"embedding": _emb(3, noise=0.03, base=alice), "speech_s": 4},
                             "Y": {"embedding": _emb(4), "speech_s": 6}},
                            {"X": _choice("X", "jf_nezumi"), "Y": _choice("Y", "jf_tebukuro")}, "kokoro")
    assert second["X"].voice == "jf_alpha" and second["X"].pitch_shift_semitones == -1.0
    assert "registered as person-0001" in second["X"].reason
    assert second["Y"].voice == "jf_tebukuro"
    people = read_registry(media_store)["people"]
    assert len(people) == 3 and people[0]["videos"] == ["video-a", "video-b"]
    # Re-running a video is stable, whatever the per-video choice says.
    again = apply_registry(media_store, "video-b",
                           {"X": {"embedding": _emb(3, noise=0.03, base=alice), "speech_s": 4},
                            "Y": {"embedding": _emb(4), "speech_s": 6}},
                           {"X": _choice("X", "jf_nezumi"), "Y": _choice("Y", "jf_alpha")}, "kokoro")
    assert again["X"].voice == "jf_alpha" and again["Y"].voice == "jf_tebukuro"
    assert len(read_registry(media_store)["people"]) == 3
    # A registered voice never collides with another speaker's voice in the same video.
    third = apply_registry(media_store, "video-c",
                           {"X": {"embedding": _emb(5, noise=0.03, base=alice), "speech_s": 4},
                            "Z": {"embedding": _emb(6), "speech_s": 8}},
                           {"X": _choice("X", "jf_nezumi"), "Z": _choice("Z", "jf_alpha")}, "kokoro")
    assert third["X"].voice == "jf_nezumi" and third["Z"].voice == "jf_alpha"


def test_concurrent_videos_never_lose_a_registry_update(media_store):
    # Eight videos choose voices at once, each with a new person: every one is registered (an
    # unguarded read-modify-write of the one registry document keeps only some of them).
    from concurrent.futures import ThreadPoolExecutor

    def register(i):
        apply_registry(media_store, f"video-{i}", {"S": {"embedding": _emb(100 + i), "speech_s": 5}},
                       {"S": _choice("S", f"voice-{i}")}, "kokoro")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(register, range(8)))
    people = read_registry(media_store)["people"]
    assert sorted(p["videos"][0] for p in people) == [f"video-{i}" for i in range(8)]
    assert not media_store.exists("registry/speakers.lock")


def test_a_stale_registry_lease_is_broken_and_a_held_one_times_out(media_store):
    import datetime as dt

    import pytest

    from octavia_assets.resources.storage import exclusive
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    media_store.put_json({"owner": "killed-worker", "pid": 1, "since": old}, "registry/speakers.lock")
    with exclusive(media_store, "registry/speakers.lock", stale_s=600):
        assert media_store.read_json("registry/speakers.lock")["owner"] != "killed-worker"
        with pytest.raises(TimeoutError, match="held by"):
            with exclusive(media_store, "registry/speakers.lock", timeout_s=0.3):
                pass
    assert not media_store.exists("registry/speakers.lock")
