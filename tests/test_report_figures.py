"""The quality report reuses the figures final_mix measured only while they belong to the stored mix."""
import numpy as np
import soundfile as sf

from octavia_assets.common import derived_key
from octavia_assets.mix import mix_figures_key, stored_mix_figures
from octavia_assets.resources.storage import LocalMediaStore

FIGURES = {"integrated_lufs": -16.02, "true_peak_dbtp": -1.6, "leakage_vs_vocals_db": -24.4}


def _put_mix(store, tmp_path, seconds: float) -> str:
    path = tmp_path / "mix.wav"
    sf.write(path, np.zeros((int(seconds * 48000), 2), np.float32), 48000, subtype="PCM_24")
    return store.put_file(path, derived_key("v", "pt", "final_mix.wav")).version


def test_figures_of_the_stored_mix_are_reused_and_those_of_another_mix_are_not(tmp_path):
    store = LocalMediaStore(root=str(tmp_path / "media"))
    assert stored_mix_figures(store, "v", "pt") is None                     # nothing measured yet
    version = _put_mix(store, tmp_path, 1.0)
    store.put_json({"mix_version": version, "figures": FIGURES}, mix_figures_key("v", "pt"))
    assert stored_mix_figures(store, "v", "pt") == FIGURES
    _put_mix(store, tmp_path, 2.0)          # a new mix whose own figures were never written
    assert stored_mix_figures(store, "v", "pt") is None
    store.delete(derived_key("v", "pt", "final_mix.wav"))
    assert stored_mix_figures(store, "v", "pt") is None
