"""Transactions and exactly-once (issue 8) with real clients: confluent-kafka (librdkafka) and
kafka-python transactional producers, read_committed and read_uncommitted consumers, the
transaction timeout, zombie fencing, a consume-transform-produce loop with
send_offsets_to_transaction, and `kill -9` of the broker mid-transaction."""
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

FAST = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "200", "wal.upload.interval.ms": "20",
        "group.initial.rebalance.delay.ms": "0"}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(broker, name, partitions=1):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def txn_producer(broker, tid, **extra):
    conf = {"bootstrap.servers": broker.bootstrap, "transactional.id": tid, "linger.ms": 5}
    conf.update(extra)
    return Producer(conf)


def consumer(broker, isolation, group=None, **extra):
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group or unique("g"), "isolation.level": isolation,
            "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 50}
    conf.update(extra)
    return Consumer(conf)


def read_all(broker, topic, isolation, partitions=1, idle=2.0):
    """Every value readable from the start of `topic` with this isolation level."""
    c = consumer(broker, isolation)
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    last = time.time()
    while time.time() - last < idle:
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        out.append(m.value().decode())
        last = time.time()
    c.close()
    return out


def watermarks(broker, topic, isolation, partition=0):
    c = consumer(broker, isolation)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def produce_txn(p, topic, values, commit=True, partition=0):
    p.begin_transaction()
    for v in values:
        p.produce(topic, v.encode(), partition=partition)
    p.flush(30)
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)


def test_commit_and_abort_with_confluent_kafka(make_broker):
    broker = make_broker(settings=FAST)
    topic = unique("txn")
    create_topic(broker, topic)
    p = txn_producer(broker, unique("tid"))
    p.init_transactions(30)
    committed = [f"c{i}" for i in range(10)]
    aborted = [f"a{i}" for i in range(10)]
    later = [f"d{i}" for i in range(5)]
    produce_txn(p, topic, committed)
    produce_txn(p, topic, aborted, commit=False)
    produce_txn(p, topic, later)
    assert read_all(broker, topic, "read_committed") == committed + later
    # read_uncommitted sees the aborted records too (control batches are never records).
    assert read_all(broker, topic, "read_uncommitted") == committed + aborted + later

    # An open transaction holds read_committed back at its first offset (the LSO).
    p.begin_transaction()
    for i in range(4):
        p.produce(topic, f"o{i}".encode(), partition=0)
    p.flush(30)
    low, hw = watermarks(broker, topic, "read_uncommitted")
    _, lso = watermarks(broker, topic, "read_committed")
    # 10 + 10 + 5 records and 3 markers before the open transaction's 4 records.
    assert (hw, lso) == (32, 28), (hw, lso)
    assert read_all(broker, topic, "read_committed") == committed + later
    assert read_all(broker, topic, "read_uncommitted")[-4:] == [f"o{i}" for i in range(4)]
    p.commit_transaction(30)
    assert read_all(broker, topic, "read_committed") == committed + later + [f"o{i}" for i in range(4)]
    _, lso = watermarks(broker, topic, "read_committed")
    _, hw = watermarks(broker, topic, "read_uncommitted")
    assert lso == hw == 33


def test_transaction_over_two_partitions_and_restart(make_broker):
    """Markers go to every partition of the transaction; the aborted-transaction index and the
    open transaction's first offset survive a restart."""
    broker = make_broker(settings=FAST)
    topic = unique("txn2")
    create_topic(broker, topic, partitions=2)
    p = txn_producer(broker, unique("tid"))
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, f"x{i}".encode(), partition=i % 2)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(6):
        p.produce(topic, f"y{i}".encode(), partition=i % 2)
    p.flush(30)
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, b"open", partition=1)
    p.flush(30)
    broker.restart()
    assert sorted(read_all(broker, topic, "read_committed", partitions=2)) == sorted(f"y{i}" for i in range(6))
    assert len(read_all(broker, topic, "read_uncommitted", partitions=2)) == 13
    # Partition 1 is held at the open transaction after the restart too.
    _, lso = watermarks(broker, topic, "read_committed", partition=1)
    _, hw = watermarks(broker, topic, "read_uncommitted", partition=1)
    assert (lso, hw) == (8, 9), (lso, hw)


def test_abort_on_timeout(make_broker):
    broker = make_broker(settings=FAST)
    topic = unique("txn-timeout")
    create_topic(broker, topic)
    p = txn_producer(broker, unique("tid"), **{"transaction.timeout.ms": 1500})
    p.init_transactions(30)
    produce_txn(p, topic, ["kept"])
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, f"late{i}".encode(), partition=0)
    p.flush(30)
    _, lso = watermarks(broker, topic, "read_committed")
    assert lso == 2
    deadline = time.time() + 15
    while time.time() < deadline:
        _, lso = watermarks(broker, topic, "read_committed")
        if lso > 2:
            break
        time.sleep(0.2)
    # The coordinator aborted: an ABORT marker at offset 7, and the LSO moves past it.
    _, hw = watermarks(broker, topic, "read_uncommitted")
    assert lso == hw == 8, (lso, hw)
    assert read_all(broker, topic, "read_committed") == ["kept"]
    # The timed-out producer was fenced (its epoch bumped): it cannot commit.
    with pytest.raises(KafkaException):
        p.commit_transaction(10)


def test_zombie_is_fenced_by_new_instance(make_broker):
    broker = make_broker(settings=FAST)
    topic = unique("txn-zombie")
    create_topic(broker, topic)
    tid = unique("tid")
    zombie = txn_producer(broker, tid)
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(topic, b"zombie", partition=0)
    zombie.flush(30)
    fresh = txn_producer(broker, tid)
    fresh.init_transactions(30)  # aborts the zombie's transaction first
    produce_txn(fresh, topic, ["fresh"])
    with pytest.raises(KafkaException) as e:
        zombie.commit_transaction(10)
    assert e.value.args[0].fatal() or "fenced" in str(e.value).lower(), e.value
    assert read_all(broker, topic, "read_committed") == ["fresh"]
    assert read_all(broker, topic, "read_uncommitted") == ["zombie", "fresh"]


def test_kafka_python_transactional_producer(make_broker):
    kafka = pytest.importorskip("kafka")
    broker = make_broker(settings=FAST)
    topic = unique("txn-kp")
    create_topic(broker, topic)
    p = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=unique("kp-tid"))
    p.init_transactions()
    p.begin_transaction()
    for i in range(3):
        p.send(topic, f"k{i}".encode(), partition=0)
    p.commit_transaction()
    p.begin_transaction()
    for i in range(3):
        p.send(topic, f"x{i}".encode(), partition=0)
    p.flush()  # written, then aborted (unsent records would just be dropped)
    p.abort_transaction()
    p.close()
    c = kafka.KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                            auto_offset_reset="earliest", consumer_timeout_ms=3000)
    c.assign([kafka.TopicPartition(topic, 0)])
    assert [m.value.decode() for m in c] == ["k0", "k1", "k2"]
    c.close()
    assert read_all(broker, topic, "read_uncommitted") == ["k0", "k1", "k2", "x0", "x1", "x2"]


def transform_loop(broker, src, dst, group, tid, batches, kill_mid=False):
    """Consume from `src`, produce upper-cased to `dst` and commit the input offsets in the same
    transaction. With `kill_mid`, the broker is killed (-9) inside the last transaction,
    after its records and offsets were sent and before the commit."""
    c = consumer(broker, "read_committed", group=group)
    c.subscribe([src])
    p = txn_producer(broker, tid)
    p.init_transactions(30)
    done = 0
    started = idle_since = time.time()
    while batches is None or done < batches:
        msgs = c.consume(20, 0.5)
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            if batches is None and time.time() - idle_since > 4 and (done > 0 or time.time() - started > 30):
                break
            continue
        idle_since = time.time()
        p.begin_transaction()
        for m in msgs:
            p.produce(dst, m.value().upper(), partition=0)
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
        if kill_mid and done == batches - 1:
            p.flush(30)
            broker.kill()
            return c, p
        p.commit_transaction(30)
        done += 1
    c.close()
    return None, p


def test_consume_transform_produce_exactly_once_across_kill_9(make_broker):
    broker = make_broker(settings=FAST)
    src, dst, group, tid = unique("in"), unique("out"), unique("eos"), unique("tid")
    create_topic(broker, src)
    create_topic(broker, dst)
    n = 300
    plain = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(n):
        plain.produce(src, f"r{i:04d}".encode(), partition=0)
    plain.flush(30)
    old_consumer, old_producer = transform_loop(broker, src, dst, group, tid, batches=4, kill_mid=True)
    broker.start()
    # The old instance goes away (its consumer leaves the group) without committing.
    old_consumer.close()
    del old_producer
    # A new instance with the same transactional.id picks up where the committed offsets say.
    transform_loop(broker, src, dst, group, tid, batches=None)
    out = read_all(broker, dst, "read_committed")
    assert sorted(out) == [f"R{i:04d}" for i in range(n)], (len(out), len(set(out)))
    _, lso = watermarks(broker, dst, "read_committed")
    _, hw = watermarks(broker, dst, "read_uncommitted")
    assert lso == hw


def test_open_transaction_is_aborted_after_kill_9_and_restart(make_broker):
    """The restarted coordinator finds the open transaction in the metadata store and aborts
    it at its timeout, so the LSO does not stay stuck and the records stay invisible."""
    broker = make_broker(settings=FAST)
    topic = unique("txn-kill")
    create_topic(broker, topic)
    p = txn_producer(broker, unique("tid"), **{"transaction.timeout.ms": 2000})
    p.init_transactions(30)
    produce_txn(p, topic, ["before"])
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, f"lost{i}".encode(), partition=0)
    p.flush(30)
    broker.kill()
    broker.start()
    _, lso = watermarks(broker, topic, "read_committed")
    assert lso == 2
    deadline = time.time() + 20
    while time.time() < deadline and lso == 2:
        time.sleep(0.2)
        _, lso = watermarks(broker, topic, "read_committed")
    _, hw = watermarks(broker, topic, "read_uncommitted")
    assert lso == hw == 8, (lso, hw)
    assert read_all(broker, topic, "read_committed") == ["before"]
    broker.restart()
    assert read_all(broker, topic, "read_committed") == ["before"]
    assert read_all(broker, topic, "read_uncommitted") == ["before"] + [f"lost{i}" for i in range(5)]


def tern_cli(broker, *args):
    import subprocess
    from conftest import TERN
    return subprocess.run([TERN, "transactions", *args, "--bootstrap-server", broker.bootstrap],
                          capture_output=True, text=True, timeout=60)


def test_cli_list_describe_abort(make_broker):
    """`tern transactions abort` ends a hanging transaction: the LSO moves on, its records stay
    invisible to read_committed, and the producer that opened it is fenced."""
    broker = make_broker(settings=FAST)
    topic = unique("txn-cli")
    create_topic(broker, topic)
    tid = unique("tid")
    p = txn_producer(broker, tid)
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, b"hanging", partition=0)
    p.flush(30)
    out = tern_cli(broker, "list")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()]
    assert rows[0] == ["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"]
    assert [r for r in rows[1:] if r[0] == tid][0][2] == "Ongoing"
    out = tern_cli(broker, "list", "--state", "Empty")
    assert tid not in out.stdout
    out = tern_cli(broker, "describe", "--transactional-id", tid)
    assert out.returncode == 0, out.stderr
    header, row = [line.split() for line in out.stdout.splitlines()]
    assert dict(zip(header, row))["STATE"] == "Ongoing"
    assert dict(zip(header, row))["PARTITIONS"] == f"{topic}-0"
    assert tern_cli(broker, "describe", "--transactional-id", "nobody").returncode != 0
    out = tern_cli(broker, "abort", "--transactional-id", tid)
    assert out.returncode == 0, out.stderr
    deadline = time.time() + 10
    while time.time() < deadline:
        _, lso = watermarks(broker, topic, "read_committed")
        if lso == 2:
            break
        time.sleep(0.1)
    assert lso == 2
    assert read_all(broker, topic, "read_committed") == []
    out = tern_cli(broker, "abort", "--transactional-id", tid)
    assert out.returncode != 0 and "no open transaction" in out.stderr
    with pytest.raises(KafkaException):
        p.commit_transaction(10)


def test_wire_errors_per_version(make_broker):
    """Raw requests for what clients hide: INVALID_TRANSACTION_TIMEOUT against
    transaction.max.timeout.ms, and a stale epoch answered INVALID_PRODUCER_EPOCH before
    EndTxn v2 and PRODUCER_FENCED from v2 (KIP-588), INVALID_TXN_STATE for EndTxn without a
    transaction, FindCoordinator for a transactional id."""
    from kafka_wire import Conn, Enc, versioned_request
    broker = make_broker(settings={**FAST, "transaction.max.timeout.ms": "5000"})
    conn = Conn(broker.port)
    tid = unique("wire")

    def init(timeout_ms):
        d = versioned_request(conn, 22, 1, Enc(False).nstr(tid).i32(timeout_ms), False)
        d.i32()
        return d.i16(), d.i64(), d.i16()

    def end(v, pid, epoch, commit=True):
        d = versioned_request(conn, 26, v, Enc(False).str(tid).i64(pid).i16(epoch).bool(commit), False)
        d.i32()
        return d.i16()

    assert init(5001)[0] == 50  # INVALID_TRANSACTION_TIMEOUT
    err, pid, epoch = init(5000)
    assert (err, epoch) == (0, 0) and pid >= 0
    err, pid2, epoch2 = init(5000)
    assert (err, pid2, epoch2) == (0, pid, 1)
    assert end(1, pid, 0) == 47  # INVALID_PRODUCER_EPOCH
    assert end(2, pid, 0) == 90  # PRODUCER_FENCED
    assert end(2, pid + 1000, 1) == 49  # INVALID_PRODUCER_ID_MAPPING
    assert end(2, pid, 1) == 48  # INVALID_TXN_STATE: nothing to end
    # FindCoordinator v1 with key type 1 (transaction) names this broker.
    d = versioned_request(conn, 10, 1, Enc(False).str(tid).i8(1), False)
    d.i32()
    assert d.i16() == 0
    d.nstring()
    assert (d.i32(), d.string(), d.i32()) == (1, "127.0.0.1", broker.port)
    conn.close()


def test_describe_producers_shows_open_transaction(make_broker):
    from kafka_wire import Conn, Enc, versioned_request
    broker = make_broker(settings=FAST)
    topic = unique("txn-dp")
    create_topic(broker, topic)
    p = txn_producer(broker, unique("tid"))
    p.init_transactions(30)
    produce_txn(p, topic, ["a", "b"])  # offsets 0-1, COMMIT marker at 2
    p.begin_transaction()
    p.produce(topic, b"open", partition=0)  # offset 3
    p.flush(30)
    conn = Conn(broker.port)
    e = Enc(True).array([(topic, [0])], lambda e, t: e.str(t[0]).array(t[1], lambda e, i: e.i32(i)).tags()).tags()
    d = versioned_request(conn, 61, 0, e, True)
    d.i32()

    def partition(d):
        r = (d.i32(), d.i16(), d.nstring(),
             d.array(lambda d: (d.i64(), d.i32(), d.i32(), d.i64(), d.i32(), d.i64(), d.tags())[:6]))
        d.tags()
        return r

    res = d.array(lambda d: (d.string(), d.array(partition), d.tags())[:2])
    conn.close()
    (_, [(_, err, _, producers)]) = res[0]
    assert err == 0 and len(producers) == 1
    pid, epoch, last_seq, _, coordinator_epoch, txn_start = producers[0]
    assert (epoch, last_seq, txn_start) == (0, 2, 3)
    assert coordinator_epoch >= 1  # the broker epoch of the coordinator that wrote the COMMIT marker
    p.abort_transaction(30)
