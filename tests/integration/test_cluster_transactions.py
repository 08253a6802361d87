"""Transactions in a cluster of three brokers: a transaction's coordinator is one broker, its
partitions are served by all three, and the group whose offsets it commits has its own
coordinator. Markers reach other brokers' partitions through their internal listeners, and
transactional batches are verified with the transaction's coordinator wherever they land.
"""
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from kafka_wire import Conn, Enc, Reader, i8, string, versioned_request
from test_cluster import create_topic, pg, start_cluster, wait_for_leaders, bootstrap  # noqa: F401 (pg: fixture)
import pg_server

pytestmark = pytest.mark.skipif(not pg_server.available(),
                                reason="PostgreSQL binaries not found (tools/install-deps.sh installs Debian's postgresql)")


def find_coordinator(port, key, key_type):
    """FindCoordinator v1: the node id the broker names for a group (0) or transactional id (1)."""
    with Conn(port) as c:
        r = Reader(c.request(10, 1, string(key) + i8(key_type)))
    r.i32()
    error = r.i16()
    r.nstring()
    node = r.i32()
    assert error == 0, f"FindCoordinator {key}: error {error}"
    return node


def read_committed(brokers, topic, partitions, timeout=30):
    c = Consumer({"bootstrap.servers": bootstrap(brokers), "group.id": f"rc-{uuid.uuid4().hex[:6]}",
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    idle_until = time.time() + 5
    deadline = time.time() + timeout
    while time.time() < min(deadline, idle_until):
        m = c.poll(0.3)
        if m is not None and not m.error():
            got.append(m.value().decode())
            idle_until = time.time() + 3
    c.close()
    return got


def test_transactions_span_brokers_and_commit_offsets_to_another_coordinator(pg, make_broker):
    brokers, _ = start_cluster(pg, make_broker)
    topic = f"txn-{uuid.uuid4().hex[:6]}"
    source = f"src-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 6)
    create_topic(brokers, source, 1)
    lead, _ = wait_for_leaders(brokers, topic, 6)
    assert len(set(lead.values())) == 3, f"the topic's partitions are on all three brokers: {lead}"
    wait_for_leaders(brokers, source, 1)

    # Transactional ids coordinated by each broker, and a group coordinated by another one
    # than the transaction (all brokers name the same coordinators).
    ids = {}
    for i in range(60):
        tid = f"tx-{i}"
        node = find_coordinator(brokers[0].port, tid, 1)
        assert find_coordinator(brokers[1].port, tid, 1) == node
        ids.setdefault(node, tid)
    assert sorted(ids) == [1, 2, 3], f"transactional ids on every broker: {ids}"

    committed, aborted = [], []
    for node, tid in sorted(ids.items()):
        group = next(g for g in (f"grp-{node}-{j}" for j in range(60)) if find_coordinator(brokers[0].port, g, 0) != node)
        p = Producer({"bootstrap.servers": bootstrap(brokers), "transactional.id": tid, "linger.ms": 5})
        p.init_transactions(30)
        # A consumer in the group, so that the offsets pass the group's membership checks.
        p2 = Producer({"bootstrap.servers": bootstrap(brokers)})
        p2.produce(source, value=b"in", partition=0)
        assert p2.flush(15) == 0
        c = Consumer({"bootstrap.servers": bootstrap(brokers), "group.id": group, "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        c.subscribe([source])
        msg = None
        deadline = time.time() + 30
        while msg is None and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                msg = m
        assert msg is not None, "the group consumer got its record"

        p.begin_transaction()
        for i in range(60):
            v = f"{tid}-c{i}"
            p.produce(topic, value=v.encode(), partition=i % 6)
            committed.append(v)
        p.send_offsets_to_transaction([TopicPartition(source, 0, msg.offset() + 1)], c.consumer_group_metadata(), 30)
        p.commit_transaction(30)

        p.begin_transaction()
        for i in range(30):
            v = f"{tid}-a{i}"
            p.produce(topic, value=v.encode(), partition=i % 6)
            aborted.append(v)
        p.flush(15)
        p.abort_transaction(30)

        got = c.committed([TopicPartition(source, 0)], timeout=15)
        assert got[0].offset == msg.offset() + 1, f"the transaction committed {group}'s offset through broker {node}"
        c.close()

    got = read_committed(brokers, topic, 6)
    assert sorted(got) == sorted(committed), (
        f"read_committed sees exactly the committed records: {len(got)} read, {len(committed)} committed, "
        f"{len(set(got) & set(aborted))} aborted ones among them")


def test_internal_apis_are_not_served_to_clients(pg, make_broker):
    brokers, db = start_cluster(pg, make_broker, n=1)
    b = brokers[0]
    # WriteTxnMarkers v1 on the client listener: not served, the connection is closed.
    with Conn(b.port) as c:
        cid, frame = c.frame(27, 1, b"\x01\x00")
        c.send_raw(frame)
        c.sock.settimeout(5)
        assert c.sock.recv(4) == b"", "connection closed"
    assert "unknown API key 27" in b.log()
    # The internal listener is registered with the lease, and answers ApiVersions with its own
    # short list (WriteTxnMarkers among it).
    port = int(pg.sql("SELECT internal_port FROM brokers", db)[0][0])
    assert port > 0 and port != b.port
    with Conn(port) as c:
        r = Reader(c.request(18, 0, b""))
    assert r.i16() == 0
    keys = sorted(r.array(lambda r: (r.i16(), r.i16(), r.i16())))
    assert [k for k, _, _ in keys] == [18, 24, 27, 28, 10000], keys

    # ReleaseStreams (Tern's own, internal only): a stream still assigned here stays open
    # (NO_REASSIGNMENT_IN_PROGRESS, 85); one not open here is NONE.
    topic = f"rel-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 1)
    wait_for_leaders(brokers, topic, 1)
    sid = int(pg.sql(f"SELECT stream_id FROM streams WHERE topic = '{topic}'", db)[0][0])
    with Conn(port) as c:
        d = versioned_request(c, 10000, 0, Enc(True).array([sid, 999999], lambda e, s: e.i64(s).tags()).tags(), True)
    got = d.array(lambda d: (d.i64(), d.i16(), d.tags())[:2])
    assert got == [(sid, 85), (999999, 0)], got
    with Conn(b.port) as c:
        cid, frame = c.frame(10000, 0, b"\x01\x00")
        c.send_raw(frame)
        c.sock.settimeout(5)
        assert c.sock.recv(4) == b"", "not served to clients"


def test_a_transaction_survives_its_coordinators_kill_9(pg, make_broker):
    brokers, _ = start_cluster(pg, make_broker)
    topic = f"txnfail-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 6)
    wait_for_leaders(brokers, topic, 6)
    # A transactional id coordinated by node 2, the broker to be killed.
    tid = next(t for t in (f"txf-{i}" for i in range(100)) if find_coordinator(brokers[0].port, t, 1) == 2)

    p = Producer({"bootstrap.servers": bootstrap(brokers), "transactional.id": tid, "linger.ms": 5})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(60):
        p.produce(topic, value=f"open-{i}".encode(), partition=i % 6)
    assert p.flush(15) == 0
    brokers[1].kill()  # the transaction is open, its coordinator gone

    # Another broker coordinates the id now: it loads the open transaction, and a new producer
    # with the same id fences the old one, whose transaction is aborted on every partition.
    survivors = [brokers[0], brokers[2]]
    wait_for_leaders(survivors, topic, 6, ok=lambda l: l != 2, timeout=30)
    assert find_coordinator(brokers[0].port, tid, 1) != 2
    p2 = Producer({"bootstrap.servers": bootstrap(survivors), "transactional.id": tid, "linger.ms": 5})
    p2.init_transactions(60)
    p2.begin_transaction()
    for i in range(60):
        p2.produce(topic, value=f"after-{i}".encode(), partition=i % 6)
    p2.commit_transaction(60)

    got = read_committed(survivors, topic, 6)
    assert sorted(got) == sorted(f"after-{i}" for i in range(60)), (
        f"only the new transaction's records: {len(got)} read, {sum(v.startswith('open') for v in got)} of the aborted one")
