"""voices: one synthetic voice per source speaker, chosen to resemble them."""

import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, materialized, video_of
from .partitions import videos
from .resources.engines import TtsEngine, engine_version
from .resources.speaker_registry import apply_registry
from .resources.storage import MediaStore
from .resources.tts import choose_voices
from .speakers import speaker_map, voice_profiles


@dg.asset(partitions_def=videos, group_name="speak", kinds={"onnx"}, deps=[speaker_map],
          code_version=engine_version("tts"), automation_condition=DOWNSTREAM)
def voices(context: dg.AssetExecutionContext, media_store: MediaStore, tts: TtsEngine) -> dg.MaterializeResult:
    """The shipped voice (and pitch shift) chosen for each speaker: matching gender, distinct per speaker;
    a person already in the speaker registry (another video) keeps the voice they had there."""
    started = time.perf_counter()
    video = video_of(context)
    profiles = voice_profiles(media_store, video)
    synth = tts.get()
    chosen = apply_registry(media_store, video, profiles, choose_voices(profiles, synth, None), synth.name)
    out = derived_key(video, "voices", "voices.json")
    media_store.put_json({"engine": synth.version, "voices": {s: v.to_dict() for s, v in chosen.items()}}, out)
    table = "\n".join(f"| {s} | {v.voice} | {v.pitch_shift_semitones:+.1f} | {v.reason} |" for s, v in chosen.items())
    return materialized(media_store, [out], started, model=synth.version, voice_count=len(chosen),
                        voices_from_registry=sum(v.reason.split(": ", 1)[-1].startswith("registered") for v in chosen.values()),
                        voices=dg.MetadataValue.md("| speaker | voice | pitch (st) | why |\n|---|---|---|---|\n"
                                                   + table if chosen else "(no speakers)"))
