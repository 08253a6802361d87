"""Integration tests that drive the real `tern` binary with real Kafka clients.

Clients: kcat, confluent-kafka (librdkafka), kafka-python and aiokafka. Every test uses its
own topic name; the `broker` fixture (conftest.py) gives each test its own broker anyway.
"""
import asyncio
import shutil
import subprocess
import time
import uuid

import pytest
from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition, OFFSET_BEGINNING)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

# Short client timeouts: a broken broker should fail a test quickly, not hang it.
COMMON = {"socket.timeout.ms": 10000, "socket.connection.setup.timeout.ms": 10000}
PRODUCER = dict(COMMON, **{"message.timeout.ms": 30000, "linger.ms": 5, "compression.type": "none"})


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- helpers

def admin(bootstrap):
    return AdminClient(dict(COMMON, **{"bootstrap.servers": bootstrap}))


def create_topic(bootstrap, topic, partitions=1):
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                         operation_timeout=10, request_timeout=15)
    fs[topic].result(timeout=20)


def produce_all(producer, topic, records, timeout=40):
    """records: iterable of dicts of Producer.produce kwargs (without topic).
    Returns delivery reports [(err, partition, offset, key, value)] in callback order."""
    reports = []

    def on_delivery(err, msg):
        reports.append((err, msg.partition(), msg.offset(), msg.key(), msg.value()))

    records = list(records)
    for r in records:
        while True:
            try:
                producer.produce(topic, on_delivery=on_delivery, **r)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} messages not delivered within {timeout}s"
    assert len(reports) == len(records)
    return reports


def read_until_eof(c, partitions, expected=None, timeout=30):
    """Poll an assigned consumer until every partition reported EOF (and, when `expected` is
    given, at least that many messages arrived). Returns the messages."""
    msgs, eof = [], set()
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                if len(eof) == partitions and (expected is None or len(msgs) >= expected):
                    return msgs
                continue
            raise KafkaException(m.error())
        eof.discard(m.partition())
        msgs.append(m)
    pytest.fail(f"consumed {len(msgs)} (expected {expected}), EOF on {sorted(eof)} "
                f"of {partitions} partitions within {timeout}s")


def assigned_consumer(bootstrap, topic, partitions, group=None, extra=None):
    """A consumer with every partition assigned at OFFSET_BEGINNING (no group membership)."""
    conf = dict(COMMON, **{"bootstrap.servers": bootstrap, "group.id": group or unique("g"),
                           "enable.auto.commit": False, "enable.partition.eof": True,
                           "fetch.wait.max.ms": 100})
    conf.update(extra or {})
    c = Consumer(conf)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    return c


def consume_all(bootstrap, topic, partitions, expected=None, timeout=30, extra=None):
    """Every message of the topic from the beginning, read with assign()."""
    c = assigned_consumer(bootstrap, topic, partitions, extra=extra)
    try:
        return read_until_eof(c, partitions, expected, timeout)
    finally:
        c.close()


def assert_contiguous(reports):
    """Offsets per partition from delivery reports are exactly 0..n-1."""
    by_part = {}
    for err, p, off, _k, _v in reports:
        assert err is None, f"delivery failed: {err}"
        by_part.setdefault(p, []).append(off)
    for p, offs in by_part.items():
        assert sorted(offs) == list(range(len(offs))), f"partition {p}: offsets {sorted(offs)[:20]}..."
    return {p: len(offs) for p, offs in by_part.items()}


# ---------------------------------------------------------------- 1. kcat

@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
def test_kcat_autocreate_produce_consume_with_keys_and_headers(broker):
    topic = unique("kcat")
    n = 5
    # Listing all topics never auto-creates; the topic does not exist yet.
    assert topic not in admin(broker.bootstrap).list_topics(timeout=10).topics
    lines = "".join(f"k{i}:value-{i}\n" for i in range(n))
    p = subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", topic, "-K:",
                        "-H", "hk=hv", "-H", "trace=abc",
                        "-X", "message.timeout.ms=20000", "-X", "socket.timeout.ms=10000"],
                       input=lines.encode(), capture_output=True, timeout=40)
    assert p.returncode == 0, p.stderr.decode()

    # The producer's metadata request auto-created the topic (1 partition by default).
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert topic in md.topics and md.topics[topic].error is None
    assert len(md.topics[topic].partitions) == 1

    c = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-o", "beginning",
                        "-f", "key=%k value=%s headers=%h offset=%o partition=%p\n",
                        "-X", "socket.timeout.ms=10000"],
                       capture_output=True, timeout=40)
    assert c.returncode == 0, c.stderr.decode()
    out = c.stdout.decode().splitlines()
    assert out == [f"key=k{i} value=value-{i} headers=hk=hv,trace=abc offset={i} partition=0"
                   for i in range(n)], c.stdout.decode() + c.stderr.decode()


# ---------------------------------------------------------------- 2. AdminClient

def test_admin_create_describe_delete(broker):
    a = admin(broker.bootstrap)
    topic = unique("admin")

    fs = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], operation_timeout=10)
    assert fs[topic].result(timeout=20) is None

    md = a.list_topics(timeout=10)
    assert topic in md.topics
    assert md.topics[topic].error is None
    assert sorted(md.topics[topic].partitions) == [0, 1, 2]
    for pm in md.topics[topic].partitions.values():
        assert pm.leader >= 0 and pm.error is None

    # Creating it again fails with TOPIC_ALREADY_EXISTS.
    fs = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], operation_timeout=10)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    # describe_configs returns the topic's configuration, max.message.bytes among it.
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    assert "max.message.bytes" in configs
    assert int(configs["max.message.bytes"].value) > 0

    # delete_topics removes it.
    fs = a.delete_topics([topic], operation_timeout=10)
    assert fs[topic].result(timeout=20) is None
    deadline = time.time() + 10
    while time.time() < deadline:
        if topic not in admin(broker.bootstrap).list_topics(timeout=10).topics:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"{topic} still listed after delete_topics")

    # Deleting it again: UNKNOWN_TOPIC_OR_PART.
    fs = a.delete_topics([topic], operation_timeout=10)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


# ---------------------------------------------------------------- 3. idempotent producer + assign consumer + commit

def test_confluent_idempotent_produce_consume_commit(broker):
    topic = unique("ck")
    parts = 4
    n = 1000
    create_topic(broker.bootstrap, topic, parts)

    prod = Producer(dict(PRODUCER, **{"bootstrap.servers": broker.bootstrap, "acks": "all",
                                      "enable.idempotence": True}))
    records = [dict(key=f"key-{i}".encode(), value=f"value-{i}".encode(),
                    headers=[("idx", str(i).encode()), ("src", b"test3")]) for i in range(n)]
    reports = produce_all(prod, topic, records)
    counts = assert_contiguous(reports)
    assert sum(counts.values()) == n
    assert len(counts) == parts, f"keys should spread over all {parts} partitions: {counts}"

    # The key decides the partition; every record keeps its key.
    sent_partition = {k: p for _e, p, _o, k, _v in reports}

    group = unique("grp")
    c = assigned_consumer(broker.bootstrap, topic, parts, group=group)
    try:
        got = [(m.partition(), m.offset(), m.key(), m.value(), m.headers())
               for m in read_until_eof(c, parts, expected=n)]
        assert len(got) == n, f"consumed {len(got)} of {n}"
        assert len({(p, o) for p, o, *_ in got}) == n, "duplicate (partition, offset)"
        by_key = {k: (p, v, h) for p, _o, k, v, h in got}
        assert len(by_key) == n, "duplicate keys consumed"
        for i in range(n):
            k = f"key-{i}".encode()
            p, v, h = by_key[k]
            assert v == f"value-{i}".encode()
            assert h == [("idx", str(i).encode()), ("src", b"test3")]
            assert p == sent_partition[k]
        # Offsets consumed per partition are 0..count-1, matching the delivery reports.
        for p in range(parts):
            assert sorted(o for pp, o, *_ in got if pp == p) == list(range(counts[p]))

        committed = c.commit(asynchronous=False)
        assert committed is not None
        for tp in committed:
            assert tp.error is None, tp.error
            assert tp.offset == counts[tp.partition]
    finally:
        c.close()

    c2 = Consumer(dict(COMMON, **{"bootstrap.servers": broker.bootstrap, "group.id": group,
                                  "enable.auto.commit": False}))
    try:
        res = c2.committed([TopicPartition(topic, p) for p in range(parts)], timeout=15)
        assert {tp.partition: tp.offset for tp in res} == counts
        assert all(tp.error is None for tp in res)
    finally:
        c2.close()

    # Another group has nothing committed.
    c3 = Consumer(dict(COMMON, **{"bootstrap.servers": broker.bootstrap, "group.id": unique("other"),
                                  "enable.auto.commit": False}))
    try:
        res = c3.committed([TopicPartition(topic, p) for p in range(parts)], timeout=15)
        assert all(tp.offset < 0 for tp in res), [(tp.partition, tp.offset) for tp in res]
    finally:
        c3.close()


# ---------------------------------------------------------------- 4. kafka-python

def test_kafka_python_produce_consume_offsets_for_times(broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    topic = unique("kp")
    create_topic(broker.bootstrap, topic, 1)
    tp = KTP(topic, 0)

    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=30000,
                         max_block_ms=30000)
    try:
        n = 5
        metas = []
        for i in range(n):
            fut = prod.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                            headers=[("h", str(i).encode())], partition=0,
                            timestamp_ms=(i + 1) * 1000)
            metas.append(fut)
        prod.flush(timeout=30)
        metas = [f.get(timeout=30) for f in metas]
    finally:
        prod.close(timeout=10)
    assert [m.offset for m in metas] == list(range(n))
    assert all(m.partition == 0 for m in metas)

    cons = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None,
                         consumer_timeout_ms=5000, request_timeout_ms=30000)
    try:
        cons.assign([tp])
        cons.seek_to_beginning(tp)
        got = []
        deadline = time.time() + 30
        while len(got) < n and time.time() < deadline:
            for recs in cons.poll(timeout_ms=500).values():
                got.extend(recs)
        assert [(r.offset, r.key, r.value, r.timestamp) for r in got] == \
            [(i, f"k{i}".encode(), f"v{i}".encode(), (i + 1) * 1000) for i in range(n)]
        assert [list(r.headers) for r in got] == [[("h", str(i).encode())] for i in range(n)]

        # 2500 falls between the 2000 (offset 1) and 3000 (offset 2) messages.
        r = cons.offsets_for_times({tp: 2500})[tp]
        assert r is not None and r.offset == 2 and r.timestamp == 3000
        r = cons.offsets_for_times({tp: 3000})[tp]
        assert r is not None and r.offset == 2 and r.timestamp == 3000
        r = cons.offsets_for_times({tp: 0})[tp]
        assert r is not None and r.offset == 0 and r.timestamp == 1000
        assert cons.offsets_for_times({tp: 10_000})[tp] is None  # later than every record

        assert cons.beginning_offsets([tp]) == {tp: 0}
        assert cons.end_offsets([tp]) == {tp: n}
    finally:
        cons.close()


# ---------------------------------------------------------------- 5. aiokafka

def test_aiokafka_send_and_consume(broker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATP

    topic = unique("aio")
    create_topic(broker.bootstrap, topic, 1)
    n = 20

    async def run():
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=30000)
        await prod.start()
        try:
            offsets = []
            for i in range(n):
                md = await asyncio.wait_for(
                    prod.send_and_wait(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                                       partition=0, headers=[("h", str(i).encode())]), 30)
                offsets.append(md.offset)
        finally:
            await prod.stop()
        assert offsets == list(range(n))

        tp = ATP(topic, 0)
        cons = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                group_id=None, request_timeout_ms=30000)
        await cons.start()
        try:
            cons.assign([tp])
            await cons.seek_to_beginning(tp)
            got = []
            deadline = time.time() + 30
            while len(got) < n and time.time() < deadline:
                batch = await cons.getmany(tp, timeout_ms=500)
                got.extend(batch.get(tp, []))
            assert [(r.offset, r.key, r.value) for r in got] == \
                [(i, f"k{i}".encode(), f"v{i}".encode()) for i in range(n)]
            assert [list(r.headers) for r in got] == [[("h", str(i).encode())] for i in range(n)]
            assert (await cons.end_offsets([tp]))[tp] == n
        finally:
            await cons.stop()

    asyncio.run(asyncio.wait_for(run(), 55))


# ---------------------------------------------------------------- 6. idempotent producer across restart

def test_idempotent_producer_survives_restart(broker):
    topic = unique("idem")
    create_topic(broker.bootstrap, topic, 1)
    prod = Producer(dict(PRODUCER, **{"bootstrap.servers": broker.bootstrap, "acks": "all",
                                      "enable.idempotence": True, "retry.backoff.ms": 100,
                                      "reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 1000}))
    first = produce_all(prod, topic, [dict(value=f"m{i}".encode(), partition=0) for i in range(500)])
    assert [o for _e, _p, o, _k, _v in first] == list(range(500))
    assert all(e is None for e, *_ in first)

    broker.restart()

    second = produce_all(prod, topic, [dict(value=f"m{i}".encode(), partition=0) for i in range(500, 1000)])
    errs = [e for e, *_ in second if e is not None]
    assert not errs, errs[:3]
    assert [o for _e, _p, o, _k, _v in second] == list(range(500, 1000))

    msgs = consume_all(broker.bootstrap, topic, 1, expected=1000)
    assert [m.offset() for m in msgs] == list(range(1000))
    assert [m.value() for m in msgs] == [f"m{i}".encode() for i in range(1000)]


# ---------------------------------------------------------------- 7. kill -9

def test_kill9_keeps_acked_messages_and_bumps_leader_epoch(broker):
    topic = unique("kill")
    create_topic(broker.bootstrap, topic, 1)
    n = 300
    prod = Producer(dict(PRODUCER, **{"bootstrap.servers": broker.bootstrap, "acks": "all"}))
    reports = produce_all(prod, topic, [dict(key=b"k", value=f"a{i}".encode(), partition=0) for i in range(n)])
    assert all(e is None for e, *_ in reports)
    assert sorted(o for _e, _p, o, _k, _v in reports) == list(range(n))
    del prod

    before = consume_all(broker.bootstrap, topic, 1, expected=n)
    assert len(before) == n
    epoch_before = before[-1].leader_epoch()
    assert epoch_before is not None and epoch_before >= 0

    broker.kill()
    assert not broker.alive()
    broker.start()

    after = consume_all(broker.bootstrap, topic, 1, expected=n)
    assert [m.offset() for m in after] == list(range(n))
    assert [m.value() for m in after] == [f"a{i}".encode() for i in range(n)]

    prod = Producer(dict(PRODUCER, **{"bootstrap.servers": broker.bootstrap, "acks": "all"}))
    more = produce_all(prod, topic, [dict(key=b"k", value=f"b{i}".encode(), partition=0) for i in range(50)])
    assert all(e is None for e, *_ in more)
    assert sorted(o for _e, _p, o, _k, _v in more) == list(range(n, n + 50))

    msgs = consume_all(broker.bootstrap, topic, 1, expected=n + 50)
    assert [m.offset() for m in msgs] == list(range(n + 50))
    assert [m.value() for m in msgs] == [f"a{i}".encode() for i in range(n)] + \
        [f"b{i}".encode() for i in range(50)]
    epoch_after = msgs[-1].leader_epoch()
    assert epoch_after is not None and epoch_after > epoch_before, (epoch_before, epoch_after)
    # Records written before the crash keep the epoch they were written in.
    assert msgs[0].leader_epoch() == epoch_before


# ---------------------------------------------------------------- 8. ListOffsets

def test_list_offsets_earliest_latest(broker):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    topic = unique("lo")
    parts = 2
    create_topic(broker.bootstrap, topic, parts)

    c = Consumer(dict(COMMON, **{"bootstrap.servers": broker.bootstrap, "group.id": unique("g"),
                                 "enable.auto.commit": False}))
    try:
        for p in range(parts):
            assert c.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False) == (0, 0)

        prod = Producer(dict(PRODUCER, **{"bootstrap.servers": broker.bootstrap, "acks": "all"}))
        counts = {0: 37, 1: 5}
        recs = [dict(value=f"v{i}".encode(), partition=p) for p, k in counts.items() for i in range(k)]
        assert_contiguous(produce_all(prod, topic, recs))

        for p in range(parts):
            assert c.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False) == (0, counts[p])
    finally:
        c.close()

    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None,
                       request_timeout_ms=30000)
    try:
        tps = [KTP(topic, p) for p in range(parts)]
        assert kc.beginning_offsets(tps) == {KTP(topic, p): 0 for p in range(parts)}
        assert kc.end_offsets(tps) == {KTP(topic, p): counts[p] for p in range(parts)}
    finally:
        kc.close()


# ---------------------------------------------------------------- 9. (extra) broker goes away while idempotent batches are in flight

@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_idempotent_producer_broker_bounce_with_batches_in_flight(broker, how):
    """Like test 6, but the broker stops (SIGTERM, or kill -9) while the producer keeps producing,
    so requests are in flight or queued across the bounce and librdkafka retries them with the
    same producer id and sequence numbers: the broker must neither lose an acked record nor
    duplicate a retried one, and keep the order."""
    import threading

    topic = unique(f"idem-{how}")
    create_topic(broker.bootstrap, topic, 1)
    prod = Producer(dict(PRODUCER, **{"bootstrap.servers": broker.bootstrap, "acks": "all",
                                      "enable.idempotence": True, "linger.ms": 5,
                                      "batch.num.messages": 100, "retry.backoff.ms": 100,
                                      "reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 500}))
    n = 1000
    reports = []
    bounced = threading.Event()

    def on_delivery(err, msg):
        reports.append((err, msg.offset(), msg.value()))

    def bounce():
        time.sleep(0.5)
        if how == "kill9":
            broker.kill()
            broker.start()
        else:
            broker.restart()
        bounced.set()

    t = threading.Thread(target=bounce)
    t.start()
    try:
        for i in range(n):
            prod.produce(topic, value=f"m{i}".encode(), partition=0, on_delivery=on_delivery)
            prod.poll(0)
            time.sleep(0.001)  # spread the records over the bounce
    finally:
        t.join(30)
    assert bounced.is_set()
    assert prod.flush(40) == 0
    errs = [e for e, _o, _v in reports if e is not None]
    assert not errs, errs[:3]
    assert [o for _e, o, _v in reports] == list(range(n))
    assert [v for _e, _o, v in reports] == [f"m{i}".encode() for i in range(n)]

    msgs = consume_all(broker.bootstrap, topic, 1, expected=n)
    assert [m.offset() for m in msgs] == list(range(n))
    assert [m.value() for m in msgs] == [f"m{i}".encode() for i in range(n)]
