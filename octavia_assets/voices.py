"""voices: one synthetic voice per source speaker, chosen to resemble them."""

import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, materialized, video_of
from .jobs import stage_progress
from .partitions import videos
from .resources.engines import DiarizationEngine, TtsEngine, engine_version
from .resources.prod_tts_xtts import seal_references
from .resources.speaker_registry import apply_registry
from .resources.storage import MediaStore
from .resources.voice_match import CHOOSER_VERSION, shipped_voice_chooser
from .resources.voice_samples import sample_audio, seal_dropped_samples, user_samples
from .speakers import speaker_map, voice_profiles


def reference_key(video: str, speaker: str) -> str:
    """A speaker's reference clip for voice cloning, stored sealed (voice data)."""
    return derived_key(video, "voices", "references", f"{speaker}.wav.sealed")


@dg.asset(partitions_def=videos, group_name="speak", kinds={"onnx"}, deps=[speaker_map],
          # shipped voices matched by CAM++ embedding, user voice samples since campp-match-v1 (CHOOSER_VERSION)
          code_version=engine_version("tts") + "+" + CHOOSER_VERSION, automation_condition=DOWNSTREAM)
def voices(context: dg.AssetExecutionContext, media_store: MediaStore, tts: TtsEngine,
           diarization: DiarizationEngine) -> dg.MaterializeResult:
    """The voice (and pitch shift) for each speaker: the shipped voice closest to them (CAM++ embedding,
    then gender), distinct per speaker, pitch moved toward theirs; a person already in the speaker
    registry (another video) keeps the voice they had there. A user's own voice sample
    (``voices/<video>/main.wav`` or ``<speaker>.wav`` in the media store, sealed on arrival) takes
    precedence for its speaker: cloned by a cloning engine, else matched to the closest shipped voice."""
    started = time.perf_counter()
    video = video_of(context)
    profiles = voice_profiles(media_store, video, diarization)   # re-derived if deleted after the mix
    synth = tts.get()
    for key in seal_dropped_samples(media_store, video):
        context.log.info(f"sealed the user's voice sample {key} (plaintext deleted)")
    samples = user_samples(media_store, video, profiles)
    references: dict[str, str] = {}
    if getattr(synth, "clones_speakers", False):
        # A cloning engine speaks each speaker with their own voice: their reference clips, sealed.
        with media_store.open_local(derived_key(video, "stems", "vocals_16k.wav")) as vocals:
            references = seal_references(media_store, video, vocals, profiles, lambda s: reference_key(video, s))
        references.update(samples)          # the user's own sample is the clip to clone
        chosen = synth.clone_choices(video, profiles, references)
    else:
        audio = {s: sample_audio(media_store, video, k) for s, k in samples.items()}
        choose = shipped_voice_chooser(profiles, synth, diarization.get_embedder(), audio,
                                       log=lambda msg: stage_progress(context, msg))
        # People the registry knows keep their voices and the others are chosen around them. The
        # registry does not override (nor learn from) a speaker speaking with a user's sample.
        chosen = apply_registry(media_store, video, {s: p for s, p in profiles.items() if s not in samples},
                                choose, synth.name, chooser=CHOOSER_VERSION)
    out = derived_key(video, "voices", "voices.json")
    media_store.put_json({"engine": synth.version, "voices": {s: v.to_dict() for s, v in chosen.items()},
                          **({"references": references} if references else {})}, out)
    table = "\n".join(f"| {s} | {v.voice} | {v.pitch_shift_semitones:+.1f} | {v.reason} |" for s, v in chosen.items())
    return materialized(media_store, [out, *references.values()], started, model=synth.version, voice_count=len(chosen),
                        user_voice_samples=dg.MetadataValue.json(sorted(samples)),
                        voices_from_registry=sum(v.reason.split(": ", 1)[-1].startswith("registered") for v in chosen.values()),
                        voices=dg.MetadataValue.md("| speaker | voice | pitch (st) | why |\n|---|---|---|---|\n"
                                                   + table if chosen else "(no speakers)"))
