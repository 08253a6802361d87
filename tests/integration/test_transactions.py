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


# ---- raw wire: error codes per version, AddPartitionsToTxn v4, TxnOffsetCommit membership,
# ---- a marker a partition refuses ----

NONE, ILLEGAL_GENERATION, INVALID_GROUP_ID, UNKNOWN_MEMBER_ID = 0, 22, 24, 25
INVALID_REQUEST, INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE, INVALID_PRODUCER_ID_MAPPING = 42, 47, 48, 49
FENCED_INSTANCE_ID, PRODUCER_FENCED, TRANSACTION_ABORTABLE, UNKNOWN_TOPIC_OR_PARTITION = 82, 90, 120, 3


class Wire:
    """Raw transactional requests at chosen versions (what clients hide)."""

    def __init__(self, broker):
        from kafka_wire import Conn
        self.conn = Conn(broker.port)

    def close(self):
        self.conn.close()

    def req(self, api, v, build, flexible):
        from kafka_wire import Enc, versioned_request
        e = Enc(flexible)
        build(e)
        return versioned_request(self.conn, api, v, e, flexible)

    def init(self, v, tid, pid=-1, epoch=-1, timeout_ms=60000):
        def b(e):
            e.nstr(tid).i32(timeout_ms)
            if v >= 3:
                e.i64(pid).i16(epoch)
            e.tags()
        d = self.req(22, v, b, v >= 2)
        d.i32()
        return d.i16(), d.i64(), d.i16()

    def add_partitions(self, v, tid, pid, epoch, topics):
        flex = v >= 3

        def b(e):
            e.str(tid).i64(pid).i16(epoch)
            e.array(topics, lambda e, t: e.str(t[0]).array(t[1], lambda e, p: e.i32(p)).tags()).tags()
        d = self.req(24, v, b, flex)
        d.i32()
        res = d.array(lambda d: (d.string(), d.array(lambda d: (d.i32(), d.i16(), d.tags())[:2]), d.tags())[:2])
        d.end()
        return {(t, p): err for t, parts in res for p, err in parts}

    def add_partitions_v4(self, txns, v=4):
        """txns: [(tid, pid, epoch, verify_only, [(topic, [partitions])])] ->
        (top-level error, {tid: {(topic, partition): error}})."""
        def topic(e, t):
            e.str(t[0]).array(t[1], lambda e, p: e.i32(p)).tags()

        def txn(e, x):
            e.str(x[0]).i64(x[1]).i16(x[2]).bool(x[3]).array(x[4], topic).tags()
        d = self.req(24, v, lambda e: e.array(txns, txn).tags(), True)
        d.i32()
        top = d.i16()

        def topic_results(d):
            return d.array(lambda d: (d.string(), d.array(lambda d: (d.i32(), d.i16(), d.tags())[:2]), d.tags())[:2])
        res = d.array(lambda d: (d.string(), topic_results(d), d.tags())[:2])
        d.end()
        return top, {tid: {(t, p): err for t, parts in tr for p, err in parts} for tid, tr in res}

    def add_offsets(self, v, tid, pid, epoch, group):
        d = self.req(25, v, lambda e: e.str(tid).i64(pid).i16(epoch).str(group).tags(), v >= 3)
        d.i32()
        return d.i16()

    def end(self, v, tid, pid, epoch, commit):
        d = self.req(26, v, lambda e: e.str(tid).i64(pid).i16(epoch).bool(commit).tags(), v >= 3)
        d.i32()
        return d.i16()

    def txn_offset_commit(self, v, tid, pid, epoch, group, topics, generation=-1, member="", instance=None):
        """topics: [(topic, [(partition, offset)])] -> {(topic, partition): error}."""
        def part(e, p):
            e.i32(p[0]).i64(p[1])
            if v >= 2:
                e.i32(-1)
            e.nstr(None).tags()

        def b(e):
            e.str(tid).str(group).i64(pid).i16(epoch)
            if v >= 3:
                e.i32(generation).str(member).nstr(instance)
            e.array(topics, lambda e, t: e.str(t[0]).array(t[1], part).tags()).tags()
        d = self.req(28, v, b, v >= 3)
        d.i32()
        res = d.array(lambda d: (d.string(), d.array(lambda d: (d.i32(), d.i16(), d.tags())[:2]), d.tags())[:2])
        d.end()
        return {(t, p): err for t, parts in res for p, err in parts}

    def describe(self, tid):
        d = self.req(65, 0, lambda e: e.array([tid], lambda e, t: e.str(t)).tags(), True)
        d.i32()

        def state(d):
            r = dict(error=d.i16(), tid=d.string(), state=d.string(), timeout=d.i32(), start=d.i64(), pid=d.i64(),
                     epoch=d.i16(), topics=d.array(lambda d: (d.string(), d.array(lambda d: d.i32()), d.tags())[:2]))
            d.tags()
            return r
        (s,) = d.array(state)
        d.end()
        return s


def test_fencing_error_codes_follow_kafka_per_version(make_broker):
    """KafkaApis: PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH for InitProducerId < v4 and
    AddPartitionsToTxn/AddOffsetsToTxn/EndTxn < v2; TxnOffsetCommit answers a fenced epoch
    with INVALID_PRODUCER_EPOCH at every version (the group coordinator's transaction
    verification maps it so). A zombie retrying InitProducerId with its old epoch after a new
    instance took the id is fenced (the bump forgot the last epoch); a producer id without an
    epoch is INVALID_REQUEST; AddOffsetsToTxn takes any group id (an empty one is refused by
    TxnOffsetCommit, with INVALID_GROUP_ID)."""
    broker = make_broker(settings=FAST)
    topic = unique("txn-codes")
    create_topic(broker, topic)
    w = Wire(broker)
    tid, group = unique("codes"), unique("g")
    err, pid, epoch = w.init(4, tid)
    assert (err, epoch) == (NONE, 0)
    assert w.init(1, tid)[:3] == (NONE, pid, 1)  # a new instance: epoch 1
    # The zombie at epoch 0 retries with its id and epoch (KIP-360): fenced, not given epoch 1.
    assert w.init(3, tid, pid, 0)[0] == INVALID_PRODUCER_EPOCH
    assert w.init(4, tid, pid, 0)[0] == PRODUCER_FENCED
    assert w.init(4, tid, pid, -1)[0] == INVALID_REQUEST
    assert w.init(4, tid, -1, 1)[0] == INVALID_REQUEST
    # The live instance's own retry with epoch 1 bumps to 2.
    assert w.init(4, tid, pid, 1) == (NONE, pid, 2)
    assert w.add_partitions(1, tid, pid, 1, [(topic, [0])]) == {(topic, 0): INVALID_PRODUCER_EPOCH}
    assert w.add_partitions(2, tid, pid, 1, [(topic, [0])]) == {(topic, 0): PRODUCER_FENCED}
    assert w.add_offsets(1, tid, pid, 1, group) == INVALID_PRODUCER_EPOCH
    assert w.add_offsets(2, tid, pid, 1, group) == PRODUCER_FENCED
    assert w.end(1, tid, pid, 1, True) == INVALID_PRODUCER_EPOCH
    assert w.end(2, tid, pid, 1, True) == PRODUCER_FENCED
    assert w.add_offsets(3, tid, pid, 2, "") == NONE
    assert w.add_offsets(3, tid, pid, 2, group) == NONE
    for v in (0, 2, 3, 4):
        assert w.txn_offset_commit(v, tid, pid, 1, group, [(topic, [(0, 5)])]) == {(topic, 0): INVALID_PRODUCER_EPOCH}, v
    assert w.txn_offset_commit(3, tid, pid + 1000, 2, group, [(topic, [(0, 5)])]) == {(topic, 0): INVALID_PRODUCER_ID_MAPPING}
    # A group the transaction does not hold: INVALID_TXN_STATE before v4, TRANSACTION_ABORTABLE from v4.
    assert w.txn_offset_commit(3, tid, pid, 2, "other", [(topic, [(0, 5)])]) == {(topic, 0): INVALID_TXN_STATE}
    assert w.txn_offset_commit(4, tid, pid, 2, "other", [(topic, [(0, 5)])]) == {(topic, 0): TRANSACTION_ABORTABLE}
    # Unknown partitions answer for themselves even when the group id is empty.
    assert w.txn_offset_commit(3, tid, pid, 2, "", [(topic, [(0, 5), (9, 5)])]) == {
        (topic, 0): INVALID_GROUP_ID, (topic, 9): UNKNOWN_TOPIC_OR_PARTITION}
    assert w.txn_offset_commit(3, tid, pid, 2, group, [(topic, [(0, 5)])]) == {(topic, 0): NONE}
    assert w.end(3, tid, pid, 2, True) == NONE
    w.close()


def test_add_partitions_to_txn_v4_batches_and_verifies(make_broker):
    """AddPartitionsToTxn v4/v5 (KIP-890, the broker-to-broker form): several transactions in
    one request, each answered under results_by_transaction; VerifyOnly checks without adding
    (TRANSACTION_ABORTABLE for a partition not in the transaction); an unknown partition fails
    only its own transaction."""
    broker = make_broker(settings=FAST)
    topic = unique("txn-v4")
    create_topic(broker, topic, partitions=3)
    w = Wire(broker)
    a, b = unique("a"), unique("b")
    _, pa, _ = w.init(4, a)
    _, pb, _ = w.init(4, b)
    top, res = w.add_partitions_v4([
        (a, pa, 0, False, [(topic, [0, 1])]),
        (b, pb, 0, False, [(topic, [2]), ("txn-v4-missing", [0])]),
        ("nobody", 5, 0, False, [(topic, [0])]),
    ])
    assert top == NONE
    assert res == {
        a: {(topic, 0): NONE, (topic, 1): NONE},
        b: {(topic, 2): OPERATION_NOT_ATTEMPTED, ("txn-v4-missing", 0): UNKNOWN_TOPIC_OR_PARTITION},
        "nobody": {(topic, 0): INVALID_PRODUCER_ID_MAPPING},
    }
    assert w.describe(a)["state"] == "Ongoing" and w.describe(a)["topics"] == [(topic, [0, 1])]
    assert w.describe(b)["state"] == "Empty"
    top, res = w.add_partitions_v4([
        (a, pa, 0, True, [(topic, [0, 2])]),
        (b, pb, 0, True, [(topic, [0])]),
        (a + "-x", pa, 0, True, [(topic, [0])]),
    ], v=5)
    assert top == NONE
    assert res == {
        a: {(topic, 0): NONE, (topic, 2): TRANSACTION_ABORTABLE},
        b: {(topic, 0): TRANSACTION_ABORTABLE},
        a + "-x": {(topic, 0): INVALID_PRODUCER_ID_MAPPING},
    }
    # Verifying added nothing.
    assert w.describe(a)["topics"] == [(topic, [0, 1])] and w.describe(b)["state"] == "Empty"
    _, res = w.add_partitions_v4([(a, pa, 1, True, [(topic, [0])])])
    assert res == {a: {(topic, 0): PRODUCER_FENCED}}  # v4+: no mapping to INVALID_PRODUCER_EPOCH
    assert w.end(3, a, pa, 0, False) == NONE
    _, res = w.add_partitions_v4([(a, pa, 0, True, [(topic, [0])])])
    assert res[a][(topic, 0)] in (CONCURRENT_TRANSACTIONS, TRANSACTION_ABORTABLE)  # aborting, or aborted
    w.close()


OPERATION_NOT_ATTEMPTED, CONCURRENT_TRANSACTIONS = 55, 51


def test_txn_offset_commit_checks_member_and_generation(make_broker):
    """OffsetMetadataManager.validateTransactionalOffsetCommit: with a member id, instance id
    or generation (v3+), a known group checks them (UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID,
    ILLEGAL_GENERATION); an unknown group takes only generation -1; without them (v2, or
    v3 with -1/"") the commit needs no membership."""
    from kafka_wire import Conn, group_member
    broker = make_broker(settings=FAST)
    topic = unique("txn-member")
    create_topic(broker, topic)
    w = Wire(broker)
    gc = Conn(broker.port)
    group, static_group, unknown = unique("g"), unique("gs"), unique("gu")
    member, generation = group_member(gc, group)
    smember, sgeneration = group_member(gc, static_group, instance="inst-1")
    tid = unique("member")
    _, pid, _ = w.init(4, tid)
    for g in (group, static_group, unknown):
        assert w.add_offsets(3, tid, pid, 0, g) == NONE

    def commit(g, v=3, **kw):
        return w.txn_offset_commit(v, tid, pid, 0, g, [(topic, [(0, 3)])], **kw)[(topic, 0)]

    assert commit(group, generation=generation, member="not-a-member") == UNKNOWN_MEMBER_ID
    assert commit(group, generation=generation + 1, member=member) == ILLEGAL_GENERATION
    assert commit(group, generation=generation, member=member) == NONE
    assert commit(group, generation=-1, member="") == NONE  # no membership given: not checked
    assert commit(group, v=2) == NONE
    assert commit(static_group, generation=sgeneration, member="someone-else", instance="inst-1") == FENCED_INSTANCE_ID
    assert commit(static_group, generation=sgeneration, member=smember, instance="inst-1") == NONE
    assert commit(unknown, generation=1, member="m") == ILLEGAL_GENERATION
    assert commit(unknown, generation=-1) == NONE
    assert w.end(3, tid, pid, 0, True) == NONE
    gc.close()
    w.close()


def test_marker_refused_by_partition_does_not_block_transaction(make_broker):
    """A partition that refuses a transaction marker for good (a newer epoch of the producer
    is already there: INVALID_PRODUCER_EPOCH) is given up with a log line; the transaction
    still completes, instead of retrying that marker forever (PrepareCommit forever, every
    later InitProducerId answered CONCURRENT_TRANSACTIONS)."""
    import struct
    from kafka_wire import crc32c, encode_record, i8, i32, i64, parse_produce_response, produce_request
    broker = make_broker(settings=FAST)
    topic = unique("txn-refuse")
    create_topic(broker, topic, partitions=2)
    w = Wire(broker)
    tid = unique("refuse")
    _, pid, epoch = w.init(4, tid)
    assert w.add_partitions(3, tid, pid, epoch, [(topic, [0, 1])]) == {(topic, 0): NONE, (topic, 1): NONE}
    # An idempotent (non-transactional) batch of the same producer id at a higher epoch into
    # partition 1: the partition now refuses anything of this producer at the lower epoch.
    ts = int(time.time() * 1000)
    records = encode_record(0, b"newer")
    covered = struct.pack(">hiqqqhii", 0, 0, ts, ts, pid, epoch + 1, 0, 1) + records
    after = i32(-1) + i8(2) + struct.pack(">I", crc32c(covered)) + covered
    batch = i64(0) + i32(len(after)) + after
    resp = parse_produce_response(w.conn.request(0, 7, produce_request([(topic, [(1, batch)])])), 7)
    assert resp[(topic, 1)]["error"] == NONE
    assert w.end(3, tid, pid, epoch, True) == NONE
    deadline = time.time() + 15
    while time.time() < deadline and w.describe(tid)["state"] != "CompleteCommit":
        time.sleep(0.1)
    assert w.describe(tid)["state"] == "CompleteCommit"
    assert "transaction marker refused by the partition" in broker.log()
    # The producer goes on.
    assert w.init(4, tid, pid, epoch)[:3] == (NONE, pid, epoch + 1)
    # Partition 0 got its COMMIT marker: its last stable offset is past it.
    assert watermarks(broker, topic, "read_committed", partition=0) == (0, 1)
    w.close()
