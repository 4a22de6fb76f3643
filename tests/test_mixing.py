import numpy as np
import pytest

from octavia_assets.resources.media import read_audio, write_audio
from octavia_assets.resources.mixing import MixSettings, integrated_loudness, mix, place_clips, true_peak_db

RATE = 24000


def tone(freq, seconds, rate=RATE, amp=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_place_clips_exact_length_and_positions():
    track = place_clips([(1.0, np.ones(100, np.float32)), (9.99, np.ones(1000, np.float32))], 10.0, 1000)
    assert len(track) == 10000
    assert track[999] == 0 and track[1000] == 1 and track[1099] == 1 and track[1100] == 0
    assert track[-1] == 1  # clipped at the end, never extends the timeline


@pytest.fixture
def background(tmp_path):
    # Steady "music" bed: two tones, stereo, 44.1 kHz like the stems.
    bed = tone(220, 12, 44100, 0.2) + tone(330, 12, 44100, 0.1)
    path = tmp_path / "bg.wav"
    write_audio(path, np.stack([bed, bed], 1), 44100)
    return path


@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_mix_hits_loudness_target_and_true_peak(tmp_path, background, target):
    dub = place_clips([(2.0, tone(600, 3.0, amp=0.5)), (7.0, tone(500, 3.0, amp=0.5))], 12.0, RATE)
    figures = mix(background, dub, RATE, 12.0, tmp_path / "mix.wav", MixSettings(target_lufs=target))
    out, rate = read_audio(tmp_path / "mix.wav")
    assert rate == 48000 and out.shape == (12 * 48000, 2)
    assert abs(integrated_loudness(out, rate) - target) <= 1.0
    assert true_peak_db(out) <= -1.0 + 0.3   # ffmpeg loudnorm's true-peak limiter, measured 4x oversampled
    assert figures["samples"] == 12 * 48000


def test_background_is_ducked_while_dub_speaks(tmp_path, background):
    dub = place_clips([(4.0, tone(1000, 4.0, amp=0.5))], 12.0, RATE)
    mix(background, dub, RATE, 12.0, tmp_path / "mix.wav", MixSettings())
    out, rate = read_audio(tmp_path / "mix.wav", mono=True)

    def band_level(seg, lo, hi):
        spec = np.abs(np.fft.rfft(seg)) ** 2
        f = np.fft.rfftfreq(len(seg), 1 / rate)
        return 10 * np.log10(spec[(f > lo) & (f < hi)].sum() + 1e-12)

    bed_alone = band_level(out[int(1 * rate):int(3 * rate)], 150, 400)
    bed_under_dub = band_level(out[int(5 * rate):int(7 * rate)], 150, 400)
    assert bed_alone - bed_under_dub > 6.0, (bed_alone, bed_under_dub)
