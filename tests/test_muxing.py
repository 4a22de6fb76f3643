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
