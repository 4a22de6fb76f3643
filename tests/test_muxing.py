import subprocess

import numpy as np

from octavia_assets.resources.media import probe, write_audio
from octavia_assets.resources.muxing import AudioTrack, mux
from tests.conftest import SAMPLE_VIDEO


def video_packet_hashes(path):
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                          "-f", "framemd5", "-"], capture_output=True, text=True, check=True).stdout
    return [line.rsplit(",", 1)[-1].strip() for line in out.splitlines() if not line.startswith("#")]


def test_mux_copies_video_and_keeps_duration(tmp_path):
    src = probe(SAMPLE_VIDEO)
    rate = 48000
    n = int(round(src.duration * rate))
    tracks = []
    for lang, freq in [("pt", 440), ("es", 550)]:
        t = np.arange(n) / rate
        wav = tmp_path / f"{lang}.wav"
        write_audio(wav, np.stack([0.1 * np.sin(2 * np.pi * freq * t)] * 2, 1), rate)
        tracks.append(AudioTrack(str(wav), lang, f"{lang} dub"))
    out = tmp_path / "out.mp4"
    mux(SAMPLE_VIDEO, tracks, src.duration, out)

    facts = probe(out)
    fps = src.video.fps
    assert [s.codec_type for s in facts.streams] == ["video", "audio", "audio"]
    assert [s.language for s in facts.streams[1:]] == ["por", "spa"]
    for s in facts.streams:
        assert abs(s.duration - src.duration) <= 1 / fps, (s.codec_type, s.duration, src.duration)
    assert video_packet_hashes(out) == video_packet_hashes(SAMPLE_VIDEO)   # bit-exact copy, no re-encode
    assert not list(tmp_path.glob(".*.part"))


def test_mux_5_1_original_odd_rate_dub_and_subtitles(tmp_path, shared_media):
    """5.1 source kept as the original track, a dub at an odd rate (37.8 kHz, not an AAC rate),
    soft subtitles per language; every audio/video stream ends with the video."""
    import json

    from octavia_assets.resources.muxing import SubtitleTrack
    from octavia_assets.resources.subtitles import write_subtitles
    src_path = shared_media / "video" / "bbb_5s_5.1.mp4"
    src = probe(src_path)
    rate = 37800
    t = np.arange(int(4.5 * rate)) / rate            # shorter than the video: padded to its end
    write_audio(tmp_path / "pt.wav", np.stack([0.1 * np.sin(2 * np.pi * 440 * t)] * 2, 1), rate)
    subs = []
    for lang in ("en", "pt"):
        srt_path, _, _ = write_subtitles([{"start": 0.5, "end": 2.0, "text": f"line {lang}"}], src.duration, tmp_path / lang)
        subs.append(SubtitleTrack(str(srt_path), lang, f"{lang} subtitles"))
    out = tmp_path / "out.mp4"
    mux(src_path, [AudioTrack(str(tmp_path / "pt.wav"), "pt", "Português (dub)", 2, rate)], src.duration, out,
        keep_original_audio=True, original_audio=AudioTrack(str(src_path), "en", "English (original)", 6, 44100),
        subtitles=subs, audio_bitrate="128k")
    info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
                                     capture_output=True, text=True, check=True).stdout)["streams"]
    kinds = [(s["codec_type"], s["codec_name"]) for s in info]
    assert kinds == [("video", "h264"), ("audio", "aac"), ("audio", "aac"), ("subtitle", "mov_text"),
                     ("subtitle", "mov_text")]
    dub, original = info[1], info[2]
    assert (dub["channels"], dub["sample_rate"], dub["disposition"]["default"]) == (2, "48000", 1)
    assert (original["channels"], original["sample_rate"], original["disposition"]["default"]) == (6, "44100", 0)
    assert [s["tags"]["language"] for s in info[1:]] == ["por", "eng", "eng", "por"]
    assert [s["tags"]["handler_name"] for s in info[1:3]] == ["Português (dub)", "English (original)"]
    assert int(original["bit_rate"]) > int(dub["bit_rate"]) * 2        # 5.1 gets 3x the stereo bitrate
    for s in info[:3]:
        assert abs(float(s["duration"]) - src.duration) <= 1 / src.video.fps, s["codec_type"]
    assert video_packet_hashes(out) == video_packet_hashes(src_path)


def test_final_video_blocking_check_stops_delivery_on_a_dropped_line(media_store, tmp_path):
    """A line missing from the dub fails no_dropped_lines (ERROR, blocking): the step fails and
    quality_report does not run; the other checks are still reported."""
    import dagster as dg

    from octavia_assets.delivery import final_video
    from octavia_assets.report import quality_report
    from octavia_assets.resources.engines import TtsEngine
    video = "sample-0000000000"
    src = probe(SAMPLE_VIDEO)
    media_store.put_file(SAMPLE_VIDEO, "uploads/sample.mp4")
    media_store.put_json({"object_key": "uploads/sample.mp4", **src.to_dict()}, f"derived/{video}/source/probe.json")
    media_store.put_json({"language": "en", "lines": [{"index": 0, "start": 1.0, "end": 3.0, "text": "hello"},
                                                      {"index": 1, "start": 5.0, "end": 7.0, "text": "lost line"}]},
                         f"derived/{video}/transcript/transcript.json")
    media_store.put_json({"language": "pt", "duration_s": src.duration, "lines": [
        {"index": 0, "start": 1.0, "end": 2.5, "speaker": "S", "text": "olá", "audio_key": "x", "duration_s": 1.5,
         "speedup": 1.1, "fits": True, "slot_s": 4.0}]}, f"derived/{video}/pt/dubbed_chunks.json")
    n = int(round(src.duration * 48000))
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(n) / 48000)
    write_audio(tmp_path / "mix.wav", np.stack([tone, tone], 1), 48000)
    media_store.put_file(tmp_path / "mix.wav", f"derived/{video}/pt/final_mix.wav")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", [video])
        result = dg.materialize([final_video, quality_report], partition_key=video, instance=instance,
                                resources={"media_store": media_store, "tts": TtsEngine()}, raise_on_error=False)
        assert not result.success
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert not evaluations["no_dropped_lines"].passed
        assert evaluations["no_dropped_lines"].severity == dg.AssetCheckSeverity.ERROR
        assert evaluations["no_dropped_lines"].metadata["dropped"].value == {"pt": [1]}
        assert evaluations["duration_match"].passed and evaluations["speedup_cap"].passed
        done = {e.asset_key.path[-1] for e in result.get_asset_materialization_events() for e in [e.materialization]}
        assert "quality_report" not in done


def test_a_track_that_cannot_be_encoded_fails_clearly_and_leaves_nothing(tmp_path):
    import pytest

    from octavia_assets.resources.media import MediaError
    src = probe(SAMPLE_VIDEO)
    rate = 48000
    good = tmp_path / "pt.wav"
    write_audio(good, np.zeros((int(src.duration * rate), 2), np.float32), rate)
    broken = tmp_path / "es.wav"
    broken.write_bytes(b"not audio")
    out = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="encoding the es dub audio"):
        mux(SAMPLE_VIDEO, [AudioTrack(str(good), "pt", "pt dub"), AudioTrack(str(broken), "es", "es dub")],
            src.duration, out)
    assert not out.exists() and not list(tmp_path.glob(".*.part"))
