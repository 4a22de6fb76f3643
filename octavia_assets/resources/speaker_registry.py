"""Speaker registry: the same person gets the same synthetic voice in every video.

One JSON document in the media store (``registry/speakers.sealed``, AES-GCM sealed: it holds voice fingerprints) lists the people seen so far: a
CAM++ embedding (mean of their appearances, L2-normalised), the engine and voice they were given,
and the videos they appeared in. :func:`apply_registry` matches a video's speaker profiles against
it (cosine >= ``MATCH_COSINE``), reuses the registered voice for a match and registers new people.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .storage import exclusive
from .types import VoiceChoice
from .voice_vault import put_sealed_json, read_sealed_json

REGISTRY_KEY = "registry/speakers.sealed"
#: a lease held while one video updates the registry, so concurrent videos never lose an update
REGISTRY_LOCK_KEY = "registry/speakers.lock"
#: the registry holds voice fingerprints of many videos: sealed under its own derived key.
REGISTRY_KEY_ID = "speaker-registry"
# CAM++ cosine above which two profiles are taken as the same person. Same-speaker pairs across
# recordings score about 0.7-0.9 with CAM++, different speakers mostly below 0.5.
MATCH_COSINE = 0.65


def read_registry(store) -> dict:
    """The registry document, unsealed ({"people": []} before the first video)."""
    return read_sealed_json(store, REGISTRY_KEY_ID, REGISTRY_KEY) if store.exists(REGISTRY_KEY) else {"people": []}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64).ravel()
    n = np.linalg.norm(v)
    return v / n if n else v


def apply_registry(store, video: str, profiles: dict[str, dict],
                   choose: Callable[[dict[str, VoiceChoice]], dict[str, VoiceChoice]],
                   engine: str, chooser: str = "") -> dict[str, VoiceChoice]:
    """The video's voices, chosen around the people the registry knows, and the registry updated, under
    one lease (concurrent videos never lose an update).

    ``choose(assigned)`` chooses the voices of the video's speakers keeping ``assigned`` ({speaker: the
    voice the registry gave that person}), so the other speakers are chosen around those voices (a
    choice made first and overridden after would not know them). New people are registered with their
    chosen voice; matched people get this video recorded.

    ``chooser`` names the voice-choice method: a person seen only in this very video whose voice an
    older method chose takes the new choice (re-running a video with the same method stays stable;
    a person seen in other videos keeps their voice)."""
    with exclusive(store, REGISTRY_LOCK_KEY):
        doc = read_registry(store)
        people = doc["people"]
        matches = _match_people(people, profiles, engine)
        assigned: dict[str, VoiceChoice] = {}
        for speaker, (cos, i, paired) in matches.items():
            person = people[i]
            if not paired:
                continue                    # a person split in two speakers: the paired one is them
            if _chosen_by_older_method(person, video, chooser):
                continue                    # re-chosen below by the new method
            if person["voice"] in {c.voice for c in assigned.values()}:
                continue                    # two people registered on one voice: the first keeps it
            assigned[speaker] = VoiceChoice(
                speaker=speaker, engine=engine, voice=person["voice"],
                pitch_shift_semitones=person["pitch_shift_semitones"],
                reason=f"{speaker}: registered as {person['id']} (CAM++ cos {cos:.2f}), "
                       f"same voice as in {len(person['videos'])} earlier video(s)")
        chosen = choose(assigned)
        for speaker in _by_speech(profiles):
            if speaker not in chosen or not profiles[speaker].get("embedding"):
                continue
            e = _unit(profiles[speaker]["embedding"])
            if speaker not in matches:
                people.append({"id": f"person-{len(people) + 1:04d}", "engine": engine, "voice": chosen[speaker].voice,
                               "chooser": chooser,
                               "pitch_shift_semitones": chosen[speaker].pitch_shift_semitones,
                               "embedding": e.round(6).tolist(), "videos": [video]})
                continue
            _, i, paired = matches[speaker]
            if not paired:
                continue
            person = people[i]
            retired = speaker in assigned and chosen[speaker].voice != assigned[speaker].voice   # engine dropped it
            if _chosen_by_older_method(person, video, chooser) or retired:
                person.update(voice=chosen[speaker].voice, chooser=chooser,
                              pitch_shift_semitones=chosen[speaker].pitch_shift_semitones)
            if video not in person["videos"]:
                n = len(person["videos"])
                person["embedding"] = _unit(_unit(person["embedding"]) * n + e).round(6).tolist()
                person["videos"].append(video)
        put_sealed_json(store, REGISTRY_KEY_ID, doc, REGISTRY_KEY)
        return chosen


def _chosen_by_older_method(person: dict, video: str, chooser: str) -> bool:
    """A person seen only in ``video`` whose voice another method than ``chooser`` chose: chosen again."""
    return set(person["videos"]) <= {video} and person.get("chooser", "") != chooser


def _by_speech(profiles: dict[str, dict]) -> list[str]:
    return sorted(profiles, key=lambda s: (-float(profiles[s].get("speech_s") or 0.0), s))


def _match_people(people: list[dict], profiles: dict[str, dict], engine: str) -> dict[str, tuple[float, int, bool]]:
    """{speaker: (cosine, index of the registered person, paired)} for the speakers the registry knows (cosine
    >= MATCH_COSINE with a person on ``engine``). People and speakers are paired one to one for the
    highest total cosine (a greedy pairing can give a speaker someone else's entry when two are alike);
    a speaker left over who still matches somebody (a person split in two by diarization) gets that
    person too, unpaired: :func:`apply_registry` leaves the person to the paired speaker."""
    from scipy.optimize import linear_sum_assignment
    speakers = [s for s in _by_speech(profiles) if profiles[s].get("embedding")]
    known = [i for i, p in enumerate(people) if p["engine"] == engine]
    if not speakers or not known:
        return {}
    spk = np.array([_unit(profiles[s]["embedding"]) for s in speakers])
    ppl = np.array([_unit(people[i]["embedding"]) for i in known])
    cos = spk @ ppl.T
    ok = cos >= MATCH_COSINE
    out: dict[str, tuple[float, int, bool]] = {}
    for r, c in zip(*linear_sum_assignment(np.where(ok, -cos, 1e6))):
        if ok[r, c]:
            out[speakers[r]] = (float(cos[r, c]), known[c], True)
    for r, s in enumerate(speakers):
        if s not in out and ok[r].any():
            c = int(np.argmax(np.where(ok[r], cos[r], -np.inf)))
            out[s] = (float(cos[r, c]), known[c], False)
    return dict(sorted(out.items(), key=lambda kv: speakers.index(kv[0])))
