"""stems: vocals and background (music + effects) separated from the soundtrack."""

import time

import dagster as dg

from .audio import SPEECH_RATE, audio
from .common import DOWNSTREAM, derived_key, materialized, video_of, workdir
from .partitions import videos
from .resources.engines import SeparationEngine, engine_version
from .resources.media import resample
from .resources.storage import MediaStore


@dg.asset(partitions_def=videos, group_name="listen", kinds={"pytorch"}, deps=[audio],
          code_version=engine_version("separation"), automation_condition=DOWNSTREAM, pool="gpu")
def stems(context: dg.AssetExecutionContext, media_store: MediaStore,
          separation: SeparationEngine) -> dg.MaterializeResult:
    """Vocals and background stems (44.1 kHz stereo) plus the vocals as 16 kHz mono for speech stages."""
    started = time.perf_counter()
    video = video_of(context)
    keys = [derived_key(video, "stems", name) for name in ("vocals.wav", "background.wav", "vocals_16k.wav")]
    separator = separation.get()
    with media_store.open_local(derived_key(video, "audio", "audio_44k.wav")) as src, workdir("stems") as tmp:
        meta = separator.separate(src, tmp / "vocals.wav", tmp / "background.wav")
        resample(tmp / "vocals.wav", tmp / "vocals_16k.wav", SPEECH_RATE, 1)
        for key in keys:
            media_store.put_file(tmp / key.rsplit("/", 1)[1], key)
    return materialized(media_store, keys, started, model=separator.version,
                        **{k: v for k, v in meta.items() if isinstance(v, (int, float, str))})
