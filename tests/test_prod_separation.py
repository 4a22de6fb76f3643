"""Demucs separation engine on a tiny randomly initialised HTDemucs saved as a demucs local repo
(the real loading, windowing and stem code; not separation quality)."""
import hashlib
import io

import numpy as np
import pytest
import soundfile as sf

demucs = pytest.importorskip("demucs", reason="demucs==4.1.0 not installed (dev extra)")
torch = pytest.importorskip("torch")

from octavia_assets.resources.model_dir import ModelMissing
from octavia_assets.resources.prod_separation import DemucsSeparator

RATE = 8000
SOURCES = ["drums", "bass", "other", "vocals"]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    """<root>/tiny/: tiny.yaml + <sig>-<sha256[:8]>.th, the layout `octavia models fetch` writes."""
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state
    torch.manual_seed(0)
    model = HTDemucs(sources=SOURCES, channels=8, depth=2, t_layers=1, t_heads=2, nfft=512, segment=1,
                     samplerate=RATE, dconv_depth=1, dconv_comp=4)
    args, kwargs = model._init_args_kwargs
    buf = io.BytesIO()
    torch.save({"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": get_state(model, None)}, buf)
    root = tmp_path_factory.mktemp("models")
    folder = root / "tiny"
    folder.mkdir()
    (folder / f"abcd1234-{hashlib.sha256(buf.getvalue()).hexdigest()[:8]}.th").write_bytes(buf.getvalue())
    (folder / "tiny.yaml").write_text("models: ['abcd1234']\n")
    return root


@pytest.fixture
def models(model_root, monkeypatch):
    monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(model_root))
    return model_root


def _mix(path, seconds: float, rate: int = RATE, channels: int = 2):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(1)
    x = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))
    data = np.stack([x, 0.8 * x], axis=1)[:, :channels].astype(np.float32)
    sf.write(path, data, rate, subtype="PCM_16")
    return sf.read(path, dtype="float32", always_2d=True)[0]


def test_one_window_equals_apply_model_on_the_normalised_mix(models, tmp_path):
    from demucs.apply import apply_model
    from demucs.pretrained import get_model
    mix = _mix(tmp_path / "mix.wav", 2.0)
    sep = DemucsSeparator("tiny", window_s=10.0, crossfade_s=1.0)
    meta = sep.separate(tmp_path / "mix.wav", tmp_path / "v.wav", tmp_path / "b.wav")
    assert meta["windows"] == 1 and meta["sample_rate"] == RATE and meta["device"] == "cpu"
    assert meta["fp16"] is False
    mono = mix.mean(axis=1)
    mean, std = mono.mean(), mono.std()
    ref = apply_model(get_model("tiny", repo=models / "tiny"), torch.from_numpy(((mix - mean) / std).T)[None],
                      shifts=0, split=True, overlap=0.25)[0].numpy().transpose(0, 2, 1) * std
    vocals, sr = sf.read(tmp_path / "v.wav", dtype="float32", always_2d=True)
    background, _ = sf.read(tmp_path / "b.wav", dtype="float32", always_2d=True)
    assert sr == RATE and vocals.shape == background.shape == mix.shape
    np.testing.assert_allclose(vocals, np.clip(ref[3], -1, 1), atol=2e-4)
    np.testing.assert_allclose(background, np.clip(ref[:3].sum(axis=0) + mean, -1, 1), atol=2e-4)


def test_long_input_is_processed_in_windows_read_from_disk(models, tmp_path, monkeypatch):
    mix = _mix(tmp_path / "mix.wav", 4.0)
    sep = DemucsSeparator("tiny", window_s=1.5, crossfade_s=0.3)
    seen = []
    real_apply = sep._apply
    monkeypatch.setattr(sep, "_apply", lambda model, block, device: seen.append(len(block)) or real_apply(
        model, block, device))
    meta = sep.separate(tmp_path / "mix.wav", tmp_path / "v.wav", tmp_path / "b.wav")
    # 4 s in 1.5-s windows advancing 1.2 s: the model never sees more than one window.
    assert meta["windows"] == len(seen) == 4 and max(seen) == int(1.5 * RATE)
    vocals = sf.read(tmp_path / "v.wav", dtype="float32", always_2d=True)[0]
    assert len(vocals) == len(mix) and np.isfinite(vocals).all() and np.abs(vocals).max() > 0
    # The cross-fades join the windows: the windowed vocals track the single-window ones.
    DemucsSeparator("tiny", window_s=10.0, crossfade_s=1.0).separate(tmp_path / "mix.wav", tmp_path / "v1.wav",
                                                                     tmp_path / "b1.wav")
    whole = sf.read(tmp_path / "v1.wav", dtype="float32", always_2d=True)[0]
    assert np.corrcoef(vocals.ravel(), whole.ravel())[0, 1] > 0.8
    assert not list(tmp_path.glob(".*.part")) and not list(tmp_path.glob(".octavia-demucs-*"))


def test_other_rates_and_mono_are_converted_to_the_models_format(models, tmp_path):
    _mix(tmp_path / "mono.wav", 1.0, rate=16000, channels=1)
    meta = DemucsSeparator("tiny", window_s=10.0, crossfade_s=1.0).separate(
        tmp_path / "mono.wav", tmp_path / "v.wav", tmp_path / "b.wav")
    info = sf.info(tmp_path / "v.wav")
    assert (info.samplerate, info.channels) == (RATE, 2) and meta["audio_seconds"] == pytest.approx(1.0, abs=0.01)


def test_version_is_computed_without_loading_and_missing_weights_name_the_fetch(models, tmp_path, monkeypatch):
    sep = DemucsSeparator("tiny")
    assert sep.version.startswith("demucs-tiny@") and "absent" not in sep.version and sep._model is None
    assert DemucsSeparator("tiny", shifts=1).version != sep.version
    monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(tmp_path / "empty"))
    absent = DemucsSeparator("htdemucs_ft")
    assert "@absent+" in absent.version
    _mix(tmp_path / "mix.wav", 1.0)
    with pytest.raises(ModelMissing, match="octavia models fetch htdemucs_ft"):
        absent.separate(tmp_path / "mix.wav", tmp_path / "v.wav", tmp_path / "b.wav")
    # A checkpoint whose bytes do not match the checksum in its name is refused by demucs' LocalRepo.
    bad = tmp_path / "bad" / "tiny"
    bad.mkdir(parents=True)
    (bad / "tiny.yaml").write_text("models: ['abcd1234']\n")
    th = next((models / "tiny").glob("*.th"))
    data = bytearray(th.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / th.name).write_bytes(bytes(data))
    monkeypatch.setenv("OCTAVIA_MODEL_DIR", str(tmp_path / "bad"))
    with pytest.raises(Exception, match="checksum"):
        DemucsSeparator("tiny").separate(tmp_path / "mix.wav", tmp_path / "v.wav", tmp_path / "b.wav")


def test_engine_registry_builds_demucs_by_name(models, monkeypatch):
    from octavia_assets.resources import engines
    monkeypatch.setenv("OCTAVIA_SEPARATION_ENGINE", "htdemucs_ft")
    engines._separator.cache_clear()
    try:
        version = engines.engine_version("separation")
        assert version.startswith("demucs-htdemucs_ft@absent+")   # no weights here: version, no load
        assert isinstance(engines.SeparationEngine(engine="htdemucs_ft").get(), DemucsSeparator)
    finally:
        engines._separator.cache_clear()


@pytest.mark.slow
def test_real_htdemucs_weights_when_the_model_directory_has_them(tmp_path):
    """With real weights (OCTAVIA_MODEL_DIR filled by `octavia models fetch htdemucs`), speech over a
    buzzing tone lands in the vocals stem and the tone in the background."""
    import subprocess

    from octavia_assets.resources.model_dir import missing_files, model_path
    name = next((n for n in ("htdemucs", "htdemucs_ft") if model_path(n).is_dir() and not missing_files(n)), None)
    if name is None:
        pytest.skip("no htdemucs/htdemucs_ft weights in the model directory (run `octavia models fetch htdemucs`)")
    speech_wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(speech_wav), "This is a test of the separation model, one two three."],
                   check=True)
    speech, sr = sf.read(speech_wav, dtype="float32")
    speech = np.interp(np.arange(int(len(speech) * 44100 / sr)) * sr / 44100, np.arange(len(speech)), speech)
    t = np.arange(len(speech)) / 44100
    tone = 0.2 * np.sign(np.sin(2 * np.pi * 110 * t))
    mix = np.stack([speech * 0.5 + tone] * 2, axis=1).astype(np.float32)
    sf.write(tmp_path / "mix.wav", mix, 44100)
    DemucsSeparator(name).separate(tmp_path / "mix.wav", tmp_path / "v.wav", tmp_path / "b.wav")
    vocals = sf.read(tmp_path / "v.wav", dtype="float32")[0].mean(axis=1)
    background = sf.read(tmp_path / "b.wav", dtype="float32")[0].mean(axis=1)
    assert np.corrcoef(vocals, speech)[0, 1] > 0.5 > abs(np.corrcoef(vocals, tone)[0, 1])
    assert np.corrcoef(background, tone)[0, 1] > 0.7
