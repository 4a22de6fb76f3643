import numpy as np

from octavia_assets.resources.report_html import (
    loudness_plot,
    render_html,
    speaker_timeline,
    speedup_histogram,
)

PNG = b"\x89PNG"


def test_report_page_has_plots_checks_and_line_table():
    t = np.arange(0, 10.0)
    plots = {"loudness": loudness_plot((t, np.full(10, -24.0)), {"pt": (t, np.r_[np.full(9, -16.0), -np.inf])}, -16.0),
             "speedups": speedup_histogram({"pt": [1.0, 1.1, 1.3]}, 1.25),
             "speakers": speaker_timeline([{"start": 0, "end": 2, "speaker": "A"}],
                                          {"pt": [{"start": 0, "end": 1.5, "speaker": "A"}]}, 10.0)}
    assert all(png.startswith(PNG) for png in plots.values())
    report = {"video": "v", "source": "uploads/v.mp4", "source_language": "en", "speaker_count": 1, "transcript_lines": 1,
              "mean_asr_confidence": 0.9, "speedup_cap": 1.25,
              "durations": {"source_duration_s": 10, "output_duration_s": 10, "max_stream_delta_frames": 0.0, "fps": 24},
              "checks": [{"asset": "final_video", "partition": "v", "check": "duration_match", "severity": "ERROR",
                          "passed": False, "description": "off by 3 frames"}],
              "languages": [{"language": "pt", "lines": 1, "integrated_lufs": -16.0, "true_peak_dbtp": -1.2,
                             "leakage_vs_vocals_db": -25.0, "speedup_median": 1.3, "speedup_max": 1.3,
                             "lines_not_fitting": 0, "overlaps": 0,
                             "chunks": [{"index": 0, "speaker": "A", "start": 0.0, "end": 1.5, "slot_s": 2.0,
                                         "speedup": 1.3, "fits": True, "text": "olá <b>", "source_text": "hello",
                                         "roundtrip_wer": 0.25}]}]}
    page = render_html(report, plots)
    assert page.count("data:image/png;base64,") == 3
    assert '<tr class="bad">' in page and "FAIL" in page and "off by 3 frames" in page
    assert "olá &lt;b&gt;" in page and "0.25" in page and 'class="bad">x1.30' in page   # over the cap, escaped text
