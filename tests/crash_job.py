"""The ingest job with fast test doubles and a separator the test can hold, for tests/test_crash_resume.py.

``crash_job`` is reconstructable (module-level, no arguments), so runs use the multiprocess executor
and a run worker process of their own, as in production. With ``OCTAVIA_TEST_GATE`` set to a folder,
the separator writes half of its output, then announces itself (``<gate>/entered-<pid>``) and waits
for ``<gate>/release`` before finishing: the test decides when (and whether) the stage completes.

    python -m tests.crash_job VIDEO [--in-process]    # runs the job on $DAGSTER_HOME, prints the run id
"""
import os
import sys
import time
from pathlib import Path

import dagster as dg

from tests.fakes import FakeSeparationEngine, FakeSeparator, fake_resources


class GatedSeparator(FakeSeparator):
    def separate(self, audio_path, vocals_path, background_path) -> dict:
        meta = super().separate(audio_path, vocals_path, background_path)
        gate = os.environ.get("OCTAVIA_TEST_GATE")
        if gate:
            # Half-written output in the stage's work folder: it must never reach the media store.
            Path(background_path).write_bytes(Path(background_path).read_bytes()[:1000])
            (Path(gate) / f"entered-{os.getpid()}").touch()
            deadline = time.monotonic() + 120
            while not (Path(gate) / "release").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("the test never released the gated separator")
                time.sleep(0.05)
            super().separate(audio_path, vocals_path, background_path)
        return meta


class GatedSeparationEngine(FakeSeparationEngine):
    def get(self):
        return GatedSeparator()


def crash_job() -> dg.JobDefinition:
    from octavia_assets.definitions import defs as real_defs
    defs = dg.Definitions(assets=list(real_defs.assets), jobs=list(real_defs.jobs),
                          resources={**fake_resources(), "separation": GatedSeparationEngine()})
    return defs.resolve_job_def("ingest_job")


def execute(video: str, in_process: bool = False, reexecute_from: str | None = None) -> tuple[str, bool]:
    # One step at a time, each in its own step process; the resumed run in the worker itself (quicker).
    executor = {"in_process": {}} if in_process or reexecute_from else {"multiprocess": {"max_concurrent": 1}}
    with dg.DagsterInstance.get() as instance:
        options = dg.ReexecutionOptions.from_failure(reexecute_from, instance) if reexecute_from else None
        with dg.execute_job(dg.reconstructable(crash_job), instance=instance,
                            run_config={"execution": {"config": executor}},
                            tags={"dagster/partition": video},
                            reexecution_options=options) as result:
            return result.run_id, result.success


if __name__ == "__main__":
    run_id, ok = execute(sys.argv[1], in_process="--in-process" in sys.argv)
    print(run_id, "success" if ok else "failure", flush=True)
