import os

import pytest

from octavia_assets.resources.storage import LocalMediaStore, UnsafeKeyError, check_key


def test_put_and_read_roundtrip(tmp_path):
    store = LocalMediaStore(root=str(tmp_path))
    info = store.put_bytes(b"hello", "derived/v1/a/b.txt")
    assert info.size == 5 and store.read_bytes("derived/v1/a/b.txt") == b"hello"
    assert store.exists("derived/v1/a/b.txt") and not store.exists("derived/v1/a/c.txt")
    store.put_json({"x": 1}, "derived/v1/a/c.json")
    assert store.read_json("derived/v1/a/c.json") == {"x": 1}


def test_put_is_atomic_and_leaves_no_temp_files(tmp_path):
    store = LocalMediaStore(root=str(tmp_path))
    store.put_bytes(b"1" * 1000, "k/obj")
    store.put_bytes(b"2" * 10, "k/obj")  # overwrite replaces whole
    assert store.read_bytes("k/obj") == b"2" * 10
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["obj"]


def test_failed_copy_leaves_old_object(tmp_path):
    store = LocalMediaStore(root=str(tmp_path))
    store.put_bytes(b"old", "k/obj")
    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "does-not-exist", "k/obj")
    assert store.read_bytes("k/obj") == b"old"
    assert [p.name for p in (tmp_path / "k").iterdir()] == ["obj"]


def test_list_objects_is_ordered_bounded_and_resumes_after_cursor(tmp_path):
    store = LocalMediaStore(root=str(tmp_path))
    for name in ["c.mp4", "a.mp4", "sub/b.mp4", ".hidden.part"]:
        store.put_bytes(b"x", f"uploads/{name}") if not name.startswith(".") else (tmp_path / "uploads" / name).write_bytes(b"x")
    keys = [o.key for o in store.list_objects("uploads/")]
    assert keys == ["uploads/a.mp4", "uploads/c.mp4", "uploads/sub/b.mp4"]
    assert [o.key for o in store.list_objects("uploads/", limit=2)] == keys[:2]
    assert [o.key for o in store.list_objects("uploads/", start_after="uploads/a.mp4")] == keys[1:]
    assert store.list_objects("nothing/") == []


def test_list_objects_matches_key_order_across_folders_and_skips_old_subtrees(tmp_path, monkeypatch):
    # Key order, not folder order: "a.mp4" < "a/x.mp4" < "a0.mp4" ('.' < '/' < '0'), as S3 lists them.
    store = LocalMediaStore(root=str(tmp_path))
    names = ["a0.mp4", "a/x.mp4", "a.mp4", "a/b/y.mp4", "b/z.mp4", "c/d/e.mp4", "c.mp4"]
    for name in names:
        store.put_bytes(b"x", f"uploads/{name}")
    every = sorted(f"uploads/{n}" for n in names)
    assert [o.key for o in store.list_objects("uploads/")] == every
    for i, cursor in enumerate(every):
        assert [o.key for o in store.list_objects("uploads/", start_after=cursor)] == every[i + 1:]
        assert [o.key for o in store.list_objects("uploads/", start_after=cursor, limit=2)] == every[i + 1:i + 3]
    # A cursor inside a folder, between keys that exist.
    assert [o.key for o in store.list_objects("uploads/", start_after="uploads/a/c")] == every[every.index("uploads/a/x.mp4"):]
    # Folders wholly before the cursor are not even opened: a tick's cost does not grow with old uploads.
    opened = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: opened.append(os.path.relpath(p, tmp_path)) or real_scandir(p))
    assert [o.key for o in store.list_objects("uploads/", start_after="uploads/b/z.mp4", limit=1)] == ["uploads/c.mp4"]
    assert opened == ["uploads", "uploads/b"]  # not a/ nor a/b/ (before), nor c/ (past the limit)


def test_local_put_json_if_absent_writes_once_and_leaves_no_temp_files(tmp_path):
    store = LocalMediaStore(root=str(tmp_path))
    assert store.put_json_if_absent({"n": 1}, "videos/v/upload.json") is True
    assert store.put_json_if_absent({"n": 2}, "videos/v/upload.json") is False
    assert store.read_json("videos/v/upload.json") == {"n": 1}
    assert [p.name for p in (tmp_path / "videos" / "v").iterdir()] == ["upload.json"]


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/\x00b"])
def test_unsafe_keys_are_rejected(key):
    with pytest.raises(UnsafeKeyError):
        check_key(key)


def test_version_changes_with_new_content(tmp_path):
    store = LocalMediaStore(root=str(tmp_path))
    v1 = store.put_bytes(b"one", "uploads/v.mp4").version
    v2 = store.put_bytes(b"three", "uploads/v.mp4").version
    assert v1 != v2
