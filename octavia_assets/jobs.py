"""Jobs: the graph cut where its partitioning changes (video, then video x language, then video)."""

import os
import sys
import time

import dagster as dg

INGEST = dg.AssetSelection.groups("ingest", "listen") | dg.AssetSelection.assets("voices")
DUB = dg.AssetSelection.assets("translation", "dubbed_chunks", "final_mix")
DELIVER = dg.AssetSelection.assets("final_video", "quality_report")

_T0 = time.perf_counter()


def _progress_enabled() -> bool:
    return os.environ.get("OCTAVIA_PROGRESS") == "1"


def _say(text: str) -> None:
    """One progress line on the terminal under `octavia dub` (OCTAVIA_PROGRESS=1), with the time so far."""
    if _progress_enabled():
        print(f"  [{time.perf_counter() - _T0:7.1f} s] {text}", file=sys.stderr, flush=True)


@dg.success_hook(name="stage_done")
def stage_done(context: dg.HookContext) -> None:
    _say(f"done    {context.op.name}")


def stage_progress(context, message: str) -> None:
    """A long stage's progress: to the run's log, and to the terminal under `octavia dub`."""
    context.log.info(message)
    _say(f"{context.op.name}: {message}")


@dg.failure_hook(name="stage_failed")
def stage_failed(context: dg.HookContext) -> None:
    _say(f"FAILED  {context.op.name}")


_hooks = {stage_done, stage_failed}
ingest_job = dg.define_asset_job("ingest_job", selection=INGEST, hooks=_hooks,
                                 description="Per video: probe, audio, stems, chunks, speakers, transcript, voices.")
dub_job = dg.define_asset_job("dub_job", selection=DUB, hooks=_hooks,
                              description="Per video and language: translation, dubbed lines, final mix.")
deliver_job = dg.define_asset_job("deliver_job", selection=DELIVER, hooks=_hooks,
                                  description="Per video: final video with every language, quality report.")


def failure_summary(result) -> str:
    """One line per failed step of an in-process run: the user-facing reason, else the root error."""
    reasons = []
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            user = event.step_failure_data.user_failure_data
            if user and user.description:
                msg = user.description
            else:
                error = event.step_failure_data.error
                while error.cause is not None:
                    error = error.cause
                lines = error.message.strip().splitlines()
                msg = lines[-1] if lines else error.cls_name or "unknown error"
            reasons.append(f"{event.step_key}: {msg}")
    return "; ".join(reasons) or "run failed"
