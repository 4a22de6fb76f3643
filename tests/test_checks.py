"""Each quality gate passes on good figures and fails once on a forced bad one."""
import numpy as np
import pytest

from octavia_assets import checks


def dubs(speedups=(1.0, 1.1), fits=True, drop=None):
    lines = [{"index": i, "text": "linha", "speedup": s, "fits": fits, "duration_s": 1.0, "start": i * 2.0}
             for i, s in enumerate(speedups) if i != drop]
    return {"pt": {"lines": lines}}


TRANSCRIPT = [{"index": 0, "text": "one", "start": 0.0, "end": 1.0}, {"index": 1, "text": "two", "start": 2.0, "end": 3.0}]


@pytest.mark.parametrize("check,good,bad", [
    ("duration_match", lambda: checks.duration_match({"video0": 0.0, "audio1": 0.02}, 24.0, {"subtitle3": 50.0}, 60.0),
     lambda: checks.duration_match({"video0": 0.0, "audio1": 0.5}, 24.0)),                     # audio 12 frames long
    ("subtitles_past_end", lambda: checks.duration_match({"video0": 0.0}, 24.0, {"subtitle2": 59.0}, 60.0),
     lambda: checks.duration_match({"video0": 0.0}, 24.0, {"subtitle2": 61.0}, 60.0)),
    ("no_dropped_lines", lambda: checks.no_dropped_lines(TRANSCRIPT, dubs()),
     lambda: checks.no_dropped_lines(TRANSCRIPT, dubs(drop=1))),
    ("speedup_cap", lambda: checks.speedup_cap(dubs((1.0, 1.25)), 1.25),
     lambda: checks.speedup_cap(dubs((1.0, 1.4)), 1.25)),
    ("not_fitting", lambda: checks.speedup_cap(dubs(), 1.25), lambda: checks.speedup_cap(dubs(fits=False), 1.25)),
    ("loudness", lambda: checks.loudness(-16.4, -1.2, -16.0), lambda: checks.loudness(-12.0, -1.2, -16.0)),  # too loud
    ("true_peak", lambda: checks.loudness(-16.0, -1.0, -16.0), lambda: checks.loudness(-16.0, -0.2, -16.0)),
    ("leakage", lambda: checks.leakage(-21.0, "vocals"), lambda: checks.leakage(-9.0, "vocals")),
    ("silent_dub", lambda: checks.dub_speaks_where_speech_was(np.full(4000, 0.1), 1000, TRANSCRIPT),
     lambda: checks.dub_speaks_where_speech_was(np.r_[np.full(2000, 0.1), np.zeros(2000)], 1000, TRANSCRIPT)),
])
def test_check_passes_then_fails_when_forced(check, good, bad):
    ok, broken = good(), bad()
    assert ok.passed, ok.description
    assert not broken.passed, broken.description
    assert broken.description and broken.description != ok.description
