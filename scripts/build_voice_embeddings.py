"""Build the shipped table of the offline TTS engine's voice embeddings (CAM++), at every pitch shift a
speaker can be given (-3..+3 semitones on the 0.25 st grid), into
octavia_assets/resources/data/voice_embeddings/. Run it again after a change of the TTS engine's
version, its voices, the embedder or voice_match's EMBED_* settings (the file name is the cache key,
so a stale table is simply not used).

    .venv/bin/python scripts/build_voice_embeddings.py        # 15-40 min on 2 cores (39 min on a shared machine)
"""
from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from octavia_assets.resources import voice_match  # noqa: E402
from octavia_assets.resources.engines import TtsEngine, _embedder  # noqa: E402
from octavia_assets.resources.tts import MAX_PITCH_SHIFT_SEMITONES  # noqa: E402


def main() -> int:
    import os
    synth = TtsEngine().get()
    embedder = _embedder("campplus")
    steps = round(MAX_PITCH_SHIFT_SEMITONES / voice_match.SHIFT_STEP)
    grid = {round(k * voice_match.SHIFT_STEP, 2) + 0.0 for k in range(-steps, steps + 1)}
    voices = [v.id for v in synth.voices()]
    with tempfile.TemporaryDirectory() as cache:
        os.environ["OCTAVIA_MODEL_CACHE"] = cache          # computed from scratch, not from a local cache
        shipped_dir, voice_match.SHIPPED_EMBEDDINGS = voice_match.SHIPPED_EMBEDDINGS, Path(cache) / "none"
        voice_match.voice_embeddings(synth, embedder, voices, shifts={v: grid for v in voices}, log=print)
        built = voice_match._cache_path(synth, embedder, voices)
        shipped_dir.mkdir(parents=True, exist_ok=True)
        for old in shipped_dir.glob(f"{synth.name}-*.json.gz"):
            old.unlink()
        dest = shipped_dir / f"{built.name}.gz"
        with open(built, "rb") as src, gzip.GzipFile(dest, "wb", mtime=0) as out:
            shutil.copyfileobj(src, out)
    print(f"{dest.relative_to(Path(__file__).resolve().parents[1])}: {len(voices)} voices x {len(grid)} shifts, "
          f"{dest.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
