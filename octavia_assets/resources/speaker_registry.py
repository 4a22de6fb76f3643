"""Speaker registry: the same person gets the same synthetic voice in every video.

One JSON document in the media store (``registry/speakers.sealed``, AES-GCM sealed: it holds voice fingerprints) lists the people seen so far: a
CAM++ embedding (mean of their appearances, L2-normalised), the engine and voice they were given,
and the videos they appeared in. :func:`apply_registry` matches a video's speaker profiles against
it (cosine >= ``MATCH_COSINE``), reuses the registered voice for a match and registers new people.
"""
from __future__ import annotations

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


def apply_registry(store, video: str, profiles: dict[str, dict], chosen: dict[str, VoiceChoice],
                   engine: str, chooser: str = "") -> dict[str, VoiceChoice]:
    with exclusive(store, REGISTRY_LOCK_KEY):
        return _apply_registry(store, video, profiles, chosen, engine, chooser)


def _apply_registry(store, video: str, profiles: dict[str, dict], chosen: dict[str, VoiceChoice],
                    engine: str, chooser: str = "") -> dict[str, VoiceChoice]:
    """``chosen`` with registered people's voices put back, and the registry updated (new people
    added, this video recorded for the matched ones). A registered voice is not reused when another
    speaker of this video already has it (different speakers keep distinct voices).

    ``chooser`` names the voice-choice method: a person seen only in this very video whose voice an
    older method chose takes the new choice (re-running a video with the same method stays stable;
    a person seen in other videos keeps their voice)."""
    doc = read_registry(store)
    people = doc["people"]
    out = dict(chosen)
    taken_by_registry: set[str] = set()
    order = sorted(profiles, key=lambda s: (-float(profiles[s].get("speech_s") or 0.0), s))
    for speaker in order:
        emb = profiles[speaker].get("embedding")
        if not emb or speaker not in chosen:
            continue
        e = _unit(emb)
        scored = [(float(_unit(p["embedding"]) @ e), i) for i, p in enumerate(people) if p["engine"] == engine]
        best = max(scored, default=None)
        if best and best[0] >= MATCH_COSINE:
            cos, i = best
            person = people[i]
            if set(person["videos"]) <= {video} and person.get("chooser", "") != chooser:
                person.update(voice=chosen[speaker].voice, chooser=chooser,
                              pitch_shift_semitones=chosen[speaker].pitch_shift_semitones)
                continue
            others = {v.voice for s, v in out.items() if s != speaker}
            if person["voice"] not in others and person["voice"] not in taken_by_registry:
                out[speaker] = VoiceChoice(
                    speaker=speaker, engine=engine, voice=person["voice"],
                    pitch_shift_semitones=person["pitch_shift_semitones"],
                    reason=f"{speaker}: registered as {person['id']} (CAM++ cos {cos:.2f}), "
                           f"same voice as in {len(person['videos'])} earlier video(s)")
                taken_by_registry.add(person["voice"])
            if video not in person["videos"]:
                n = len(person["videos"])
                person["embedding"] = _unit(_unit(person["embedding"]) * n + e).round(6).tolist()
                person["videos"].append(video)
        else:
            people.append({"id": f"person-{len(people) + 1:04d}", "engine": engine, "voice": chosen[speaker].voice,
                           "chooser": chooser,
                           "pitch_shift_semitones": chosen[speaker].pitch_shift_semitones,
                           "embedding": e.round(6).tolist(), "videos": [video]})
    put_sealed_json(store, REGISTRY_KEY_ID, doc, REGISTRY_KEY)
    return out
