"""Consumer groups with the KIP-848 `consumer` protocol: confluent-kafka (librdkafka) with
group.protocol=consumer against the real broker, each consumer in its own process
(group_consumer.py --protocol consumer); and raw ConsumerGroupHeartbeat / OffsetCommit v9 /
OffsetFetch v9 requests for the errors a client cannot be made to provoke.

The broker runs with group.consumer.session.timeout.ms=10000 and a 1 s heartbeat interval so
expiry tests are quick.
"""
import subprocess
import time
import uuid

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from conftest import TERN
from kafka_wire import Conn, Enc, create_topic, group_join_v5, produce_values, versioned_request
from test_groups import ALL, PARTITIONS, Member, fill, members, split_ok, unique, wait_for  # noqa: F401 (members: fixture)

SESSION_MS = 10000
KIP848 = {"group.consumer.session.timeout.ms": str(SESSION_MS), "group.consumer.heartbeat.interval.ms": "1000"}

# Error codes (org.apache.kafka.common.protocol.Errors).
NONE, UNSUPPORTED_VERSION, INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER_ID, INVALID_REQUEST = 0, 35, 23, 25, 42
GROUP_ID_NOT_FOUND, FENCED_INSTANCE_ID = 69, 82
FENCED_MEMBER_EPOCH, UNRELEASED_INSTANCE_ID, UNSUPPORTED_ASSIGNOR, STALE_MEMBER_EPOCH = 110, 111, 112, 113
INVALID_REGULAR_EXPRESSION = 128


def kip848_topic(make_broker, **settings):
    broker = make_broker(settings=dict(KIP848, **settings))
    topic = unique("kip848")
    create_topic(broker, topic, PARTITIONS)
    return broker, topic


def consumer(broker, group, topic, name, **kw):
    return Member(broker, "confluent", group, topic, name=name, protocol="consumer", **kw)


# ---------------------------------------------------------------------------------------------
# confluent-kafka with group.protocol=consumer
# ---------------------------------------------------------------------------------------------


def test_consumers_split_partitions_and_a_close_and_a_kill_move_them(make_broker, members):
    """Two, then three consumers split six partitions with no overlap and full coverage, and
    read every record. One closing leaves at once; one killed with SIGKILL is expired after the
    broker's session timeout (not before) and its partitions move."""
    broker, topic = kip848_topic(make_broker)
    fill(broker, topic, 10)
    group = unique("k2")
    a, b = consumer(broker, group, topic, "a"), consumer(broker, group, topic, "b")
    members += [a, b]
    assert wait_for(lambda: split_ok([a, b]), 60), [a.assignment(), b.assignment()]
    c = consumer(broker, group, topic, "c")
    members.append(c)
    assert wait_for(lambda: split_ok([a, b, c]) and all(len(m.assignment()) == 2 for m in (a, b, c)), 60), \
        [m.assignment() for m in (a, b, c)]
    everything = {f"v{p}-{i}" for p in range(PARTITIONS) for i in range(10)}
    assert wait_for(lambda: {v for m in members for _, _, v in m.records()} == everything, 30)
    assert "epoch bumped" in broker.log()

    c.close()
    closed = time.time()
    assert wait_for(lambda: split_ok([a, b]), 20), [a.assignment(), b.assignment()]
    assert time.time() - closed < SESSION_MS / 1000 - 2, "a graceful leave must move partitions at once"
    assert "left the group" in broker.log()

    b.kill()
    killed = time.time()
    assert wait_for(lambda: a.assignment() == ALL, SESSION_MS / 1000 + 30), a.assignment()
    moved = time.time() - killed
    assert moved >= SESSION_MS / 1000 - 2, f"partitions moved {moved:.1f}s after the kill, before the session timeout"
    assert "session expired" in broker.log()


def test_commits_survive_a_restart(make_broker, members):
    broker, topic = kip848_topic(make_broker)
    fill(broker, topic, 10, prefix="old")
    group = unique("kc")
    first = consumer(broker, group, topic, "first", commit=True)
    members.append(first)
    assert wait_for(lambda: first.committed() == {p: 10 for p in ALL}, 60), first.committed()
    first.close()

    broker.restart()
    fill(broker, topic, 5, prefix="new")
    second = consumer(broker, group, topic, "second", commit=True)
    members.append(second)
    assert wait_for(lambda: len(second.records()) >= 30, 60), len(second.records())
    time.sleep(1)
    got = second.records()
    assert sorted((p, o) for p, o, _ in got) == sorted((p, o) for p in ALL for o in range(10, 15))
    assert wait_for(lambda: second.committed() == {p: 15 for p in ALL}, 20)


def test_admin_describe_consumer_groups_shows_members_and_assignments(make_broker, members):
    broker, topic = kip848_topic(make_broker)
    group = unique("kd")
    a, b = consumer(broker, group, topic, "a"), consumer(broker, group, topic, "b")
    members += [a, b]
    assert wait_for(lambda: split_ok([a, b]), 60)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    def described():
        return admin.describe_consumer_groups([group])[group].result(10)

    assert wait_for(lambda: described().state == ConsumerGroupState.STABLE, 20), described().state
    d = described()
    assert d.group_id == group
    assert str(d.type).endswith("CONSUMER"), d.type
    assert d.partition_assignor == "uniform"
    assert sorted(m.client_id for m in d.members) == ["cfk-a", "cfk-b"]
    by_client = {m.client_id: {tp.partition for tp in m.assignment.topic_partitions} for m in d.members}
    assert by_client["cfk-a"] == a.assignment() and by_client["cfk-b"] == b.assignment()
    assert all(tp.topic == topic for m in d.members for tp in m.assignment.topic_partitions)
    # The classic listing reports it too, and DescribeGroups carries each member's assignment
    # (as consumer-protocol bytes) for classic tools such as `tern groups describe`.
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(10).valid}
    assert listed[group].state == ConsumerGroupState.STABLE
    out = subprocess.run([TERN, "groups", "describe", group, "--bootstrap-server", broker.bootstrap],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    held = {}
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) == 9 and f[0] == group and f[1] == topic:
            held.setdefault(f[8], set()).add(int(f[2]))
    assert held == {"cfk-a": a.assignment(), "cfk-b": b.assignment()}, out.stdout


def test_a_regex_subscription_picks_up_a_topic_created_later(make_broker, members):
    broker = make_broker(settings=KIP848)
    prefix = "rx" + uuid.uuid4().hex[:6]
    create_topic(broker, prefix + "-one", 2)
    create_topic(broker, "other-" + prefix, 2)
    group = unique("kr")
    m = Member(broker, "confluent", group, f"^{prefix}-.*", name="rx", protocol="consumer")
    members.append(m)
    assert wait_for(lambda: m.assignment() == {0, 1}, 60), m.assignment()
    create_topic(broker, prefix + "-two", 3)
    fill_topic = prefix + "-two"
    produce_values(broker, fill_topic, [b"late"], partition=2)
    assert wait_for(lambda: any(v == "late" for _, _, v in m.records()), 60), m.records()


# ---------------------------------------------------------------------------------------------
# Raw wire
# ---------------------------------------------------------------------------------------------


def cgh(c, group, member, epoch, topics=None, regex=None, owned=None, instance=None, rebalance=None,
        assignor=None, version=1):
    """ConsumerGroupHeartbeat v0/v1 → (error, member id, epoch, assignment or None)."""
    if rebalance is None:
        rebalance = 30000 if epoch == 0 else -1
    if epoch == 0 and owned is None:
        owned = []
    e = (Enc(True).str(group).str(member).i32(epoch).nstr(instance).nstr(None).i32(rebalance)
         .array(topics, lambda e, t: e.str(t)))
    if version >= 1:
        e.nstr(regex)
    e.nstr(assignor).array(owned, lambda e, tp: e.uuid(tp[0]).array(tp[1], lambda e, p: e.i32(p)).tags()).tags()
    d = versioned_request(c, 68, version, e, True)
    d.i32()
    error, _msg, mid, mepoch, _hb = d.i16(), d.nstring(), d.nstring(), d.i32(), d.i32()
    assignment = None
    if d.i8() >= 0:
        assignment = d.array(lambda d: (d.uuid(), d.array(lambda d: d.i32()), d.tags())[:2])
        d.tags()
    d.end()
    return error, mid, mepoch, assignment


def commit_v9(c, group, member, epoch, topic):
    e = (Enc(True).str(group).i32(epoch).str(member).nstr(None)
         .array([topic], lambda e, t: e.str(t).array([0], lambda e, p: e.i32(p).i64(1).i32(-1).nstr(None).tags()).tags()).tags())
    d = versioned_request(c, 8, 9, e, True)
    d.i32()
    return d.array(lambda d: (d.nstring(), d.array(lambda d: (d.i32(), d.i16(), d.tags())[1]), d.tags())[1])[0][0]


def fetch_v9(c, group, member, epoch):
    e = (Enc(True).array([group], lambda e, g: e.str(g).nstr(member).i32(epoch).array(None, None).tags()).bool(False).tags())
    d = versioned_request(c, 9, 9, e, True)
    d.i32()
    groups = d.array(lambda d: (d.nstring(), d.array(lambda d: (d.nstring(), d.array(lambda d: (d.i32(), d.i64(), d.i32(), d.nstring(), d.i16(), d.tags())), d.tags())), d.i16(), d.tags()))
    return groups[0][2]


def test_heartbeat_errors_over_the_wire(make_broker):
    broker = make_broker(settings=KIP848)
    topic = unique("kw")
    create_topic(broker, topic, 2)
    c = Conn(broker.port)
    g = unique("gw")
    # Joining without a rebalance timeout, an unknown assignor, a bad regex, an epoch below -2.
    assert cgh(c, g, "m1", 0, [topic], rebalance=-1)[0] == INVALID_REQUEST
    assert cgh(c, g, "m1", 0, [topic], assignor="sticky")[0] == UNSUPPORTED_ASSIGNOR
    assert cgh(c, g, "m1", 0, None, regex="(unclosed")[0] == INVALID_REGULAR_EXPRESSION
    assert cgh(c, g, "m1", -3, [topic])[0] == INVALID_REQUEST
    assert cgh(c, g, "", 0, [topic])[0] == INVALID_REQUEST  # v1: the client makes the member id
    # A member joins: epoch 1 with both partitions.
    err, mid, epoch, assignment = cgh(c, g, "m1", 0, [topic])
    assert (err, mid, epoch) == (NONE, "m1", 1)
    assert sorted(assignment[0][1]) == [0, 1]
    tid = assignment[0][0]
    # Ahead of the coordinator, unknown member, older epoch owning partitions it lacks.
    assert cgh(c, g, "m1", 5, owned=[(tid, [0, 1])])[0] == FENCED_MEMBER_EPOCH
    assert cgh(c, g, "nobody", 1)[0] == UNKNOWN_MEMBER_ID
    assert cgh(c, unique("none"), "m1", 3)[0] == UNKNOWN_MEMBER_ID
    # A v0 member without an id is given one.
    err, mid0, _, _ = cgh(c, g, "", 0, [topic], version=0)
    assert err == NONE and len(mid0) == 36
    # OffsetCommit/OffsetFetch v9: the member's current epoch only.
    m1_epoch = cgh(c, g, "m1", 1, owned=[(tid, [0, 1])])[2]
    assert commit_v9(c, g, "m1", m1_epoch, topic) == NONE
    assert commit_v9(c, g, "m1", m1_epoch + 7, topic) == STALE_MEMBER_EPOCH
    assert commit_v9(c, g, "ghost", 1, topic) == UNKNOWN_MEMBER_ID
    assert fetch_v9(c, g, "m1", m1_epoch + 7) == STALE_MEMBER_EPOCH
    assert fetch_v9(c, g, "m1", m1_epoch) == NONE
    # Static members: a second process with a live instance id; the old id after a takeover.
    gs = unique("gs")
    assert cgh(c, gs, "s1", 0, [topic], instance="inst")[0] == NONE
    assert cgh(c, gs, "s2", 0, [topic], instance="inst")[0] == UNRELEASED_INSTANCE_ID
    assert cgh(c, gs, "s1", -2, instance="inst")[:3] == (NONE, "s1", -2)
    assert cgh(c, gs, "s2", 0, [topic], instance="inst")[0] == NONE
    assert cgh(c, gs, "s1", 1, instance="inst")[0] == FENCED_INSTANCE_ID
    # Protocol clashes: a classic JoinGroup into a consumer group, and back.
    assert group_join_v5(c, g)["error"] == INCONSISTENT_GROUP_PROTOCOL
    gc = unique("gc")
    assert group_join_v5(c, gc, instance="x")["error"] == NONE
    assert cgh(c, gc, "m1", 0, [topic])[0] == GROUP_ID_NOT_FOUND
    # Leaving: -1, then the member is unknown.
    assert cgh(c, g, "m1", -1)[:3] == (NONE, "m1", -1)
    assert cgh(c, g, "m1", -1)[0] == UNKNOWN_MEMBER_ID
    c.close()


def test_the_consumer_protocol_can_be_disabled(make_broker):
    broker = make_broker(settings={"group.coordinator.rebalance.protocols": "classic"})
    c = Conn(broker.port)
    assert cgh(c, unique("g"), "m1", 0, ["t"])[0] == UNSUPPORTED_VERSION
    c.close()


def test_offset_metadata_over_the_limit_is_refused_per_partition(broker):
    """OFFSET_METADATA_TOO_LARGE (12) for the partition whose metadata is over
    offset.metadata.max.bytes (4096); the other partition of the same commit is stored."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    topic = unique("meta")
    create_topic(broker, topic, 2)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "enable.auto.commit": False})
    try:
        with_big = [TopicPartition(topic, 0, 5, metadata="x" * 4097), TopicPartition(topic, 1, 7, metadata="ok")]
        try:
            got = c.commit(offsets=with_big, asynchronous=False)
        except KafkaException as e:
            got = e.args[0]
        committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        assert [p.offset for p in committed] == [-1001, 7], committed
        assert "OFFSET_METADATA_TOO_LARGE" in str(got) or any(p.error and p.error.code() == 12 for p in got), got
    finally:
        c.close()
