"""The upload sensor on an S3 bucket served by a real S3-compatible HTTP server on 127.0.0.1."""
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

import sensors.uploads as uploads_mod
from sensors.uploads import upload_sensor


def tick(instance, store, cursor=None):
    return upload_sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"media_store": store}))


def test_ten_thousand_uploads_each_run_once(s3_store):
    n = 10_000
    keys = [f"uploads/20261122T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}Z-free-{i:06x}/clip{i}.mp4"
            for i in range(n)]
    client, bucket = s3_store.client, s3_store.bucket
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))
    with dg.instance_for_test() as instance:
        run_keys, partitions, tick_s, cursor = [], [], [], None
        while True:
            started = time.perf_counter()
            result = tick(instance, s3_store, cursor)
            tick_s.append(time.perf_counter() - started)
            if not result.run_requests:
                assert result.skip_reason.skip_message == "no new uploads"
                break
            assert len(result.run_requests) <= uploads_mod.MAX_UPLOADS_PER_TICK
            run_keys += [r.run_key for r in result.run_requests]
            partitions += [r.partition_key for r in result.run_requests]
            cursor = result.cursor
        # Every object exactly once, in key order; one partition each.
        assert [k.split("@")[0] for k in run_keys] == sorted(keys)
        assert len(set(run_keys)) == n and len(set(partitions)) == n
        assert sorted(instance.get_dynamic_partitions("videos")) == sorted(partitions)
        # Once caught up, a tick lists nothing old and requests nothing.
        assert tick(instance, s3_store, cursor).run_requests == []
        # A new upload after 10 000 is the only thing the next tick sees.
        s3_store.put_bytes(b"new", "uploads/20261123T000000Z-pro-ffffff/late.mp4")
        late = tick(instance, s3_store, cursor)
        assert [r.run_key.split("@")[0] for r in late.run_requests] == ["uploads/20261123T000000Z-pro-ffffff/late.mp4"]
        assert late.run_requests[0].tags["dagster/priority"] == "20"
    full = [t for t in tick_s[:-1]]
    print(f"\n10 000 S3 uploads: {len(full)} ticks of {uploads_mod.MAX_UPLOADS_PER_TICK}; tick time "
          f"median {sorted(full)[len(full) // 2]:.2f} s, max {max(full):.2f} s; "
          f"caught-up tick {tick_s[-1] * 1000:.0f} ms; total {sum(tick_s):.1f} s")


def test_same_key_new_content_is_a_new_video_and_unsafe_keys_are_logged(s3_store, capfd):
    s3_store.put_bytes(b"v1", "uploads/a.mp4")
    s3_store.client.put_object(Bucket=s3_store.bucket, Key="uploads/b/../../secret.mp4", Body=b"x")
    s3_store.client.put_object(Bucket=s3_store.bucket, Key="uploads/c\x01.mp4", Body=b"x")
    with dg.instance_for_test() as instance:
        first = tick(instance, s3_store)
        assert [r.run_key.split("@")[0] for r in first.run_requests] == ["uploads/a.mp4"]
        logged = capfd.readouterr().err
        assert "rejected upload 'uploads/b/../../secret.mp4'" in logged and "unsafe object key" in logged
        assert "control characters" in logged
        # Replayed from scratch (cursor lost): same run key, so Dagster launches no second run.
        assert tick(instance, s3_store).run_requests[0].run_key == first.run_requests[0].run_key
        s3_store.put_bytes(b"v2", "uploads/a.mp4")
        again = tick(instance, s3_store)
        assert again.run_requests[0].run_key != first.run_requests[0].run_key
        assert again.run_requests[0].partition_key != first.run_requests[0].partition_key
