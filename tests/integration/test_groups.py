"""Consumer groups with the classic protocol: subscribe() with real clients against the real
broker. Each consumer runs in its own process (group_consumer.py), so one can be killed with
SIGKILL or closed gracefully with SIGTERM, and reports its assignments and records as JSON.

The broker runs with group.initial.rebalance.delay.ms=300 so a new group forms quickly.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from kafka_wire import (Conn, Reader, array, create_topic, group_heartbeat_v3, group_join_v5, group_member, group_sync_v3,
                        i32, i64, nstring, produce_values, string)

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "group_consumer.py")
FAST = {"group.initial.rebalance.delay.ms": "300"}
PARTITIONS = 6
ALL = set(range(PARTITIONS))

# Error codes (org.apache.kafka.common.protocol.Errors).
NONE, NOT_COORDINATOR, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, INVALID_SESSION_TIMEOUT = 0, 16, 22, 25, 26
REBALANCE_IN_PROGRESS, NON_EMPTY_GROUP, MEMBER_ID_REQUIRED, FENCED_INSTANCE_ID = 27, 68, 79, 82
GROUP_SUBSCRIBED_TO_TOPIC = 86


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Member:
    """One group_consumer.py process and the events it printed."""

    def __init__(self, broker, client, group, topic, name=None, instance=None, strategy=None,
                 session_ms=10000, heartbeat_ms=1000, commit=False, protocol=None):
        self.name = name or client
        args = [sys.executable, RUNNER, "--client", client, "--bootstrap", broker.bootstrap, "--group", group,
                "--topic", topic, "--name", self.name, "--session-ms", str(session_ms), "--heartbeat-ms", str(heartbeat_ms)]
        if instance:
            args += ["--instance", instance]
        if strategy:
            args += ["--strategy", strategy]
        if commit:
            args.append("--commit")
        if protocol:
            args += ["--protocol", protocol]
        self.stderr = open(os.path.join(broker.data_dir, f"consumer-{self.name}-{uuid.uuid4().hex[:6]}.log"), "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.lock = threading.Lock()
        self.events = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(e)

    def of(self, kind):
        with self.lock:
            return [e for e in self.events if e["event"] == kind]

    def assignment(self):
        """The partitions held now (None before the first assignment event)."""
        a = self.of("assignment")
        return set(a[-1]["partitions"]) if a else None

    def records(self):
        return [tuple(r) for e in self.of("records") for r in e["records"]]

    def committed(self):
        out = {}
        for e in self.of("committed"):
            out.update({int(p): o for p, o in e["offsets"].items()})
        return out

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def close(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        assert self.of("closed"), f"{self.name} did not close cleanly"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stderr.close()


@pytest.fixture
def members():
    made = []
    yield made
    for m in made:
        m.stop()


def split_ok(group, expect=ALL):
    """Every partition held by exactly one member, every member holding some."""
    held = [m.assignment() for m in group]
    if any(not h for h in held):
        return False
    return sum(len(h) for h in held) == len(expect) and set().union(*held) == expect


def fill(broker, topic, per_partition, prefix="v"):
    for p in range(PARTITIONS):
        produce_values(broker, topic, [f"{prefix}{p}-{i}".encode() for i in range(per_partition)], partition=p)


def group_topic(make_broker, **settings):
    broker = make_broker(settings=dict(FAST, **settings))
    topic = unique("grp")
    create_topic(broker, topic, PARTITIONS)
    return broker, topic


# ---------------------------------------------------------------------------------------------
# Real clients
# ---------------------------------------------------------------------------------------------


def test_three_clients_split_partitions_then_a_crash_and_a_close_move_them(make_broker, members):
    """confluent-kafka, kafka-python and aiokafka in one group: the six partitions are split
    with no overlap and every record is read. A member killed with SIGKILL is expired after its
    session timeout (not before) and its partitions move to the others; a member closed
    gracefully leaves at once, well before its session timeout."""
    broker, topic = group_topic(make_broker)
    group = unique("g3")
    session = 15000
    cf, kp, aio = (Member(broker, c, group, topic, session_ms=session) for c in ("confluent", "kafka-python", "aiokafka"))
    members += [cf, kp, aio]
    assert wait_for(lambda: split_ok([cf, kp, aio]), 60), [m.assignment() for m in members]
    # Filled only once split: a member that joined first may hold all six partitions for a
    # while, and what it read then would not be its partitions' records after the split.
    fill(broker, topic, 10)
    everything = {f"v{p}-{i}" for p in range(PARTITIONS) for i in range(10)}
    assert wait_for(lambda: {v for m in members for _, _, v in m.records()} == everything, 30)
    # Each record was read by the member holding its partition.
    for m in members:
        assert {p for p, _, _ in m.records()} <= m.assignment()

    kp.kill()
    killed = time.time()
    assert wait_for(lambda: split_ok([cf, aio]), session / 1000 + 30), [cf.assignment(), aio.assignment()]
    moved = time.time() - killed
    # kafka-python heartbeats every second: its session ends 14-15 s after the kill.
    assert moved >= session / 1000 - 4, f"partitions moved {moved:.1f}s after the kill, before the session timeout"
    assert "failed (session timeout)" in broker.log()

    aio.close()
    closed = time.time()
    assert wait_for(lambda: cf.assignment() == ALL, 20), cf.assignment()
    assert time.time() - closed < 6, "a graceful close must rebalance at once, not after the session timeout"
    assert f"left group {group}" in broker.log()


def test_committed_offsets_survive_a_restart_and_consumers_resume_from_them(make_broker, members):
    broker, topic = group_topic(make_broker)
    fill(broker, topic, 10, prefix="old")
    group = unique("gc")
    first = Member(broker, "confluent", group, topic, commit=True)
    members.append(first)
    assert wait_for(lambda: first.committed() == {p: 10 for p in ALL}, 60), first.committed()
    first.close()

    broker.restart()
    fill(broker, topic, 5, prefix="new")
    # Another client resumes from the offsets committed before the restart.
    second = Member(broker, "kafka-python", group, topic, commit=True)
    members.append(second)
    assert wait_for(lambda: len(second.records()) >= 30, 60), len(second.records())
    time.sleep(1)
    got = second.records()
    assert sorted((p, o) for p, o, _ in got) == sorted((p, o) for p in ALL for o in range(10, 15))
    assert all(v.startswith("new") for _, _, v in got)
    assert wait_for(lambda: second.committed() == {p: 15 for p in ALL}, 20)


def test_a_static_member_restarting_gets_its_partitions_back_without_a_rebalance(make_broker, members):
    broker, topic = group_topic(make_broker)
    group = unique("gs")
    a, b, c = (Member(broker, "confluent", group, topic, name=f"s{x}", instance=f"inst-{x}", session_ms=30000)
               for x in "abc")
    members += [a, b, c]
    assert wait_for(lambda: split_ok([a, b, c]), 60)
    before = a.assignment()
    events_b, events_c = len(b.of("assignment")), len(c.of("assignment"))
    rebalances = broker.log().count(f"preparing to rebalance group {group}")

    a.kill()  # a static member does not leave: its session would last 30 s
    again = Member(broker, "confluent", group, topic, name="sa2", instance="inst-a", session_ms=30000)
    members.append(again)
    assert wait_for(lambda: again.assignment(), 30)
    assert again.assignment() == before
    time.sleep(3)
    assert (len(b.of("assignment")), len(c.of("assignment"))) == (events_b, events_c), "other members saw a rebalance"
    assert broker.log().count(f"preparing to rebalance group {group}") == rebalances
    assert "rejoined without changing the selected protocol" in broker.log()


def test_cooperative_sticky_rebalances_incrementally(make_broker, members):
    """librdkafka's cooperative-sticky assignor: when a third member joins, the first two give
    up only the partitions that move and keep consuming the rest (an eager rebalance would
    revoke everything)."""
    broker, topic = group_topic(make_broker)
    group = unique("gcoop")
    a, b = (Member(broker, "confluent", group, topic, name=n, strategy="cooperative-sticky") for n in ("ca", "cb"))
    members += [a, b]
    assert wait_for(lambda: split_ok([a, b]), 60)
    first = {m.name: (m.assignment(), len(m.of("assignment"))) for m in (a, b)}
    c = Member(broker, "confluent", group, topic, name="cc", strategy="cooperative-sticky")
    members.append(c)
    assert wait_for(lambda: split_ok([a, b, c]), 60), [m.assignment() for m in members]
    for m in (a, b):
        held, seen = first[m.name]
        later = m.of("assignment")[seen:]
        assert later, f"{m.name} saw no rebalance"
        assert all(e["partitions"] for e in later), f"{m.name} lost all its partitions: {later}"
        assert all(not e["delta"] for e in later if e["change"] == "assigned"), later  # it only gave some away
        assert m.assignment() < held  # it kept a subset
    assert len(c.assignment()) == 2


def test_kcat_consumes_in_a_group_and_commits(make_broker):
    broker, topic = group_topic(make_broker)
    fill(broker, topic, 3)
    group = unique("gk")

    def kcat():
        r = subprocess.run(["kcat", "-b", broker.bootstrap, "-G", group, "-X", "auto.offset.reset=earliest",
                            "-e", "-q", "-f", "%p:%o:%s\\n", topic], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return sorted(r.stdout.split())

    assert kcat() == sorted(f"{p}:{i}:v{p}-{i}" for p in range(PARTITIONS) for i in range(3))
    # kcat committed on close: the next run has nothing left to read.
    assert kcat() == []
    produce_values(broker, topic, [b"late"], partition=4)
    assert kcat() == ["4:3:late"]


def test_admin_clients_see_a_live_group(make_broker, members):
    """DescribeGroups, ListGroups, DeleteGroups and OffsetDelete through confluent-kafka's and
    kafka-python's admin clients while a consumer is in the group, and after it left."""
    from confluent_kafka import ConsumerGroupState
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP
    broker, topic = group_topic(make_broker)
    other = unique("other")
    create_topic(broker, other, 1)
    group = unique("ga")
    m = Member(broker, "confluent", group, topic, name="adm")
    members.append(m)
    assert wait_for(lambda: m.assignment() == ALL, 60)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    kadmin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        d = admin.describe_consumer_groups([group], request_timeout=10)[group].result(30)
        assert d.state == ConsumerGroupState.STABLE and not d.is_simple_consumer_group
        assert d.partition_assignor in ("range", "roundrobin")
        (member,) = d.members
        assert member.client_id == "cfk-adm" and member.host == "/127.0.0.1"
        assert {tp.partition for tp in member.assignment.topic_partitions} == ALL
        stable = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}, request_timeout=10).result(30)
        assert group in {g.group_id for g in stable.valid}

        with pytest.raises(KafkaException) as e:
            admin.delete_consumer_groups([group], request_timeout=10)[group].result(30)
        assert e.value.args[0].code() == NON_EMPTY_GROUP

        result = kadmin.delete_group_offsets(group, [KTP(topic, 0), KTP(other, 0)])
        assert result[KTP(topic, 0)].errno == GROUP_SUBSCRIBED_TO_TOPIC
        assert result[KTP(other, 0)].errno == NONE

        m.close()
        assert wait_for(lambda: admin.describe_consumer_groups([group], request_timeout=10)[group].result(30).state
                        == ConsumerGroupState.EMPTY, 20)
        assert {"group_id": group, "protocol_type": "consumer", "group_state": "Empty"} in kadmin.list_groups()
        admin.delete_consumer_groups([group], request_timeout=10)[group].result(30)
        assert group not in {g.group_id for g in admin.list_consumer_groups(request_timeout=10).result(30).valid}
    finally:
        kadmin.close()


# ---------------------------------------------------------------------------------------------
# Over the wire: what clients cannot be made to send
# ---------------------------------------------------------------------------------------------


def commit_v2(c, group, generation, member, topic, offset):
    body = (string(group) + i32(generation) + string(member) + i64(-1)
            + array([topic], lambda t: string(t) + array([0], lambda p: i32(p) + i64(offset) + nstring(None))))
    r = Reader(c.request(8, 2, body))
    (res,) = r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16()))))
    return res[1][0][1]


def test_join_sync_heartbeat_and_commits_over_the_wire(make_broker):
    """The coordinator's answers that clients only see in corner cases: INVALID_SESSION_TIMEOUT,
    ILLEGAL_GENERATION and UNKNOWN_MEMBER_ID for joins, heartbeats and commits, simple
    (generation -1) commits refused while the group has members, FENCED_INSTANCE_ID."""
    broker, topic = group_topic(make_broker)
    c = Conn(broker.port)
    try:
        group = unique("gw")
        assert group_join_v5(c, group, session=5999)["error"] == INVALID_SESSION_TIMEOUT
        assert group_join_v5(c, group, member="ghost")["error"] == UNKNOWN_MEMBER_ID
        member, gen = group_member(c, group)
        assert group_heartbeat_v3(c, group, gen, member) == NONE
        assert group_heartbeat_v3(c, group, gen + 1, member) == ILLEGAL_GENERATION
        assert group_heartbeat_v3(c, group, gen, "ghost") == UNKNOWN_MEMBER_ID
        assert group_sync_v3(c, group, gen - 1, member) == (ILLEGAL_GENERATION, b"")
        assert commit_v2(c, group, gen, member, topic, 5) == NONE
        assert commit_v2(c, group, gen - 1, member, topic, 6) == ILLEGAL_GENERATION
        assert commit_v2(c, group, gen, "ghost", topic, 6) == UNKNOWN_MEMBER_ID
        assert commit_v2(c, group, -1, "", topic, 6) == UNKNOWN_MEMBER_ID  # the group has a member
        assert commit_v2(c, unique("nogroup"), 3, "m", topic, 6) == ILLEGAL_GENERATION
        # A static member replaced by a new instance of itself is fenced.
        sgroup = unique("gws")
        old, sgen = group_member(c, sgroup, instance="i1")
        new = group_join_v5(c, sgroup, instance="i1")
        assert new["error"] == NONE and new["member"] != old and new["generation"] == sgen
        assert group_heartbeat_v3(c, sgroup, sgen, old, instance="i1") == FENCED_INSTANCE_ID
        assert group_sync_v3(c, sgroup, sgen, new["member"], instance="i1") == (NONE, b"mine")
    finally:
        c.close()
    committed = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        assert committed.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 5
    finally:
        committed.close()


def test_a_graceful_shutdown_answers_a_parked_join_not_coordinator(make_broker):
    """A JoinGroup waiting for the join phase (here a 60 s initial delay) does not hold up a
    SIGTERM: the coordinator unloads its groups and answers it NOT_COORDINATOR, as Kafka's
    GroupMetadataManager.onUnloaded does, so the client looks for the coordinator again."""
    broker = make_broker(settings={"group.initial.rebalance.delay.ms": "60000"})
    c = Conn(broker.port, timeout=30)
    try:
        first = group_join_v5(c, "parked")
        assert first["error"] == MEMBER_ID_REQUIRED
        answer = {}
        t = threading.Thread(target=lambda: answer.update(group_join_v5(c, "parked", member=first["member"])))
        t.start()
        assert wait_for(lambda: "preparing to rebalance group parked" in broker.log(), 10)
        assert not answer, "answered before the initial delay"
        started = time.time()
        assert broker.stop() == 0
        t.join(10)
        assert time.time() - started < 10
        assert answer["error"] == NOT_COORDINATOR and answer["member"] == first["member"]
    finally:
        c.close()


def test_tern_groups_commands_on_a_live_group(make_broker, members):
    """`tern groups` against the real coordinator: describe lists the member and its decoded
    assignment, reset-offsets and delete refuse while it is active and work once it left."""
    from test_cli import failed, ok
    from test_cli import tern as tern_cli
    broker, topic = group_topic(make_broker)
    fill(broker, topic, 3)
    group = unique("gcli")
    m = Member(broker, "confluent", group, topic, name="cli", commit=True)
    members.append(m)
    assert wait_for(lambda: m.assignment() == ALL, 60)
    assert wait_for(lambda: sum(m.committed().values()) == 3 * PARTITIONS, 30), m.committed()

    out = ok(tern_cli(broker, "groups", "describe", group))
    assert "Stable" in out, out
    rows = [line.split() for line in out.splitlines() if line.startswith(group + " ")]
    table = {(r[1], int(r[2])): r for r in rows if len(r) >= 9 and r[1] == topic}
    assert set(p for _, p in table) == ALL, out
    for (_, p), r in table.items():
        assert (r[3], r[4], r[5]) == ("3", "3", "0"), r  # committed, log end, lag
        assert r[8] == "cfk-cli", r  # the consumer's client id

    failed(tern_cli(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute"), "active")
    failed(tern_cli(broker, "groups", "delete", group), "NON_EMPTY_GROUP")

    m.close()
    assert wait_for(lambda: "Empty" in ok(tern_cli(broker, "groups", "describe", group)), 20)
    ok(tern_cli(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute"))
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in ALL], timeout=10)
        assert {tp.offset for tp in got} == {0}
    finally:
        c.close()
    ok(tern_cli(broker, "groups", "delete", group))
    assert group not in ok(tern_cli(broker, "groups", "list"))
