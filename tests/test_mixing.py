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
    assert true_peak_db(out) <= -1.0   # the ceiling, measured 4x oversampled (the limiter aims at -1.5)
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


def test_final_mix_reports_its_checks_and_a_forced_failure(media_store):
    """final_mix on synthetic stems: loudness and leakage checks pass; the dub is silent over one
    original line, so that warning check fails, and the run still succeeds (WARN, not blocking)."""
    import dagster as dg

    from octavia_assets.mix import final_mix
    from octavia_assets.partitions import video_language_key
    video, lang = "clip-0000000000", "pt"
    bed = tone(220, 12, 44100, 0.1)
    voice = place_clips([(1.0, tone(300, 3.0, 44100, 0.3)), (6.0, tone(310, 2.0, 44100, 0.3))], 12.0, 44100)
    with workdir_files() as tmp:
        write_audio(tmp / "bg.wav", np.stack([bed + 0.01 * voice] * 2, 1), 44100)
        write_audio(tmp / "vocals.wav", np.stack([voice] * 2, 1), 44100)
        write_audio(tmp / "line.wav", tone(600, 3.0, amp=0.4), RATE)
        media_store.put_file(tmp / "bg.wav", f"derived/{video}/stems/background.wav")
        media_store.put_file(tmp / "vocals.wav", f"derived/{video}/stems/vocals.wav")
        media_store.put_file(tmp / "line.wav", f"derived/{video}/{lang}/dub/a.wav")
    media_store.put_json({"language": lang, "duration_s": 12.0, "lines": [
        {"index": 0, "start": 1.0, "end": 4.0, "speaker": "S", "text": "olá", "audio_key": f"derived/{video}/{lang}/dub/a.wav",
         "duration_s": 3.0, "speedup": 1.0, "fits": True}]}, f"derived/{video}/{lang}/dubbed_chunks.json")
    media_store.put_json({"language": "en", "lines": [{"index": 0, "start": 1.0, "end": 4.0, "text": "hello"},
                                                      {"index": 1, "start": 6.0, "end": 8.0, "text": "dropped"}]},
                         f"derived/{video}/transcript/transcript.json")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", [video])
        result = dg.materialize([final_mix], partition_key=video_language_key(video, lang), instance=instance,
                                resources={"media_store": media_store}, selection=[final_mix])
        assert result.success
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"loudness", "voice_leakage", "dub_speaks_where_speech_was"}
    assert evaluations["loudness"].passed and evaluations["voice_leakage"].passed
    silent = evaluations["dub_speaks_where_speech_was"]
    assert not silent.passed and silent.severity == dg.AssetCheckSeverity.WARN
    assert silent.metadata["silent_lines"].value == [1]


def workdir_files():
    from octavia_assets.common import workdir
    return workdir("test-mix")


def test_true_peak_by_blocks_equals_the_whole_track_oversampled():
    """Blocks with a filter margin give the same 4x-oversampled peak as the whole track at once,
    also for an inter-sample peak that falls on a block boundary."""
    from scipy.signal import resample_poly
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5500, 2)) * 0.05).astype(np.float32)
    x[999:1001, 1] = [0.9, -0.9]            # the true peak lies between these samples, at the boundary
    whole = 20 * np.log10(max(float(np.max(np.abs(resample_poly(x[:, c].astype(np.float64), 4, 1))))
                              for c in range(2)))
    assert true_peak_db(x, block=1000) == pytest.approx(whole, abs=1e-9)
    assert true_peak_db(x[:, 1], block=1000) == pytest.approx(whole, abs=1e-9)
    assert true_peak_db(x) == pytest.approx(whole, abs=1e-9)


def _leakage_whole_track(final_mix, mix_rate, original_voice, voice_rate, dub, dub_rate, frame_s=0.1):
    """voice_leakage_db as it was computed before blocks: every track whole, in float64."""
    from scipy.signal import resample_poly
    x = np.asarray(final_mix, np.float64)
    x = x.mean(axis=1) if x.ndim == 2 else x
    refs = []
    for sig, rate in ((original_voice, voice_rate), (dub, dub_rate)):
        r = np.asarray(sig, np.float64)
        r = r.mean(axis=1) if r.ndim == 2 else r
        if rate != mix_rate:
            g = np.gcd(int(rate), int(mix_rate))
            r = resample_poly(r, mix_rate // g, rate // g)
        refs.append(np.pad(r, (0, max(0, len(x) - len(r))))[: len(x)])
    n = int(frame_s * mix_rate)
    frames = len(x) // n
    X, V, D = (a[: frames * n].reshape(frames, n) for a in (x, *refs))
    ev, ed = (V * V).sum(1), (D * D).sum(1)
    active = ev > ev.max() * 10 ** (-30 / 10)
    e_voice = np.where(ev > 0, (X * V).sum(1) ** 2 / np.where(ev > 0, ev, 1), 0.0)
    e_dub = np.where(ed > 0, (X * D).sum(1) ** 2 / np.where(ed > 0, ed, 1), 0.0)
    floor = ((X * X).sum(1)[active] / n).sum()
    sums = np.stack([(X * X).sum(1), ev, ed, (X * V).sum(1), (X * D).sum(1)])
    return (10 * np.log10(e_voice[active].sum() / e_dub[active].sum()),
            10 * np.log10(floor / e_dub[active].sum()), sums)


@pytest.mark.parametrize("voice_len_s", [9.0, 7.3])      # the voice as long as the mix, and ending early
def test_leakage_by_blocks_equals_the_whole_track(voice_len_s):
    from octavia_assets.resources.mixing import leakage_frame_sums, voice_leakage_db
    rng = np.random.default_rng(5)
    mix_rate, voice_rate, dub_rate = 48000, 44100, 24000
    t_v = np.arange(int(voice_len_s * voice_rate)) / voice_rate
    voice = (0.3 * rng.standard_normal(len(t_v)) * (np.sin(2 * np.pi * 0.5 * t_v) > 0)).astype(np.float32)
    dub = (0.2 * rng.standard_normal(int(9.0 * dub_rate))).astype(np.float32)
    t_m = np.arange(int(9.0 * mix_rate)) / mix_rate
    mix = np.stack([0.05 * np.sin(2 * np.pi * 180 * t_m) + 0.01 * rng.standard_normal(len(t_m))] * 2, axis=1)
    mix = mix.astype(np.float32)
    mix[: len(dub) * 2, 0] += np.repeat(dub, 2)[: len(mix)] * 0.5
    leak, floor, whole = _leakage_whole_track(mix, mix_rate, voice, voice_rate, dub, dub_rate)
    sums = leakage_frame_sums(mix, mix_rate, voice, voice_rate, dub, dub_rate, 4800, block_frames=7)  # 0.7 s blocks
    np.testing.assert_allclose(sums, whole, rtol=1e-9, atol=1e-9)          # every frame, every sum
    got = voice_leakage_db(mix, mix_rate, voice, voice_rate, dub, dub_rate, block_frames=7)
    assert got["leakage_db"] == pytest.approx(round(leak, 2), abs=0.011)
    assert got["floor_db"] == pytest.approx(round(floor, 2), abs=0.011)
    assert got == voice_leakage_db(mix, mix_rate, voice, voice_rate, dub, dub_rate)   # default blocks


def test_one_gain_when_it_fits_else_the_true_peak_limiter(tmp_path, background):
    """A gain that keeps the peaks under the ceiling is all the normalisation; a gain up that would push
    full-scale clicks over it also limits them, and still lands on the target loudness."""
    dub = place_clips([(2.0, tone(600, 3.0, amp=0.5)), (7.0, tone(500, 3.0, amp=0.5))], 12.0, RATE)
    quieter = mix(background, dub, RATE, 12.0, tmp_path / "quiet.wav", MixSettings(target_lufs=-23.0))
    assert quieter["normalization_type"] == "gain"      # one gain down: no peak can pass the ceiling
    assert quieter["gain_db"] == pytest.approx(-23.0 - quieter["input_lufs_before_norm"], abs=0.02)
    quiet_bed = tmp_path / "quiet_bed.wav"
    write_audio(quiet_bed, 0.05 * read_audio(background)[0], 44100)
    clicks = np.zeros(12 * RATE, np.float32)
    clicks[RATE::RATE] = 1.0                               # full-scale clicks over a quiet mix
    louder = mix(quiet_bed, 0.05 * dub + clicks, RATE, 12.0, tmp_path / "loud.wav", MixSettings(target_lufs=-16.0))
    assert louder["normalization_type"] == "gain+true-peak limiter"
    assert louder["gain_db"] > 0
    out, rate = read_audio(tmp_path / "loud.wav")
    assert abs(integrated_loudness(out, rate) + 16.0) <= 0.2
    assert true_peak_db(out) <= -1.0


def test_the_limiter_moves_nothing_in_time(tmp_path, background):
    """The look-ahead limiter's delay is compensated: a limited mix stays in sync with the video."""
    from octavia_assets.resources.mixing import _gain_and_limit
    rate = 48000
    x = np.zeros((4 * rate, 2), np.float32)
    x[rate:rate + 2400] = tone(1000, 0.05, rate, 0.9)[:, None]      # a loud burst at 1.000 s
    x[2 * rate + 777] = 0.99                                         # a click at 2 s + 777 samples
    src, limited = tmp_path / "x.wav", tmp_path / "limited.wav"
    write_audio(src, x, rate, subtype="FLOAT")
    _gain_and_limit(src, limited, 6.0, len(x), MixSettings(), limit=True)
    y, _ = read_audio(limited)
    assert y.shape == x.shape
    assert true_peak_db(y) <= -1.0
    onset = int(np.argmax(np.abs(y[:, 0]) > 0.05))
    assert abs(onset - rate) <= 2
    assert abs(int(np.argmax(np.abs(y[int(1.5 * rate):, 0]))) + int(1.5 * rate) - (2 * rate + 777)) <= 2
