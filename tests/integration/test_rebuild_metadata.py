"""Metadata snapshots in the bucket and `tern admin rebuild-metadata`: a broker whose metadata
store is lost is brought back from the bucket alone, every acked record with it."""
import glob
import os
import subprocess

from confluent_kafka import Consumer, TopicPartition

from conftest import TERN
from kafka_wire import assert_contiguous, consume_all, create_topic, produce_values, wait_for


def snapshots(broker):
    return sorted(glob.glob(os.path.join(broker.data_dir, "objects", "*", "meta", "snapshots", "*.json")))


def wal_objects(broker):
    return [f for f in glob.glob(os.path.join(broker.data_dir, "objects", "*", "wal", "*", "*", "*"))]


def rebuild(data_dir):
    return subprocess.run([TERN, "admin", "rebuild-metadata", "--data-dir", data_dir],
                          capture_output=True, text=True, timeout=60)


def commit_offset(broker, group, topic, partition, offset):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        c.close()


def committed(broker, group, topic, partition):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, partition)], timeout=15)[0].offset
    finally:
        c.close()


def test_a_lost_metadata_store_is_rebuilt_from_the_bucket(make_broker):
    # Periodic snapshots are rare here: the ones that count are written at topic creation.
    # Compaction and collection run often, so objects the snapshot names are superseded
    # and deleted before the rebuild reads the bucket.
    broker = make_broker(settings={"metadata.snapshot.interval.ms": "600000", "compaction.interval.ms": "300",
                                   "object.gc.grace.ms": "0", "object.gc.interval.ms": "300",
                                   "wal.upload.interval.ms": "20"})
    create_topic(broker, "a", partitions=2)
    first = [f"a0-{i}".encode() for i in range(100)]
    for i in range(0, 100, 10):  # ten produce calls: ten WAL objects to compact
        produce_values(broker, "a", first[i:i + 10], partition=0)
    produce_values(broker, "a", [f"a1-{i}".encode() for i in range(50)], partition=1)
    commit_offset(broker, "g", "a", 0, 40)
    assert wait_for(lambda: snapshots(broker), timeout=10), "a snapshot at topic creation"
    create_topic(broker, "marker")  # a snapshot now: it holds topic a, its offsets and group g
    assert wait_for(lambda: len(snapshots(broker)) >= 2, timeout=10)
    kept = snapshots(broker)[-1]

    later = [f"a0-{i}".encode() for i in range(100, 200)]
    for i in range(0, 100, 20):
        produce_values(broker, "a", later[i:i + 20], partition=0)
    commit_offset(broker, "g", "a", 0, 150)  # after the kept snapshot: not kept
    create_topic(broker, "b")  # its snapshot is lost below: b is unknown to the rebuild
    produce_values(broker, "b", [b"b-0"])
    # Compaction merges the WAL objects (the kept snapshot's among them) and collection
    # deletes them: the rebuild must place their records from the compacted objects.
    assert wait_for(lambda: len(wal_objects(broker)) <= 2, timeout=20), wal_objects(broker)
    broker.kill()

    # The store is lost, and with it every snapshot newer than `kept`.
    for s in snapshots(broker):
        if s > kept:
            os.remove(s)
    for f in glob.glob(os.path.join(broker.data_dir, "metadata.sqlite*")):
        os.remove(f)
    r = rebuild(broker.data_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.basename(kept) in r.stdout, r.stdout
    assert "1 streams in the bucket are not in the snapshot" in r.stdout, r.stdout
    assert "no object holds" not in r.stdout, r.stdout
    gone = int(next(l for l in r.stdout.splitlines() if l.startswith("objects gone")).split()[-1])
    assert gone >= 8, r.stdout

    broker.start()
    p0 = consume_all(broker, "a", 0)
    assert_contiguous(p0)
    assert [v for _, v in p0] == first + later
    assert [v for _, v in consume_all(broker, "a", 1)] == [f"a1-{i}".encode() for i in range(50)]
    assert committed(broker, "g", "a", 0) == 40, "group offsets are as of the snapshot"
    # Writable at the right offset.
    assert produce_values(broker, "a", [b"after"], partition=0) == [(200, b"after")]

    # A store in use is never overwritten.
    broker.stop()
    r = rebuild(broker.data_dir)
    assert r.returncode != 0
    assert "not empty" in r.stderr, r.stderr


def test_rebuild_without_a_snapshot_says_so(tmp_path):
    r = rebuild(str(tmp_path))
    assert r.returncode != 0
    assert "no metadata snapshot" in r.stderr, r.stderr
