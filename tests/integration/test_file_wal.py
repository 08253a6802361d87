"""The file WAL (`--wal file://DIR`): produce is acked once its batches are fdatasync'd to a
segment file, objects are uploaded behind it, and after kill -9 the segments are replayed.
"""
import os
import subprocess
import time
import uuid

from confluent_kafka import Producer

from conftest import TERN
from kafka_wire import Deliveries, assert_contiguous, consume_all, create_topic, produce_values

PUTS = 'tern_object_store_requests_total{type="PUT"}'


def segments(wal_dir, empty=True):
    """The segment files; with `empty` False only those with frames in them (a running broker
    creates its next segment ahead, empty)."""
    out = []
    for root, _, files in os.walk(wal_dir):
        out += [os.path.join(root, f) for f in files if f.endswith(".wal")]
    return sorted(p for p in out if empty or os.path.getsize(p) > 0)


def file_wal_broker(make_broker, hold_uploads, data_dir=None):
    """A broker on the file WAL in `<data dir>/wal`."""
    settings = {}
    if hold_uploads:  # nothing is uploaded unless the broker shuts down
        settings = {"wal.upload.interval.ms": "60000", "wal.upload.bytes": str(1 << 30)}
    b = make_broker(settings=settings, data_dir=data_dir, start=False)
    b.wal_dir = os.path.join(b.data_dir, "wal")
    b.extra_args += ["--wal", f"file://{b.wal_dir}"]
    return b.start()


def produced(broker, prefix, n):
    """A new topic holding n acked records: (topic, values)."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)
    values = [f"{prefix}-{i}".encode() for i in range(n)]
    assert produce_values(broker, topic, values) == list(enumerate(values))
    return topic, values


def test_produce_is_acked_from_the_file_before_any_upload_and_survives_kill_9(make_broker):
    broker = file_wal_broker(make_broker, hold_uploads=True)
    topic = f"fwal-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic, partitions=3)
    puts_before = broker.metric(PUTS)  # the startup checks' own writes

    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2, "enable.idempotence": True})
    d = Deliveries()
    sent = {q: [] for q in range(3)}
    for i in range(3000):
        v = f"r-{i}".encode()
        sent[i % 3].append(v)
        p.produce(topic, v, partition=i % 3, on_delivery=d)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    assert not d.failed(), d.failed()[:3]
    assert len(d.acked()) == 3000
    assert broker.metric(PUTS) == puts_before, "records were acked through an object PUT, not the file WAL"
    # Each group commit's write + fdatasync is timed on /metrics.
    syncs = broker.metric("tern_wal_sync_duration_seconds_count")
    assert 1 <= syncs <= 3000, syncs
    assert broker.metric('tern_wal_sync_duration_seconds_bucket{le="+Inf"}') == syncs
    assert segments(broker.wal_dir), "no WAL segment holds the acked records"
    for q in range(3):  # served from memory before any upload
        assert [v for _, v in consume_all(broker, topic, partition=q)] == sent[q]

    broker.kill()  # nothing was uploaded: every acked record is only in the segment files
    restarted = file_wal_broker(make_broker, hold_uploads=False, data_dir=broker.data_dir)
    assert "1 WAL objects recovered" in restarted.log(), restarted.log()[-2000:]
    assert segments(broker.wal_dir) == [], "a replayed segment was kept"
    for q in range(3):
        got = consume_all(restarted, topic, partition=q)
        assert_contiguous(got)
        assert [v for _, v in got] == sent[q], f"partition {q} lost or reordered acked records"
    more = [f"after-{i}".encode() for i in range(10)]
    assert produce_values(restarted, topic, more) == list(enumerate(more, start=len(sent[0])))


def test_sigterm_uploads_everything_and_leaves_no_segment(make_broker):
    broker = file_wal_broker(make_broker, hold_uploads=True)
    topic, values = produced(broker, "fwal-term", 100)
    assert broker.stop() == 0
    assert segments(broker.wal_dir) == []
    objects = [f for _, _, fs in os.walk(os.path.join(broker.data_dir, "objects")) for f in fs]
    assert objects, "the shutdown did not upload the WAL"
    again = make_broker(data_dir=broker.data_dir)  # the S3 WAL now: the data is in objects
    assert [v for _, v in consume_all(again, topic)] == values


def test_uploads_run_behind_and_segments_go_once_committed(make_broker):
    broker = file_wal_broker(make_broker, hold_uploads=False)
    topic, values = produced(broker, "fwal-up", 200)
    deadline = time.time() + 10
    while segments(broker.wal_dir, empty=False) and time.time() < deadline:
        time.sleep(0.1)
    assert segments(broker.wal_dir, empty=False) == [], "segments stay after their objects were committed"
    assert len(segments(broker.wal_dir)) <= 1, "more than the one segment created ahead"
    assert broker.metric(PUTS) > 0
    assert [v for _, v in consume_all(broker, topic)] == values


def test_a_bad_wal_setting_is_refused_at_startup(tmp_path):
    for wal, expected in [("disk", "wal: expected 'object'"), ("file://", "wal: expected 'object'"),
                          ("file:///proc/tern-wal", "wal file:///proc/tern-wal")]:
        r = subprocess.run([TERN, "serve", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0",
                            "--metrics-listen", "127.0.0.1:0", "--wal", wal],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert expected in r.stderr, r.stderr


def test_throughput_classes_count_each_class_on_metrics(make_broker):
    """With a limit set, the limiter sits in front of the object store: WAL uploads count as
    produce, fetches that miss the log cache as catch-up reads."""
    broker = make_broker(settings={"object.store.max.bytes.per.sec": str(1 << 30),
                                   "catchup.read.max.bytes.per.sec": str(1 << 30), "log.cache.bytes": "0"})
    topic, values = produced(broker, "classes", 300)
    assert broker.metric('tern_object_store_class_bytes_total{class="produce"}') > 0
    assert broker.metric('tern_object_store_class_bytes_total{class="catchup_read"}') == 0
    assert [v for _, v in consume_all(broker, topic)] == values  # nothing cached: read from objects
    assert broker.metric('tern_object_store_class_bytes_total{class="catchup_read"}') > 0
    assert broker.metric("tern_wal_unflushed_bytes") == 0
    assert broker.metric("tern_produce_waiting_appends") == 0
