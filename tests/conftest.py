import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = REPO.parent / "shared" / "media"
SAMPLE_VIDEO = REPO / "samples" / "octavia_sample.mp4"

warnings.filterwarnings("ignore", message=".*is currently in beta.*")
warnings.filterwarnings("ignore", message=".*is currently in preview.*")


@pytest.fixture(scope="session")
def shared_media() -> Path:
    if not (SHARED_MEDIA / "MANIFEST.md").is_file():
        pytest.skip("needs ../shared/media (the test media kit beside the repo)")
    return SHARED_MEDIA


@pytest.fixture
def octavia_home(tmp_path, monkeypatch) -> Path:
    """A fresh Octavia home: DAGSTER_HOME and media store in a temp folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("OCTAVIA_MEDIA_ROOT", str(home / "media"))
    return home


@pytest.fixture
def media_store(octavia_home):
    from octavia_assets.resources.storage import LocalMediaStore
    return LocalMediaStore(root=str(octavia_home / "media"))


def make_media(path: Path, *args: str) -> Path:
    """Generate a test input with ffmpeg (lavfi sources), e.g. make_media(p, '-f', 'lavfi', '-i', ...)."""
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args, str(path)], check=True)
    return path


@pytest.fixture
def silent_video_no_audio(tmp_path) -> Path:
    return make_media(tmp_path / "no_audio.mp4", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=24",
                      "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p")


def copy_to(path: Path, dest_dir: Path, name: str | None = None) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (name or path.name)
    shutil.copyfile(path, dest)
    return dest


# Real S3 and PostgreSQL servers for the production-platform tests (tests/servers.py).
from tests.servers import postgres_db, s3_endpoint, s3_env, s3_store  # noqa: F401
