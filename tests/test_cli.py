"""The CLI fails fast and clearly on bad input (the real engines are exercised by test_e2e)."""
import subprocess
import sys

from tests.conftest import REPO


def run_cli(*args, env):
    return subprocess.run([sys.executable, "-m", "octavia_assets.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def test_missing_file(octavia_home, tmp_path):
    import os
    r = run_cli("dub", str(tmp_path / "nope.mp4"), "--to", "pt", env=dict(os.environ))
    assert r.returncode == 1 and "no such file" in r.stderr


def test_empty_upload_fails_with_one_line_reason(octavia_home, tmp_path):
    import os
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    r = run_cli("dub", str(empty), "--to", "pt", "--out", str(tmp_path / "out"), env=dict(os.environ))
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("octavia: error: dub of empty.mp4 failed: source_video: unusable upload:")
    assert "file is empty (0 bytes)" in last
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_language_list(octavia_home, tmp_path):
    import os
    r = run_cli("dub", str(REPO / "samples" / "octavia_sample.mp4"), "--to", "p|t", env=dict(os.environ))
    assert r.returncode == 1 and "not ISO 639 codes" in r.stderr


def test_redub_rejects_an_unknown_stage(octavia_home):
    import os
    r = run_cli("redub", "--stage", "nope", env=dict(os.environ))
    assert r.returncode == 1 and "unknown stage(s) ['nope']" in r.stderr and "transcript" in r.stderr


def test_redub_on_an_empty_home_has_nothing_to_do(octavia_home):
    import os
    r = run_cli("redub", env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "re-dub done (0 downstream partition(s) re-materialized)" in r.stderr
