"""The Octavia code location: assets, jobs, sensors and the resources chosen for this environment."""
from __future__ import annotations

import dagster as dg

from sensors.notifications import completion_webhook, failure_notification
from sensors.uploads import upload_sensor

from . import (audio, chunks, delivery, dubbing, mix, pre_analysis, report, source, speakers, stems, transcript,
               translation, voices)
from .automation import automation_sensor, build_redub_schedules
from .jobs import deliver_job, dub_job, ingest_job
from .resources.engines import (AsrEngine, DiarizationEngine, SeparationEngine, TranslationEngine, TtsEngine,
                                VadEngine, configured_engine)
from .platform import executor_for_env, media_store_for_env, webhook_for_env
from .retention import retention_job, retention_schedule

STAGE_MODULES = [source, audio, pre_analysis, stems, speakers, chunks, transcript, translation, voices, dubbing, mix,
                 delivery, report]

def resources_for_env() -> dict:
    """Local folder store and offline engines by default; engines are picked by OCTAVIA_*_ENGINE,
    the store by OCTAVIA_STORAGE=local|s3 (see platform.py)."""
    return {
        "media_store": media_store_for_env(),
        "webhook": webhook_for_env(),
        "separation": SeparationEngine(engine=configured_engine("separation")),
        "vad": VadEngine(engine=configured_engine("vad")),
        "diarization": DiarizationEngine(engine=configured_engine("diarization")),
        "asr": AsrEngine(engine=configured_engine("asr")),
        "translator": TranslationEngine(chain=configured_engine("translation")),
        "tts": TtsEngine(engine=configured_engine("tts")),
    }


stage_assets = dg.load_assets_from_modules(STAGE_MODULES)

defs = dg.Definitions(
    assets=stage_assets,
    jobs=[ingest_job, dub_job, deliver_job, retention_job],
    schedules=[*build_redub_schedules(stage_assets), retention_schedule],
    sensors=[upload_sensor, automation_sensor, completion_webhook, failure_notification],
    resources=resources_for_env(),
    executor=executor_for_env(stage_assets),
)
