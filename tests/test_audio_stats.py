"""The audio stage's facts (length, peak, silent fraction) read a block at a time equal the whole-array ones."""
import numpy as np
import pytest
import soundfile as sf

from octavia_assets.audio import silence_fraction, soundtrack_stats


@pytest.mark.parametrize("n", [0, 100, 800, 800 * 4096 * 2 + 5])   # empty, under a frame, a frame, 2 blocks + a bit
def test_blockwise_facts_equal_the_whole_array(tmp_path, n):
    x = (np.random.default_rng(n).standard_normal(n) * 0.1).astype(np.float32)
    x[n // 3: n // 2] = 0.0                                          # a silent stretch across the block edge
    path = tmp_path / "mono.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    samples, rate, peak, silent = soundtrack_stats(path)
    assert (samples, rate) == (n, 16000)
    assert peak == (float(np.abs(x).max()) if n else 0.0)
    assert silent == pytest.approx(silence_fraction(x, 16000) if n else 0.0, abs=1e-12)
    if n > 800 * 4096:
        assert 0.1 < silent < 0.3
