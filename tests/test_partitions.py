import pytest

from octavia_assets.partitions import video_key_for

FORBIDDEN = ["|", ",", "[", "]", "...", "/", " ", "\n"]


@pytest.mark.parametrize("object_key", [
    "uploads/Talk 2024.mp4", "uploads/día del niño.mov", "uploads/a|b,c[d]e.mp4", "uploads/..../x...y.mp4",
    "uploads/" + "x" * 300 + ".mp4", "uploads/.mp4", "uploads/日本語.mkv", "uploads/sub/dir/clip.webm",
])
def test_partition_keys_are_safe_and_readable(object_key):
    key = video_key_for(object_key, "v1")
    assert all(bad not in key for bad in FORBIDDEN)
    assert 10 < len(key) <= 60 and key == key.lower()


def test_partition_keys_are_unique_per_key_and_content_and_stable():
    a = video_key_for("uploads/talk.mp4", "v1")
    assert a == video_key_for("uploads/talk.mp4", "v1")
    assert a != video_key_for("uploads/talk.mp4", "v2")
    assert a != video_key_for("uploads/other/talk.mp4", "v1")
    assert a.startswith("talk-")
