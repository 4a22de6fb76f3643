"""The Octavia code location: assets, jobs, sensors and the resources chosen for this environment."""
from __future__ import annotations

import dagster as dg

from sensors.uploads import upload_sensor

from . import audio, chunks, delivery, dubbing, mix, report, source, speakers, stems, transcript, translation, voices
from .jobs import deliver_job, dub_job, ingest_job
from .resources.engines import (AsrEngine, DiarizationEngine, SeparationEngine, TranslationEngine, TtsEngine,
                                VadEngine, configured_engine)
from .resources.storage import LocalMediaStore

STAGE_MODULES = [source, audio, stems, chunks, speakers, transcript, translation, voices, dubbing, mix, delivery,
                 report]

# Runs the declarative automation (eager cascade, model-version re-runs); Dagster's default one
# starts STOPPED, this one is on as soon as the daemon runs.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "octavia_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30, run_tags={"octavia/trigger": "automation"},
)


def resources_for_env() -> dict:
    """Local folder store and offline engines by default; engines are picked by OCTAVIA_*_ENGINE."""
    return {
        "media_store": LocalMediaStore(),
        "separation": SeparationEngine(engine=configured_engine("separation")),
        "vad": VadEngine(engine=configured_engine("vad")),
        "diarization": DiarizationEngine(engine=configured_engine("diarization")),
        "asr": AsrEngine(engine=configured_engine("asr")),
        "translator": TranslationEngine(chain=configured_engine("translation")),
        "tts": TtsEngine(engine=configured_engine("tts")),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(STAGE_MODULES),
    jobs=[ingest_job, dub_job, deliver_job],
    sensors=[upload_sensor, automation_sensor],
    resources=resources_for_env(),
)
