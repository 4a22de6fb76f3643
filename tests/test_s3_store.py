"""S3MediaStore against a real S3-compatible HTTP server (moto's standalone server on 127.0.0.1)."""
import threading
import urllib.request

import pytest

from octavia_assets.resources.storage import S3MediaStore, UnsafeKeyError


def test_put_read_stat_delete_roundtrip(s3_store, tmp_path):
    info = s3_store.put_bytes(b"hello", "derived/v1/a/b.txt")
    assert info.size == 5 and s3_store.read_bytes("derived/v1/a/b.txt") == b"hello"
    assert s3_store.stat("derived/v1/a/b.txt") == info
    assert s3_store.exists("derived/v1/a/b.txt") and not s3_store.exists("derived/v1/a/c.txt")
    s3_store.put_json({"x": [1, "é"]}, "derived/v1/a/c.json")
    assert s3_store.read_json("derived/v1/a/c.json") == {"x": [1, "é"]}
    src = tmp_path / "clip.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    assert s3_store.put_file(src, "uploads/clip.bin").size == 2000
    with s3_store.open_local("uploads/clip.bin") as path:
        assert path.read_bytes() == src.read_bytes() and path.name == "clip.bin"
    assert not path.exists(), "the downloaded temp file outlives its with-block"
    s3_store.delete("derived/v1/a/b.txt")
    assert not s3_store.exists("derived/v1/a/b.txt")
    assert s3_store.uri("uploads/clip.bin") == f"s3://{s3_store.bucket}/uploads/clip.bin"


def test_missing_objects_and_unsafe_keys_fail_clearly(s3_store, tmp_path):
    with pytest.raises(FileNotFoundError, match="no object 'derived/none'"), s3_store.open_local("derived/none"):
        pass
    with pytest.raises(FileNotFoundError, match="no object"):
        s3_store.stat("derived/none")
    with pytest.raises(FileNotFoundError, match="no such file"):
        s3_store.put_file(tmp_path / "absent.mp4", "uploads/absent.mp4")
    with pytest.raises(UnsafeKeyError):
        s3_store.put_bytes(b"x", "../escape")


def test_list_objects_is_ordered_bounded_and_resumes_after_cursor(s3_store):
    for name in ["c.mp4", "a.mp4", "sub/b.mp4"]:
        s3_store.put_bytes(b"x", f"uploads/{name}")
    s3_store.put_bytes(b"x", "derived/other.wav")
    keys = [o.key for o in s3_store.list_objects("uploads/")]
    assert keys == ["uploads/a.mp4", "uploads/c.mp4", "uploads/sub/b.mp4"]
    assert [o.key for o in s3_store.list_objects("uploads/", limit=2)] == keys[:2]
    assert [o.key for o in s3_store.list_objects("uploads/", start_after="uploads/a.mp4")] == keys[1:]
    assert s3_store.list_objects("nothing/") == []


def test_listing_pages_past_the_server_page_size(s3_store):
    # More keys than one ListObjectsV2 page (1000) under the prefix: the store follows continuation tokens.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3_store.client.put_object(Bucket=s3_store.bucket, Key=f"uploads/{i:05d}.mp4",
                                                           Body=b"v"), range(1203)))
    found = s3_store.list_objects("uploads/", start_after="uploads/00100.mp4", limit=1100)
    assert [o.key for o in found] == [f"uploads/{i:05d}.mp4" for i in range(101, 1201)]


def test_key_prefix_keeps_store_keys_relative(s3_store):
    scoped = S3MediaStore(bucket=s3_store.bucket, endpoint_url=s3_store.endpoint_url, region_name="us-east-1",
                          prefix="tenant-a")
    scoped.put_bytes(b"x", "uploads/a.mp4")
    assert s3_store.exists("tenant-a/uploads/a.mp4") and not s3_store.exists("uploads/a.mp4")
    assert [o.key for o in scoped.list_objects("uploads/")] == ["uploads/a.mp4"]


def test_overwrite_changes_version_and_multipart_upload_is_whole(s3_store, tmp_path):
    store = S3MediaStore(bucket=s3_store.bucket, endpoint_url=s3_store.endpoint_url, region_name="us-east-1",
                         multipart_threshold_mb=5, multipart_chunk_mb=5)
    big = tmp_path / "big.bin"
    payload = bytes(range(256)) * (12 * 4096)  # 12 MiB: three parts of 5 MiB at most
    big.write_bytes(payload)
    first = store.put_bytes(b"old", "outputs/v/big.bin")
    # While the multipart upload runs, a reader sees the old object or the complete new one, never a part.
    seen, done = set(), threading.Event()

    def poll():
        while not done.is_set():
            seen.add(store.stat("outputs/v/big.bin").size)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        second = store.put_file(big, "outputs/v/big.bin")
    finally:
        done.set()
        reader.join()
    assert seen <= {3, len(payload)}
    assert second.size == len(payload) and second.version != first.version
    assert "-" in second.version, "expected a multipart ETag (md5-of-parts-N)"
    assert store.sha256("outputs/v/big.bin") == __import__("hashlib").sha256(payload).hexdigest()


def test_presigned_urls_download_and_upload_over_http(s3_store):
    s3_store.put_bytes(b"final video bytes", "outputs/v/v.dubbed.mp4")
    url = s3_store.download_url("outputs/v/v.dubbed.mp4")
    assert "X-Amz-Expires=86400" in url, "default expiry is 24 h"
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"final video bytes"
    assert "X-Amz-Expires=600" in s3_store.download_url("outputs/v/v.dubbed.mp4", expires_s=600)

    put = s3_store.upload_url("uploads/from-client.mp4", expires_s=3600)
    assert "X-Amz-Expires=3600" in put
    # (an explicit content type: urllib's default, form-encoded, makes moto's server parse the body as a form)
    req = urllib.request.Request(put, data=b"uploaded by a client", method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    assert s3_store.read_bytes("uploads/from-client.mp4") == b"uploaded by a client"


def test_local_store_urls(media_store):
    media_store.put_bytes(b"x", "outputs/v/a.mp4")
    assert media_store.download_url("outputs/v/a.mp4").startswith("file://")
    with pytest.raises(NotImplementedError, match="no upload URLs"):
        media_store.upload_url("uploads/a.mp4")


def test_put_json_if_absent_writes_once(s3_store):
    assert s3_store.put_json_if_absent({"n": 1}, "videos/v/upload.json") is True
    assert s3_store.put_json_if_absent({"n": 2}, "videos/v/upload.json") is False
    assert s3_store.read_json("videos/v/upload.json") == {"n": 1}
