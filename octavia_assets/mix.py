"""final_mix: the dub over the ducked background, loudness-normalised (EBU R128)."""

import os
import time

import dagster as dg

from .common import DOWNSTREAM, derived_key, materialized, video_and_lang, workdir
from .dubbing import dubbed_chunks, load_dub_track
from .partitions import VIDEO_DIMENSION, video_lang
from .resources.mixing import MixSettings, mix
from .resources.storage import MediaStore
from .stems import stems


def mix_settings() -> MixSettings:
    return MixSettings(target_lufs=float(os.environ.get("OCTAVIA_TARGET_LUFS", -16.0)))


@dg.asset(partitions_def=video_lang, group_name="deliver", kinds={"ffmpeg"},
          deps=[dubbed_chunks, dg.AssetDep(stems, partition_mapping=VIDEO_DIMENSION)],
          code_version="mix-" + mix_settings().version, automation_condition=DOWNSTREAM)
def final_mix(context: dg.AssetExecutionContext, media_store: MediaStore) -> dg.MaterializeResult:
    """48 kHz stereo: background ducked under the dub (sidechain compression), then two-pass loudnorm."""
    started = time.perf_counter()
    video, lang = video_and_lang(context)
    dub, rate, doc = load_dub_track(media_store, video, lang)
    settings = mix_settings()
    out = derived_key(video, lang, "final_mix.wav")
    with media_store.open_local(derived_key(video, "stems", "background.wav")) as bg, workdir("mix") as tmp:
        figures = mix(bg, dub, rate, doc["duration_s"], tmp / "mix.wav", settings)
        media_store.put_file(tmp / "mix.wav", out)
    return materialized(media_store, [out], started, **figures)
