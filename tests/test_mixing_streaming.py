"""The measurements of final_mix and quality_report read tracks from their files a block at a time
(memory flat in the length): they must give what the whole-array computations give, pyloudnorm
being the reference for loudness."""
import numpy as np
import pyloudnorm
import pytest

from octavia_assets.resources.media import read_audio, resample, write_audio
from octavia_assets.resources.mixing import (
    AudioFile,
    copy_audio,
    integrated_loudness,
    loudness_over_time,
    true_peak_db,
    voice_leakage_db,
)


@pytest.fixture(scope="module")
def real_tracks(shared_media, tmp_path_factory):
    """The dev composite's mix (24 kHz mono) and its 48 kHz stereo version (the final mix's format)."""
    tmp = tmp_path_factory.mktemp("tracks")
    src = shared_media / "composites" / "dev" / "mix.wav"
    stereo = tmp / "mix48.wav"
    resample(src, stereo, 48000, 2)
    return src, stereo, shared_media / "composites" / "dev" / "dialogue.wav"


def test_audio_file_slices_equal_read_audio(real_tracks):
    _, stereo, _ = real_tracks
    whole, rate = read_audio(stereo)
    view = AudioFile(stereo)
    assert (len(view), view.shape, view.ndim, view.sample_rate) == (len(whole), whole.shape, 2, rate)
    np.testing.assert_array_equal(view[12345:67890], whole[12345:67890])
    np.testing.assert_array_equal(view[len(whole) - 10:len(whole) + 50], whole[-10:])
    mono = AudioFile(stereo, mono=True)
    np.testing.assert_array_equal(mono[100:5000], read_audio(stereo, mono=True)[0][100:5000])
    with pytest.raises(TypeError):
        view[::2]


@pytest.mark.parametrize("which", [0, 1])
def test_integrated_loudness_by_blocks_equals_pyloudnorm(real_tracks, which):
    path = real_tracks[which]
    whole, rate = read_audio(path)
    reference = pyloudnorm.Meter(rate).integrated_loudness(np.asarray(whole, np.float64))
    # blocks that cut gating blocks and the filters' state anywhere
    for block in (1 << 20, 77777, 4801):
        assert integrated_loudness(AudioFile(path), rate, block=block) == pytest.approx(reference, abs=1e-6)
    assert integrated_loudness(whole, rate) == pytest.approx(reference, abs=1e-6)
    as64 = np.asarray(whole, np.float64)
    kept = as64.copy()
    assert integrated_loudness(as64, rate, block=4801) == pytest.approx(reference, abs=1e-6)
    np.testing.assert_array_equal(as64, kept)          # the caller's float64 array is not filtered in place
    assert integrated_loudness(whole[:, 0], rate) == pytest.approx(
        pyloudnorm.Meter(rate).integrated_loudness(np.asarray(whole[:, 0], np.float64)), abs=1e-6)


def test_integrated_loudness_gates_quiet_passages_like_pyloudnorm(real_tracks):
    whole, rate = read_audio(real_tracks[0])
    x = np.concatenate([whole, np.zeros((rate * 7, 1), np.float32), whole * 0.01])   # silence, then -40 dB
    reference = pyloudnorm.Meter(rate).integrated_loudness(np.asarray(x, np.float64))
    assert integrated_loudness(x, rate, block=30001) == pytest.approx(reference, abs=1e-6)
    silent = np.zeros((rate * 2, 2), np.float32)
    with np.errstate(divide="ignore"):
        assert integrated_loudness(silent, rate) == pyloudnorm.Meter(rate).integrated_loudness(silent) == -np.inf
    with pytest.raises(ValueError):          # shorter than one gating block, as pyloudnorm
        integrated_loudness(whole[:100], rate)


def _loudness_over_time_whole(x, rate, window_s=3.0, hop_s=1.0):
    """loudness_over_time as it was: the whole track in float64, one pyloudnorm call per window."""
    import warnings
    x = np.asarray(x, np.float64)
    win, hop = int(window_s * rate), int(hop_s * rate)
    meter = pyloudnorm.Meter(rate)
    times, values = [], []
    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        warnings.simplefilter("ignore")
        for i in range(0, max(1, len(x) - win + 1), hop):
            seg = x[i:i + win]
            values.append(float(meter.integrated_loudness(seg)))
            times.append((i + len(seg) / 2) / rate)
    return np.asarray(times), np.asarray(values)


def test_loudness_over_time_from_the_file_equals_the_whole_track(real_tracks):
    _, stereo, _ = real_tracks
    whole, rate = read_audio(stereo)
    t_ref, v_ref = _loudness_over_time_whole(whole, rate)
    t, v = loudness_over_time(AudioFile(stereo), rate, group=7)
    np.testing.assert_array_equal(t, t_ref)
    np.testing.assert_array_equal(v, v_ref)
    _, v_short = loudness_over_time(whole[: rate * 2], rate)      # shorter than one window
    np.testing.assert_array_equal(v_short, _loudness_over_time_whole(whole[: rate * 2], rate)[1])


def test_true_peak_from_the_file_equals_the_array(real_tracks):
    _, stereo, _ = real_tracks
    whole, _ = read_audio(stereo)
    assert true_peak_db(AudioFile(stereo), block=50000) == true_peak_db(whole)
    assert true_peak_db(AudioFile(stereo, mono=True)) == true_peak_db(whole.mean(axis=1))


def test_leakage_from_files_equals_arrays(real_tracks):
    mono, stereo, dialogue = real_tracks
    final, rate = read_audio(stereo)
    voice, voice_rate = read_audio(dialogue, mono=True)
    dub, dub_rate = read_audio(mono, mono=True)
    want = voice_leakage_db(final, rate, voice, voice_rate, dub, dub_rate)
    got = voice_leakage_db(AudioFile(stereo), rate, AudioFile(dialogue, mono=True), voice_rate, dub, dub_rate,
                           block_frames=37)
    assert got == want


def test_copy_audio_writes_what_write_audio_writes(real_tracks, tmp_path):
    _, stereo, _ = real_tracks
    whole, rate = read_audio(stereo)
    write_audio(tmp_path / "whole.wav", whole, rate, subtype="PCM_24")
    copy_audio(stereo, tmp_path / "blocks.wav", "PCM_24", block=10007)
    assert (tmp_path / "blocks.wav").read_bytes() == (tmp_path / "whole.wav").read_bytes()
    assert not list(tmp_path.glob(".*.part"))


def test_placed_track_equals_place_clips(shared_media, tmp_path):
    """The lazy dub timeline gives place_clips' samples (overlapping clips, a clip cut at the end),
    and written a block at a time the same dub.wav as write_audio of the whole array."""
    from octavia_assets.resources.mixing import PlacedTrack, place_clips, write_audio_blocks
    paths = []
    for i, name in enumerate(["mix.wav", "dialogue.wav"]):
        whole, rate = read_audio(shared_media / "composites" / "dev" / name, mono=True)
        paths.append(tmp_path / f"clip{i}.wav")
        write_audio(paths[-1], whole[i * 5000: i * 5000 + rate * 4], rate)     # 4 s clips
    starts = [(0.5, paths[0]), (2.25, paths[1]), (3.0, paths[0]), (9.0, paths[1])]   # overlaps; the last cut at 10 s
    arrays = [(s, read_audio(p, mono=True)[0]) for s, p in starts]
    want = place_clips(arrays, 10.0, rate)
    view = PlacedTrack(starts, 10.0)
    assert (len(view), view.sample_rate) == (len(want), rate)
    np.testing.assert_array_equal(view[0:len(view)], want)
    for a, b in [(0, 1), (12000, 77777), (len(want) - 100, len(want) + 100), (5, 5)]:
        np.testing.assert_array_equal(view[a:b], want[a:b])
    write_audio(tmp_path / "whole.wav", want, rate)
    write_audio_blocks(tmp_path / "blocks.wav", view, rate, "PCM_16", block=9999)
    assert (tmp_path / "blocks.wav").read_bytes() == (tmp_path / "whole.wav").read_bytes()
    assert len(PlacedTrack([], 2.0)) == 48000 and not PlacedTrack([], 2.0)[0:10].any()
