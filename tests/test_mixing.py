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
    assert true_peak_db(out) <= -1.0   # the ceiling, measured 4x oversampled (loudnorm aims at -1.5)
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
