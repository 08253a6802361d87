"""Garbage collection and SSO compaction against the real broker: objects nothing references
any more (trimmed by retention or DeleteRecords, of deleted topics, superseded by compaction)
leave the bucket after object.gc.grace.ms, and compaction bounds the object count while every
record stays readable exactly once."""
import os
import struct
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from kafka_wire import assert_contiguous, consume_all, produce_values, wait_for

NEVER = str(2**31 - 1)
FAST_GC = {
    "object.gc.interval.ms": "100",
    "object.gc.grace.ms": "500",
    "log.retention.check.interval.ms": "100",
    "wal.upload.interval.ms": "20",
    # Reads must come from the objects, not from the LogCache.
    "log.cache.bytes": "0",
}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def bucket_objects(broker):
    """Keys of every data object in the broker's local bucket (temp files of puts in flight
    aside). `<cluster>/meta/` is left out: it holds the fence keys each restart writes for the
    broker's earlier epochs (ARCHITECTURE.md "Fencing before ack"), not records."""
    root = os.path.join(broker.data_dir, "objects")
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files if not f.startswith(".tmp-")]
    return sorted(k for k in out if "/meta/" not in k)


def object_index(broker, key):
    """(stream ids in the object, keys it supersedes), parsed from its footer and index."""
    with open(os.path.join(broker.data_dir, "objects", key), "rb") as f:
        data = f.read()
    index_pos, count, superseded_size, _version, magic = struct.unpack(">qiihI", data[-22:])
    assert magic == 0x5445524E, key
    streams = {struct.unpack(">q", data[index_pos + i * 64:index_pos + i * 64 + 8])[0] for i in range(count)}
    sup, pos, end = [], index_pos + count * 64, index_pos + count * 64 + superseded_size
    while pos < end:
        (n,) = struct.unpack(">H", data[pos:pos + 2])
        sup.append(data[pos + 2:pos + 2 + n].decode())
        pos += 2 + n
    return streams, sup


def streams_in_bucket(broker):
    out = set()
    for k in bucket_objects(broker):
        try:
            out |= object_index(broker, k)[0]
        except FileNotFoundError:  # deleted while we listed
            pass
    return out


def create(broker, name, partitions=1, configs=None):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=configs or {})]).values():
        f.result(30)


def produce_each(broker, topic, values, partition=0):
    """One acked produce per value: each lands in its own WAL object."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for v in values:
        p.produce(topic, v, partition=partition)
        assert p.flush(30) == 0


def consume_partitions(broker, topic, partitions, timeout=60):
    """{partition: [(offset, value)]} from the start to the end of every partition, with one consumer."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out = {p: [] for p in range(partitions)}
        done = set()
        deadline = time.time() + timeout
        while len(done) < partitions and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                done.add(m.partition())
                continue
            out[m.partition()].append((m.offset(), m.value()))
        assert len(done) == partitions, f"{partitions - len(done)} partitions did not reach their end"
        return out
    finally:
        c.close()


def test_a_deleted_topic_leaves_nothing_in_the_bucket(make_broker):
    broker = make_broker(settings=dict(FAST_GC, **{"compaction.interval.ms": "200"}))
    keep, gone = unique("keep"), unique("gone")
    create(broker, keep)          # a fresh cluster: stream 1
    create(broker, gone, 3)       # streams 2, 3, 4
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 2})
    for i in range(200):
        # Interleaved, so the WAL objects hold both topics' batches.
        p.produce(keep, b"k%d" % i, partition=0)
        p.produce(gone, b"g%d" % i, partition=i % 3)
        if i % 20 == 0:
            assert p.flush(30) == 0
    assert p.flush(30) == 0
    assert {2, 3, 4} <= streams_in_bucket(broker), "the deleted topic's data was in the bucket"

    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in a.delete_topics([gone]).values():
        f.result(30)
    # Objects holding only `gone` go after the grace period; shared ones are rewritten by
    # compaction without its ranges, and the old ones then go too.
    assert wait_for(lambda: not ({2, 3, 4} & streams_in_bucket(broker)), timeout=30), bucket_objects(broker)
    assert 1 in streams_in_bucket(broker)
    records = consume_all(broker, keep)
    assert [v for _, v in records] == [b"k%d" % i for i in range(200)]
    assert_contiguous(records)

    # With the last topic deleted, the bucket empties entirely.
    for f in a.delete_topics([keep]).values():
        f.result(30)
    assert wait_for(lambda: bucket_objects(broker) == [], timeout=30), bucket_objects(broker)
    broker.restart()
    assert bucket_objects(broker) == []


def test_retention_deletes_old_objects_and_the_rest_still_reads(make_broker):
    # No compaction here: every object gone is retention's doing.
    broker = make_broker(settings=dict(FAST_GC, **{"compaction.interval.ms": NEVER}))
    topic = unique("ret")
    value = b"x" * 2000
    create(broker, topic, configs={"retention.bytes": "5000"})
    produce_each(broker, topic, [value + b"%d" % i for i in range(8)])
    # Whole ranges go while at least 5000 bytes stay: three objects stay, five are deleted.
    assert wait_for(lambda: len(bucket_objects(broker)) == 3, timeout=20), bucket_objects(broker)
    records = consume_all(broker, topic, start=5)
    assert records == [(o, value + b"%d" % o) for o in range(5, 8)]
    broker.restart()
    assert consume_all(broker, topic, start=5) == records
    assert len(bucket_objects(broker)) == 3


def test_log_retention_bytes_is_the_default_of_topics_that_set_none(make_broker):
    broker = make_broker(settings=dict(FAST_GC, **{"compaction.interval.ms": NEVER, "log.retention.bytes": "5000"}))
    topic = unique("ret")
    create(broker, topic)
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(ResourceType.TOPIC, topic)
    assert a.describe_configs([res])[res].result(20)["retention.bytes"].value == "5000"
    produce_each(broker, topic, [b"y" * 2000 for _ in range(6)])
    assert wait_for(lambda: len(bucket_objects(broker)) == 3, timeout=20), bucket_objects(broker)
    assert [o for o, _ in consume_all(broker, topic, start=3)] == [3, 4, 5]


def test_delete_records_then_gc_keeps_what_is_above_the_start(make_broker):
    broker = make_broker(settings=dict(FAST_GC, **{"compaction.interval.ms": NEVER}))
    topic = unique("dr")
    create(broker, topic)
    produce_each(broker, topic, [b"v%d" % i for i in range(6)])
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in a.delete_records([TopicPartition(topic, 0, 4)], request_timeout=10).values():
        f.result(20)
    assert wait_for(lambda: len(bucket_objects(broker)) == 2, timeout=20), bucket_objects(broker)
    broker.kill()  # kill -9 after collection: nothing still referenced may be gone
    broker.start()
    assert consume_all(broker, topic, start=4) == [(4, b"v4"), (5, b"v5")]


def test_compaction_bounds_objects_across_100_partitions(make_broker):
    partitions = 100
    settings = dict(FAST_GC, **{"compaction.interval.ms": NEVER})
    broker = make_broker(settings=settings)
    topic = unique("many")
    create(broker, topic, partitions)

    def produce_rounds(rounds, tag):
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1})
        for r in range(rounds):
            for part in range(partitions):
                p.produce(topic, b"%s-%d-%d" % (tag, part, r), partition=part)
                if part % 25 == 24:
                    assert p.flush(30) == 0  # several small WAL objects per round
            assert p.flush(30) == 0

    produce_rounds(40, b"a")
    before = len(bucket_objects(broker))
    assert before > partitions + 20, f"the test needs many small objects to start with, got {before}"

    # Compaction on: the small SSOs merge, the superseded ones leave after the grace period.
    broker.stop()
    broker.settings["compaction.interval.ms"] = "200"
    broker.start()
    assert wait_for(lambda: len(bucket_objects(broker)) <= partitions + 20, timeout=60), len(bucket_objects(broker))
    assert "compacted objects" in broker.log()
    merged = [k for k in bucket_objects(broker) if "/data/" in k]
    assert merged, bucket_objects(broker)
    assert object_index(broker, merged[0])[1], "a compacted object's footer names what it supersedes"

    def check(rounds):
        got = consume_partitions(broker, topic, partitions)
        for part in range(partitions):
            assert_contiguous(got[part])
            want = [b"a-%d-%d" % (part, r) for r in range(40)] + [b"b-%d-%d" % (part, r) for r in range(rounds)]
            assert [v for _, v in got[part]] == want, part

    check(0)

    # More traffic while compaction runs, then kill -9 mid-way: nothing acked is lost and
    # compaction settles again after the restart.
    produce_rounds(6, b"b")
    time.sleep(0.3)
    broker.kill()
    broker.start()
    assert wait_for(lambda: len(bucket_objects(broker)) <= partitions + 20, timeout=60), len(bucket_objects(broker))
    check(6)


def test_big_partitions_get_stream_objects_that_merge(make_broker):
    broker = make_broker(settings=dict(FAST_GC, **{"compaction.interval.ms": "200", "stream.object.split.bytes": "4096"}))
    topic = unique("so")
    create(broker, topic, 2)  # a fresh cluster: streams 1 and 2
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 1})

    def stream_objects():
        per_stream = {}
        for k in bucket_objects(broker):
            if "/data/" in k and "/data/sso/" not in k:
                per_stream.setdefault(k.split("/")[-2], []).append(k.split("/")[-1])
        return per_stream

    saw = set()  # distinct SO key ranges seen for stream 1
    for r in range(6):
        for i in range(30):
            for part in range(2):
                p.produce(topic, b"%d-%d-%d-" % (part, r, i) + b"z" * 200, partition=part)
        assert p.flush(30) == 0
        time.sleep(0.5)  # let compaction split this round out
        saw |= {k.rsplit("-", 1)[0] for k in stream_objects().get("1", [])}

    def settled():
        per_stream = stream_objects()
        return len(bucket_objects(broker)) == 2 and sorted(per_stream) == ["1", "2"] and all(len(v) == 1 for v in per_stream.values())

    assert wait_for(settled, timeout=30), bucket_objects(broker)
    # Rounds were split out one by one and then merged: the last one covers them all.
    assert len(saw) >= 3, saw
    assert stream_objects()["1"][0].startswith("0-180-"), stream_objects()
    assert "streamObjects" in broker.log()
    for part in range(2):
        records = consume_all(broker, topic, partition=part)
        assert_contiguous(records)
        assert [v[:v.rindex(b"-") + 1] for _, v in records] == [b"%d-%d-%d-" % (part, r, i) for r in range(6) for i in range(30)]
