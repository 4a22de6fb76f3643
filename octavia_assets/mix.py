"""final_mix: the dub over the ducked background, loudness-normalised (EBU R128), with its checks."""

import contextlib
import os
import time
import warnings

import dagster as dg

from . import checks
from .common import DOWNSTREAM, derived_key, materialized, video_and_lang, workdir
from .dubbing import dubbed_chunks
from .partitions import VIDEO_DIMENSION, video_lang
from .resources.mixing import AudioFile, MixSettings, PlacedTrack, mix, voice_leakage_db
from .resources.storage import MediaStore
from .settings import target_languages
from .speakers import delete_voice_data
from .stems import stems


def placed_dub(media_store: MediaStore, files: contextlib.ExitStack, video: str, lang: str) -> tuple[PlacedTrack, dict]:
    """``load_dub_track``'s timeline as a lazy view over the clip files (kept local in ``files``): the
    same samples, read a slice at a time, so a long video's dub is never in memory whole."""
    doc = media_store.read_json(derived_key(video, lang, "dubbed_chunks.json"))
    clips = [(p["start"], files.enter_context(media_store.open_local(p["audio_key"]))) for p in doc["lines"]]
    return PlacedTrack(clips, doc["duration_s"]), doc


def mix_figures_key(video: str, lang: str) -> str:
    return derived_key(video, lang, "final_mix.json")


def stored_mix_figures(media_store: MediaStore, video: str, lang: str) -> dict | None:
    """The loudness, true peak and leakage final_mix measured on the mix now stored, or None when
    they are missing or were measured on another mix (the object's version is kept with them)."""
    key = mix_figures_key(video, lang)
    if not media_store.exists(key):
        return None
    doc = media_store.read_json(key)
    mix_key = derived_key(video, lang, "final_mix.wav")
    if not media_store.exists(mix_key) or media_store.stat(mix_key).version != doc.get("mix_version"):
        return None
    return doc["figures"]


def mix_settings() -> MixSettings:
    return MixSettings(target_lufs=float(os.environ.get("OCTAVIA_TARGET_LUFS", -16.0)))


# Per-partition check results (partitions_def on a check spec) are preview in Dagster 1.13.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    MIX_CHECKS = [
        dg.AssetCheckSpec("loudness", asset="final_mix", partitions_def=video_lang,
                          description="Integrated loudness within ±1 LU of the target and true peak ≤ −1 dBTP (pyloudnorm, 4× oversampled)."),
        dg.AssetCheckSpec("voice_leakage", asset="final_mix", partitions_def=video_lang,
                          description="Original voice (separated vocals as reference) ≤ −15 dB relative to the dub."),
        dg.AssetCheckSpec("dub_speaks_where_speech_was", asset="final_mix", partitions_def=video_lang,
                          description="The dub is not silent over any original line."),
    ]


@dg.asset(partitions_def=video_lang, group_name="deliver", kinds={"ffmpeg"},
          deps=[dubbed_chunks, dg.AssetDep(stems, partition_mapping=VIDEO_DIMENSION)], check_specs=MIX_CHECKS,
          code_version="mix-" + mix_settings().version + "+checks-v1", automation_condition=DOWNSTREAM)
def final_mix(context: dg.AssetExecutionContext, media_store: MediaStore) -> dg.MaterializeResult:
    """48 kHz stereo: background ducked under the dub (sidechain compression), then brought to the target
    loudness by one gain (a true-peak limiter only where that gain would pass the ceiling)."""
    started = time.perf_counter()
    video, lang = video_and_lang(context)
    settings = mix_settings()
    out = derived_key(video, lang, "final_mix.wav")
    with contextlib.ExitStack() as files, workdir("mix") as tmp:
        dub, doc = placed_dub(media_store, files, video, lang)
        rate = dub.sample_rate
        bg = files.enter_context(media_store.open_local(derived_key(video, "stems", "background.wav")))
        figures = mix(bg, dub, rate, doc["duration_s"], tmp / "mix.wav", settings)
        stored = media_store.put_file(tmp / "mix.wav", out)
        # No ground truth in production: the separated vocals stand for the original voice. It is a lower
        # bound of the true leakage (the separator's residual is what it did not put in the vocals);
        # benchmarks/mix_eval.py measures against a composite's true dialogue stem. Both tracks are
        # read from their files a block at a time (AudioFile): memory stays flat in the length.
        with media_store.open_local(derived_key(video, "stems", "vocals.wav")) as vocals_path:
            final, vocals = AudioFile(tmp / "mix.wav"), AudioFile(vocals_path, mono=True)
            leak = voice_leakage_db(final, final.sample_rate, vocals, vocals.sample_rate, dub, rate)
        # kept with the mix's version, so the quality report reuses them instead of measuring again
        media_store.put_json({"mix_version": stored.version, "figures": {
            "integrated_lufs": figures["integrated_lufs"], "true_peak_dbtp": figures["true_peak_dbtp"],
            "leakage_vs_vocals_db": leak["leakage_db"]}}, mix_figures_key(video, lang))
        lines = media_store.read_json(derived_key(video, "transcript", "transcript.json"))["lines"]
        results = [
            checks.loudness(figures["integrated_lufs"], figures["true_peak_dbtp"], settings.target_lufs)
            .result("loudness", checks.WARN),
            checks.leakage(leak["leakage_db"], "separated vocals stem").result("voice_leakage", checks.WARN),
            checks.dub_speaks_where_speech_was(dub, rate, lines).result("dub_speaks_where_speech_was", checks.WARN),
        ]
    result = materialized(media_store, [out], started, **figures, leakage_vs_vocals_db=leak["leakage_db"])
    # The voice data has served its purpose once every language is mixed: delete it (a re-dub
    # re-derives it from the stems). The mix is already stored, so a failure here loses nothing.
    deleted = delete_voice_data(media_store, video, target_languages())
    if deleted:
        context.log.info(f"voice data of {video} deleted ({len(deleted)} objects): every target language is mixed")
    return dg.MaterializeResult(metadata=result.metadata, data_version=result.data_version, check_results=results)
