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


def _prefer(seen=None, **prefs):
    """A chooser: each speaker (in the order given) takes their first preferred voice nobody has, around
    the ``assigned`` (registered) voices, as the voices stage's chooser does; records what it was given."""
    def choose(assigned):
        if seen is not None:
            seen.append({s: c.voice for s, c in assigned.items()})
        out = dict(assigned)
        for speaker, voices in prefs.items():
            if speaker not in out:
                voice, pitch = next((v, p) for v, p in voices if v not in {c.voice for c in out.values()})
                out[speaker] = _choice(speaker, voice, pitch)
        return out
    return choose


def test_same_person_same_voice_across_videos(media_store):
    alice, bob = np.random.default_rng(1).normal(size=192), np.random.default_rng(2).normal(size=192)
    first = apply_registry(media_store, "video-a",
                           {"A": {"embedding": _emb(0, base=alice), "speech_s": 9},
                            "B": {"embedding": _emb(0, base=bob), "speech_s": 5}},
                           _prefer(A=[("jf_alpha", -1.0)], B=[("jm_kumo", 2.0)]), "kokoro")
    assert first["A"].voice == "jf_alpha"                       # new people keep the chosen voices
    assert len(read_registry(media_store)["people"]) == 2
    # Video b: Alice again (another recording: a noisy embedding), plus a stranger. The voice choice
    # for b alone would have given Alice another voice; the registry keeps hers.
    seen = []
    second = apply_registry(media_store, "video-b",
                            {"X": {"embedding": _emb(3, noise=0.03, base=alice), "speech_s": 4},
                             "Y": {"embedding": _emb(4), "speech_s": 6}},
                            _prefer(seen, X=[("jf_nezumi", 0.0)], Y=[("jf_tebukuro", 0.0)]), "kokoro")
    assert seen == [{"X": "jf_alpha"}]                          # the chooser knew Alice's voice
    assert second["X"].voice == "jf_alpha" and second["X"].pitch_shift_semitones == -1.0
    assert "registered as person-0001" in second["X"].reason
    assert second["Y"].voice == "jf_tebukuro"
    people = read_registry(media_store)["people"]
    assert len(people) == 3 and people[0]["videos"] == ["video-a", "video-b"]
    # Re-running a video is stable, whatever the per-video choice says.
    again = apply_registry(media_store, "video-b",
                           {"X": {"embedding": _emb(3, noise=0.03, base=alice), "speech_s": 4},
                            "Y": {"embedding": _emb(4), "speech_s": 6}},
                           _prefer(X=[("jf_nezumi", 0.0)], Y=[("jf_tebukuro", 0.0)]), "kokoro")
    assert again["X"].voice == "jf_alpha" and again["Y"].voice == "jf_tebukuro"
    assert len(read_registry(media_store)["people"]) == 3
    # Another speaker of the video who would have taken Alice's voice is chosen around it: Alice
    # keeps hers (a choice overridden afterwards had to give her another one).
    third = apply_registry(media_store, "video-c",
                           {"X": {"embedding": _emb(5, noise=0.03, base=alice), "speech_s": 4},
                            "Z": {"embedding": _emb(6), "speech_s": 8}},
                           _prefer(Z=[("jf_alpha", 0.0), ("jf_gongitsune", 1.0)], X=[("jf_nezumi", 0.0)]), "kokoro")
    assert third["X"].voice == "jf_alpha" and third["Z"].voice == "jf_gongitsune"
    assert read_registry(media_store)["people"][0]["videos"] == ["video-a", "video-b", "video-c"]


def test_a_person_split_in_two_speakers_is_one_person(media_store):
    alice = np.random.default_rng(1).normal(size=192)
    apply_registry(media_store, "video-a", {"A": {"embedding": _emb(0, base=alice), "speech_s": 9}},
                   _prefer(A=[("jf_alpha", 0.0)]), "kokoro")
    # diarization split Alice in two: one of them (the nearer) is her, the other gets a voice of their
    # own; nobody new is registered
    split = apply_registry(media_store, "video-b",
                           {"X1": {"embedding": _emb(7, noise=0.03, base=alice), "speech_s": 3},
                            "X2": {"embedding": _emb(8, noise=0.03, base=alice), "speech_s": 6}},
                           _prefer(X1=[("jf_nezumi", 0.0)], X2=[("jf_tebukuro", 0.0)]), "kokoro")
    assert sorted(c.voice for c in split.values()) in (["jf_alpha", "jf_nezumi"], ["jf_alpha", "jf_tebukuro"])
    people = read_registry(media_store)["people"]
    assert len(people) == 1 and people[0]["videos"] == ["video-a", "video-b"]


def test_concurrent_videos_never_lose_a_registry_update(media_store):
    # Eight videos choose voices at once, each with a new person: every one is registered (an
    # unguarded read-modify-write of the one registry document keeps only some of them).
    from concurrent.futures import ThreadPoolExecutor

    def register(i):
        apply_registry(media_store, f"video-{i}", {"S": {"embedding": _emb(100 + i), "speech_s": 5}},
                       _prefer(S=[(f"voice-{i}", 0.0)]), "kokoro")

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


def test_people_and_speakers_are_paired_for_the_best_total_likeness(media_store):
    # Two registered people, p1 and p2. In the new video X (more speech) is a little nearer p2 than p1,
    # but Y is p2 beyond doubt: X is p1. Pairing speakers one by one, X first, gave X p2's voice.
    basis = np.eye(192)
    apply_registry(media_store, "video-a", {"P1": {"embedding": basis[0].tolist(), "speech_s": 9},
                                            "P2": {"embedding": basis[1].tolist(), "speech_s": 5}},
                   _prefer(P1=[("jf_alpha", 0.0)], P2=[("jm_kumo", 0.0)]), "kokoro")
    x = 0.68 * basis[0] + 0.70 * basis[1] + np.sqrt(1 - 0.68**2 - 0.70**2) * basis[2]
    y = 0.95 * basis[1] + np.sqrt(1 - 0.95**2) * basis[3]
    chosen = apply_registry(media_store, "video-b", {"X": {"embedding": x.tolist(), "speech_s": 8},
                                                     "Y": {"embedding": y.tolist(), "speech_s": 4}},
                            _prefer(X=[("jf_nezumi", 0.0)], Y=[("jf_tebukuro", 0.0)]), "kokoro")
    assert chosen["X"].voice == "jf_alpha" and chosen["Y"].voice == "jm_kumo"
    assert [p["videos"] for p in read_registry(media_store)["people"]] == [["video-a", "video-b"]] * 2


def test_a_registered_voice_the_chooser_cannot_keep_is_replaced_in_the_registry(media_store):
    alice = np.random.default_rng(1).normal(size=192)
    apply_registry(media_store, "video-a", {"A": {"embedding": _emb(0, base=alice), "speech_s": 9}},
                   _prefer(A=[("retired_voice", 0.0)]), "kokoro")
    # the engine no longer has that voice: the chooser gives Alice another, and the registry learns it
    def without_retired(assigned):
        return {"X": _choice("X", "jf_nezumi", 1.0)}
    chosen = apply_registry(media_store, "video-b", {"X": {"embedding": _emb(3, noise=0.03, base=alice), "speech_s": 4}},
                            without_retired, "kokoro")
    assert chosen["X"].voice == "jf_nezumi"
    person = read_registry(media_store)["people"][0]
    assert (person["voice"], person["pitch_shift_semitones"], person["videos"]) == ("jf_nezumi", 1.0, ["video-a", "video-b"])
