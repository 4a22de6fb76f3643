import dagster as dg

from octavia_assets.registry import register_upload
from octavia_assets.resources.storage import ObjectInfo
from sensors.uploads import upload_sensor


def tick(instance, store, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"media_store": store})
    return upload_sensor(ctx)


def test_new_upload_becomes_partition_and_run(media_store):
    media_store.put_bytes(b"not really a video", "uploads/My Talk.mp4")
    with dg.instance_for_test() as instance:
        result = tick(instance, media_store)
        (video,) = instance.get_dynamic_partitions("videos")
        assert video.startswith("my-talk-")
        (run,) = result.run_requests
        assert run.partition_key == video and run.run_key.startswith("uploads/My Talk.mp4@")
        assert result.cursor == "uploads/My Talk.mp4"
        assert media_store.read_json(f"videos/{video}/upload.json")["object_key"] == "uploads/My Talk.mp4"


def test_same_upload_twice_runs_once(media_store):
    media_store.put_bytes(b"x" * 10, "uploads/a.mp4")
    with dg.instance_for_test() as instance:
        first = tick(instance, media_store)
        second = tick(instance, media_store, cursor=first.cursor)
        assert len(first.run_requests) == 1
        assert second.run_requests == [] and second.skip_reason
        # Even with the cursor lost, the run key (object key + content identity) is the same,
        # so Dagster launches no second run for it.
        replay = tick(instance, media_store, cursor=None)
        assert replay.run_requests[0].run_key == first.run_requests[0].run_key
        assert replay.run_requests[0].partition_key == first.run_requests[0].partition_key
        assert instance.get_dynamic_partitions("videos") == [first.run_requests[0].partition_key]


def test_work_per_tick_is_bounded_and_resumes(media_store, monkeypatch):
    import sensors.uploads as mod
    monkeypatch.setattr(mod, "MAX_UPLOADS_PER_TICK", 3)
    for i in range(7):
        media_store.put_bytes(b"v", f"uploads/clip{i:02d}.mp4")
    with dg.instance_for_test() as instance:
        seen, cursor, ticks = [], None, 0
        while True:
            result = tick(instance, media_store, cursor)
            ticks += 1
            if not result.run_requests:
                break
            assert len(result.run_requests) <= 3
            seen += [r.run_key.split("@")[0] for r in result.run_requests]
            cursor = result.cursor
        assert seen == [f"uploads/clip{i:02d}.mp4" for i in range(7)] and ticks == 4


def test_bad_key_is_rejected_with_a_reason(media_store, capfd):
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"media_store": media_store})
        # A key outside uploads/ (as a broken listing or a crafted name would give) is refused.
        try:
            register_upload(media_store, ObjectInfo(key="uploads/../secrets.mp4", size=1, version="1"))
            raise AssertionError("unsafe key accepted")
        except ValueError as e:
            assert "unsafe object key" in str(e)
        media_store.put_bytes(b"ok", "uploads/good.mp4")
        bad = str(media_store.base / "uploads" / "bad\x01name.mp4")
        open(bad, "wb").write(b"x")
        result = upload_sensor(ctx)
        assert [r.run_key.split("@")[0] for r in result.run_requests] == ["uploads/good.mp4"]
        logged = capfd.readouterr().err
        assert "rejected upload 'uploads/bad\\x01name.mp4'" in logged and "control characters" in logged
