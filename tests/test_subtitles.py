import srt

from octavia_assets.resources.subtitles import cues_from_lines, write_subtitles


def test_cues_follow_lines_wrap_and_never_overlap(tmp_path):
    lines = [{"start": 1.0, "end": 3.2, "text": "Olá, meus amigos."},
             {"start": 3.0, "end": 9.0, "text": " ".join(["palavra"] * 30)},   # too long for one cue
             {"start": 9.5, "end": 12.0, "text": "   "},                           # nothing to show
             {"start": 11.0, "end": 14.0, "text": "Fim."}]
    cues = cues_from_lines(lines, duration_s=12.5)
    assert cues[0].start.total_seconds() == 1.0 and cues[0].end.total_seconds() == 3.0   # cut at the next line
    assert all(len(c.content.splitlines()) <= 2 and all(len(x) <= 42 for x in c.content.splitlines()) for c in cues)
    assert len(cues) > 3                                  # the long line became several cues
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:]))
    assert cues[-1].content == "Fim." and cues[-1].end.total_seconds() == 12.5   # never past the video

    srt_path, vtt_path, n = write_subtitles(lines, 12.5, tmp_path / "pt")
    assert n == len(cues)
    assert [c.content for c in srt.parse(srt_path.read_text())] == [c.content for c in cues]
    vtt = vtt_path.read_text()
    assert vtt.startswith("WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nOlá, meus amigos.\n")
