"""Kokoro synthesis: ONNX Runtime intra-op threads per session against lines synthesized at once.

    .venv/bin/python -m benchmarks.tts_threads 2 1    # 2 intra-op threads, one line at a time (the default)
    .venv/bin/python -m benchmarks.tts_threads 1 2    # 1 thread per session, 2 lines at once (OCTAVIA_TTS_WORKERS=2)

Synthesizes 16 Portuguese sentences (about 90 s of speech) with one voice after a warm-up call and
prints one JSON line: wall and CPU seconds (this process, all threads) for the batch.
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

TEXTS = [
    "Eu acho que precisamos terminar este trabalho antes do fim do mês.",
    "E assim, meus compatriotas americanos, não perguntem o que o seu país pode fazer por vocês.",
    "A impressão, no único sentido em que estamos atualmente preocupados, difere da maioria das artes.",
    "Se o leitor me desculpar, não direi nada dos meus antecedentes nem das circunstâncias.",
    "As areias são esbranquiçadas de grão médio e têm muito pouca assistência.",
    "em ser comparativamente moderno.",
    "A narrativa seria tediosa para ele e dolorosa para mim mesmo.",
    "Ontem fomos ao mercado e compramos frutas, pão e um pouco de queijo para o jantar.",
] * 2


def main() -> int:
    threads, workers = int(sys.argv[1]), int(sys.argv[2])
    from octavia_assets.resources.tts import KokoroSynthesizer
    synth = KokoroSynthesizer(threads=threads).load()
    synth.synthesize(TEXTS[0], "jm_kumo", "pt")                     # warm-up: model and style loaded
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        audio = list(pool.map(lambda text: synth.synthesize(text, "jm_kumo", "pt"), TEXTS))
    print(json.dumps({"threads": threads, "workers": workers, "wall_s": round(time.perf_counter() - wall, 2),
                      "cpu_s": round(time.process_time() - cpu, 2),
                      "audio_s": round(sum(len(a) for a in audio) / synth.sample_rate, 1),
                      "loadavg_1min": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
