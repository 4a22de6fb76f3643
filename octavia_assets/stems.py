"""stems: vocals and background (music + effects) separated from the soundtrack."""

import shutil
import time

import dagster as dg
import ffmpeg

from .audio import SPEECH_RATE
from .common import DOWNSTREAM, derived_key, materialized, video_of, workdir
from .partitions import videos
from .pre_analysis import pre_analysis
from .resources.engines import SeparationEngine, engine_version
from .resources.media import resample, run_ffmpeg
from .resources.storage import MediaStore


@dg.asset(partitions_def=videos, group_name="listen", kinds={"pytorch"}, deps=[pre_analysis],
          code_version=engine_version("separation") + "+skip-speech-only", automation_condition=DOWNSTREAM,
          pool="gpu")
def stems(context: dg.AssetExecutionContext, media_store: MediaStore,
          separation: SeparationEngine) -> dg.MaterializeResult:
    """Vocals and background stems (44.1 kHz stereo) plus the vocals as 16 kHz mono for speech stages.

    When the pre-analysis found speech only (no music or ambience between the words), separation is
    skipped: the vocals are the soundtrack itself and the background is silence, which keeps the
    voice intact (a separator can only take something away from clean speech)."""
    started = time.perf_counter()
    video = video_of(context)
    keys = [derived_key(video, "stems", name) for name in ("vocals.wav", "background.wav", "vocals_16k.wav")]
    analysis = media_store.read_json(derived_key(video, "pre_analysis", "pre_analysis.json"))
    separator = separation.get()
    with media_store.open_local(derived_key(video, "audio", "audio_44k.wav")) as src, workdir("stems") as tmp:
        if analysis.get("separate", True):
            meta = separator.separate(src, tmp / "vocals.wav", tmp / "background.wav")
            meta["separation"] = "separated"
        else:
            shutil.copyfile(src, tmp / "vocals.wav")
            run_ffmpeg(ffmpeg.output(ffmpeg.input(str(src)).audio.filter("volume", 0), str(tmp / "background.wav"),
                                     acodec="pcm_s16le"), "writing a silent background")
            meta = {"separation": "skipped: speech only "
                                  f"(background score {analysis.get('background_score')})"}
        resample(tmp / "vocals.wav", tmp / "vocals_16k.wav", SPEECH_RATE, 1)
        for key in keys:
            media_store.put_file(tmp / key.rsplit("/", 1)[1], key)
    return materialized(media_store, keys, started, model=separator.version,
                        **{k: v for k, v in meta.items() if isinstance(v, (int, float, str))})
