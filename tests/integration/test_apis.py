"""Group, transaction, ACL and cluster APIs: answered for real where they can be today (classic
groups, transactions, cluster, producers), and as Apache Kafka answers while the feature behind
each is not there yet (KIP-848 groups: issue 7, ACLs and reassignment: issue 9). Transactions
driven by real clients are in test_transactions.py.

Part 1 drives every one of these APIs over a raw socket at its lowest and highest version
(requests built and responses decoded by hand in kafka_wire.py, classic or flexible encoding
per Kafka's message JSON), checks the error codes and contents, and checks that the connection
still answers afterwards. Part 2 drives the same features with real clients: confluent-kafka's
AdminClient and kafka-python's KafkaAdminClient.
"""
import struct
import time
import uuid
from types import SimpleNamespace

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType)

from conftest import Broker
from kafka_wire import (API_VERSIONS, Conn, Enc, Reader, api_versions_ok, array, consume_all, create_topic, fetch,
                        group_member, i32, i64, nstring, parse_api_versions_v0, produce_values, string,
                        versioned_request)

# Error codes (org.apache.kafka.common.protocol.Errors).
NONE, UNKNOWN_TOPIC_OR_PARTITION, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR = 0, 3, 15, 16
INVALID_TOPIC_EXCEPTION, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID = 17, 22, 23, 24
UNKNOWN_MEMBER_ID, INVALID_SESSION_TIMEOUT, MEMBER_ID_REQUIRED = 25, 26, 79
ILLEGAL_SASL_STATE, UNSUPPORTED_VERSION, INVALID_REPLICA_ASSIGNMENT, INVALID_REQUEST = 34, 35, 39, 42
SECURITY_DISABLED, OPERATION_NOT_ATTEMPTED, GROUP_ID_NOT_FOUND = 54, 55, 69
NO_REASSIGNMENT_IN_PROGRESS, TRANSACTIONAL_ID_NOT_FOUND = 85, 105
MISMATCHED_ENDPOINT_TYPE, UNSUPPORTED_ENDPOINT_TYPE = 114, 115
OPS_OMITTED = -2**31  # authorized operations not asked for

# AclOperation codes → the bitfields Kafka reports with no authorizer (AclEntry.supportedOperations).
READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE = \
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12


def bits(*ops):
    return sum(1 << o for o in ops)


CLUSTER_OPS = bits(CREATE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE, ALTER, DESCRIBE)
TOPIC_OPS = bits(READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS)
GROUP_OPS = bits(READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS)

# api key: (name, lowest, highest served version, first flexible version per Kafka's JSON)
APIS = {
    11: ("JoinGroup", 0, 9, 6),
    12: ("Heartbeat", 0, 4, 4),
    13: ("LeaveGroup", 0, 5, 4),
    14: ("SyncGroup", 0, 5, 4),
    15: ("DescribeGroups", 0, 5, 5),
    16: ("ListGroups", 0, 4, 3),
    17: ("SaslHandshake", 0, 1, None),
    24: ("AddPartitionsToTxn", 0, 5, 3),
    25: ("AddOffsetsToTxn", 0, 3, 3),
    26: ("EndTxn", 0, 4, 3),
    28: ("TxnOffsetCommit", 0, 4, 3),
    29: ("DescribeAcls", 1, 3, 2),
    30: ("CreateAcls", 1, 3, 2),
    31: ("DeleteAcls", 1, 3, 2),
    35: ("DescribeLogDirs", 1, 4, 2),
    36: ("SaslAuthenticate", 0, 2, 2),
    42: ("DeleteGroups", 0, 2, 2),
    45: ("AlterPartitionReassignments", 0, 0, 0),
    46: ("ListPartitionReassignments", 0, 0, 0),
    47: ("OffsetDelete", 0, 0, None),
    60: ("DescribeCluster", 0, 1, 0),
    61: ("DescribeProducers", 0, 0, 0),
    65: ("DescribeTransactions", 0, 0, 0),
    66: ("ListTransactions", 0, 1, 0),
    68: ("ConsumerGroupHeartbeat", 0, 1, 0),
    69: ("ConsumerGroupDescribe", 0, 1, 0),
    75: ("DescribeTopicPartitions", 0, 0, 0),
}
# The other served APIs, at the versions the protocol-coverage issue names.
EARLIER = {0: (0, 11), 1: (4, 12), 2: (1, 8), 3: (0, 12), 8: (2, 9), 9: (1, 9), 10: (0, 4), 18: (0, 4),
           19: (2, 7), 20: (1, 6), 21: (0, 2), 22: (0, 5), 23: (2, 4), 32: (1, 4), 33: (0, 2), 37: (0, 3),
           44: (0, 1)}

NODE_ID = 1  # the broker's default node.id
MISSING = "apis-no-such-topic"


def flexible(api, v):
    first = APIS[api][3]
    return first is not None and v >= first


def enc(api, v):
    return Enc(flexible(api, v))


def send(conn, api, v, e):
    return versioned_request(conn, api, v, e, flexible(api, v))


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"

# ---------------------------------------------------------------------------------------------
# Helpers over classic versions (OffsetCommit v2, OffsetFetch v1, Metadata v2)
# ---------------------------------------------------------------------------------------------


def commit_offsets(port, group, topic, offsets):
    """Commits {partition: offset} for a standalone group (generation -1) with OffsetCommit v2."""
    c = Conn(port)
    try:
        body = (string(group) + i32(-1) + string("") + i64(-1) +
                array([topic], lambda t: string(t) + array(sorted(offsets.items()),
                                                           lambda p: i32(p[0]) + i64(p[1]) + nstring(None))))
        r = Reader(c.request(8, 2, body))
        result = r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16()))))
        assert r.remaining() == 0
        assert all(e == NONE for _, parts in result for _, e in parts), result
    finally:
        c.close()


def fetch_offsets(port, group, topic, partitions):
    """{partition: committed offset (-1: none)} from OffsetFetch v1."""
    c = Conn(port)
    try:
        body = string(group) + array([topic], lambda t: string(t) + array(partitions, i32))
        r = Reader(c.request(9, 1, body))
        out = {}
        for _ in range(r.i32()):
            r.string()
            for _ in range(r.i32()):
                p, off, _meta, err = r.i32(), r.i64(), r.nstring(), r.i16()
                assert err == NONE
                out[p] = off
        assert r.remaining() == 0
        return out
    finally:
        c.close()


def metadata_cluster_id(port):
    """The cluster id of a Metadata v2 response."""
    c = Conn(port)
    try:
        r = Reader(c.request(3, 2, array([], string)))
        r.array(lambda r: (r.i32(), r.string(), r.i32(), r.nstring()))
        cluster_id = r.nstring()
        r.i32()
        r.array(lambda r: None)
        return cluster_id
    finally:
        c.close()


def stored_batch_bytes(port, topic, partition):
    """The bytes of every record batch of a partition, read back with Fetch v11 (a fetch may
    stop at an object boundary: keep going from the end of the last batch)."""
    c = Conn(port)
    try:
        total, offset = 0, 0
        while True:
            p = fetch(c, topic, partition, offset)
            assert p["error"] == NONE
            if offset >= p["high_watermark"]:
                return total
            data = p["records"] or b""
            pos, progressed = 0, False
            while len(data) - pos >= 12:
                base, length = struct.unpack(">qi", data[pos:pos + 12])
                if len(data) - pos < 12 + length:
                    break
                last_delta = struct.unpack(">i", data[pos + 23:pos + 27])[0]
                if base >= offset:
                    total += 12 + length
                    offset = base + last_delta + 1
                    progressed = True
                pos += 12 + length
            assert progressed, f"fetch at {offset} returned no whole batch"
    finally:
        c.close()

# ---------------------------------------------------------------------------------------------
# One broker for the wire tests, with a topic, an idempotent producer's records and a group
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # New groups form after 100 ms instead of group.initial.rebalance.delay.ms's 3 s.
    b = Broker(str(tmp_path_factory.mktemp("tern-apis")), {"group.initial.rebalance.delay.ms": "100"}).start()
    topic = "apis-main"
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for t, n in ((topic, 3), ("apis-dtp-a", 3), ("apis-dtp-b", 2)):
        admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=1)])[t].result(30)
    # An idempotent producer writes five records to partition 0 (sequences 0..4).
    before = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 50})
    for i in range(5):
        p.produce(topic, f"v{i}".encode(), partition=0)
    assert p.flush(30) == 0
    after = int(time.time() * 1000)
    group = "apis-group"
    commit_offsets(b.port, group, topic, {0: 3, 1: 1})
    yield SimpleNamespace(broker=b, port=b.port, topic=topic, group=group, produced=5,
                          produced_between=(before, after))
    b.stop()

# ---------------------------------------------------------------------------------------------
# Part 1: every API over the wire, lowest and highest version
# ---------------------------------------------------------------------------------------------


def test_api_versions_advertises_exactly_these_versions(env):
    c = Conn(env.port)
    error, keys = parse_api_versions_v0(c.request(API_VERSIONS, 0, b""))
    c.close()
    assert error == NONE
    for api, (name, lo, hi, _) in APIS.items():
        assert keys.get(api) == (lo, hi), f"{name} ({api}) advertised as {keys.get(api)}, expected {(lo, hi)}"
    for api, versions in EARLIER.items():
        assert keys.get(api) == versions, f"api {api} advertised as {keys.get(api)}, expected {versions}"
    assert set(keys) == set(APIS) | set(EARLIER), f"unexpected APIs: {sorted(set(keys) - set(APIS) - set(EARLIER))}"


# ---- classic group membership: the group coordinator ----

def join_group(c, v, group, member="", session=10000):
    e = enc(11, v).str(group).i32(session)
    if v >= 1:
        e.i32(30000)
    e.str(member)
    if v >= 5:
        e.nstr(None)
    e.str("consumer").array([("range", b"\x00\x01")], lambda e, p: e.str(p[0]).bytes(p[1]).tags())
    if v >= 8:
        e.nstr("testing")
    e.tags()
    d = send(c, 11, v, e)
    if v >= 2:
        d.i32()
    r = dict(error=d.i16(), generation=d.i32())
    r["protocol_type"] = d.nstring() if v >= 7 else None
    r["protocol_name"] = d.nstring()
    r["leader"] = d.string()
    r["skip"] = d.boolean() if v >= 9 else None
    r["member"] = d.string()
    r["members"] = d.array(lambda d: (d.string(), d.nstring() if v >= 5 else None, d.nbytes(), d.tags())[:3])
    d.end()
    return r


def check_join_group(env, c, v):
    group = unique("apis-join")
    assert join_group(c, v, group, session=1000)["error"] == INVALID_SESSION_TIMEOUT
    assert join_group(c, v, group, member="ghost")["error"] == UNKNOWN_MEMBER_ID  # no such group
    r = join_group(c, v, group)
    if v >= 4:
        # JoinGroupRequest.requiresKnownMemberId: the first join only gets a member id.
        assert (r["error"], r["generation"], r["members"]) == (MEMBER_ID_REQUIRED, -1, [])
        assert r["member"].startswith("tern-test-")
        r = join_group(c, v, group, member=r["member"])
    member = r["member"]
    assert r["error"] == NONE and member.startswith("tern-test-")
    assert (r["generation"], r["leader"], r["members"]) == (1, member, [(member, None, b"\x00\x01")])
    assert r["protocol_name"] == "range"
    assert r["protocol_type"] == ("consumer" if v >= 7 else None)
    assert r["skip"] == (False if v >= 9 else None)
    assert join_group(c, v, group, member="ghost")["error"] == UNKNOWN_MEMBER_ID


def sync_group(c, v, group, generation, member, assignments=(), protocol_type="consumer", protocol_name="range"):
    e = enc(14, v).str(group).i32(generation).str(member)
    if v >= 3:
        e.nstr(None)
    if v >= 5:
        e.nstr(protocol_type).nstr(protocol_name)
    e.array(list(assignments), lambda e, a: e.str(a[0]).bytes(a[1]).tags()).tags()
    d = send(c, 14, v, e)
    if v >= 1:
        d.i32()
    error = d.i16()
    names = (d.nstring(), d.nstring()) if v >= 5 else None
    assignment = d.nbytes()
    d.end()
    return error, assignment, names


def check_sync_group(env, c, v):
    group = unique("apis-sync")
    joined = join_group(c, 5, group)
    joined = join_group(c, 5, group, member=joined["member"])
    member, gen = joined["member"], joined["generation"]
    # The leader's SyncGroup carries the assignment and gets its own back.
    error, assignment, names = sync_group(c, v, group, gen, member, [(member, b"x")])
    assert (error, assignment) == (NONE, b"x")
    assert names == (("consumer", "range") if v >= 5 else None)
    assert sync_group(c, v, group, gen + 1, member)[:2] == (ILLEGAL_GENERATION, b"")
    assert sync_group(c, v, group, gen, "ghost")[:2] == (UNKNOWN_MEMBER_ID, b"")
    assert sync_group(c, v, unique("apis-nogroup"), 1, "ghost")[:2] == (UNKNOWN_MEMBER_ID, b"")
    if v >= 5:
        # KafkaApis checks the mandatory protocol type and name before the coordinator;
        # the coordinator checks they match the group's.
        assert sync_group(c, v, group, gen, member, protocol_type=None)[0] == INCONSISTENT_GROUP_PROTOCOL
        assert sync_group(c, v, group, gen, member, protocol_name="roundrobin")[0] == INCONSISTENT_GROUP_PROTOCOL


def heartbeat(c, v, group, generation, member):
    e = enc(12, v).str(group).i32(generation).str(member)
    if v >= 3:
        e.nstr(None)
    d = send(c, 12, v, e.tags())
    if v >= 1:
        d.i32()
    error = d.i16()
    d.end()
    return error


def check_heartbeat(env, c, v):
    group = unique("apis-hb")
    member, gen = group_member(c, group)
    assert heartbeat(c, v, group, gen, member) == NONE
    assert heartbeat(c, v, group, gen + 1, member) == ILLEGAL_GENERATION
    assert heartbeat(c, v, group, gen, "ghost") == UNKNOWN_MEMBER_ID
    assert heartbeat(c, v, unique("apis-nogroup"), gen, member) == UNKNOWN_MEMBER_ID
    assert heartbeat(c, v, "", gen, member) == INVALID_GROUP_ID


def leave_group(c, v, group, members):
    e = enc(13, v).str(group)
    if v <= 2:
        e.str(members[0])
    else:
        e.array(members, lambda e, m: (e.str(m).nstr(None), e.nstr("bye") if v >= 5 else None, e.tags()))
    d = send(c, 13, v, e.tags())
    if v >= 1:
        d.i32()
    error = d.i16()
    results = d.array(lambda d: (d.string(), d.nstring(), d.i16(), d.tags())[:3]) if v >= 3 else None
    d.end()
    return error, results


def check_leave_group(env, c, v):
    group = unique("apis-leave")
    member, _ = group_member(c, group)
    if v <= 2:
        # v0-2 carry one member; its error is the top-level error.
        assert leave_group(c, v, group, [member]) == (NONE, None)
        assert leave_group(c, v, group, [member]) == (UNKNOWN_MEMBER_ID, None)
    else:
        assert leave_group(c, v, group, [member, "m-2"]) == (NONE, [(member, None, NONE), ("m-2", None, UNKNOWN_MEMBER_ID)])
        assert leave_group(c, v, group, [member]) == (NONE, [(member, None, UNKNOWN_MEMBER_ID)])
    assert leave_group(c, v, "", [member])[0] == INVALID_GROUP_ID
    # The group is Empty now, with the protocol type of its last members.
    assert list_groups(c, 4)[group] == ("consumer", "Empty")


# ---- group administration: the groups that hold committed offsets, as Empty classic groups ----

def describe_groups(c, v, groups, include_ops):
    e = enc(15, v).array(groups, lambda e, g: e.str(g))
    if v >= 3:
        e.bool(include_ops)
    d = send(c, 15, v, e.tags())
    if v >= 1:
        d.i32()

    def group(d):
        g = (d.i16(), d.string(), d.string(), d.string(), d.string(),
             d.array(lambda d: (d.string(), d.nstring() if v >= 4 else None, d.string(), d.string(),
                                d.nbytes(), d.nbytes(), d.tags())))
        ops = d.i32() if v >= 3 else None
        d.tags()
        return g + (ops,)

    out = d.array(group)
    d.end()
    return out


def check_describe_groups(env, c, v):
    got = describe_groups(c, v, [env.group, "apis-nobody"], include_ops=True)
    ops = GROUP_OPS if v >= 3 else None
    assert got == [(NONE, env.group, "Empty", "", "", [], ops),
                   (NONE, "apis-nobody", "Dead", "", "", [], ops)]
    if v >= 3:
        assert describe_groups(c, v, [env.group], include_ops=False)[0][6] == OPS_OMITTED


def list_groups(c, v, states=None):
    e = enc(16, v)
    if v >= 4:
        e.array(states or [], lambda e, s: e.str(s))
    d = send(c, 16, v, e.tags())
    if v >= 1:
        d.i32()
    error = d.i16()
    groups = d.array(lambda d: (d.string(), d.string(), d.string() if v >= 4 else None, d.tags())[:3])
    d.end()
    assert error == NONE
    return {g: (ptype, state) for g, ptype, state in groups}


def check_list_groups(env, c, v):
    assert list_groups(c, v)[env.group] == ("", "Empty" if v >= 4 else None)
    if v >= 4:
        assert env.group not in list_groups(c, v, ["Stable", "PreparingRebalance"])
        assert env.group in list_groups(c, v, ["EMPTY"])  # compared case-insensitively, as Kafka does


def check_delete_groups(env, c, v):
    group = unique("apis-del")
    commit_offsets(env.port, group, env.topic, {0: 2})
    assert group in list_groups(c, 0)
    d = send(c, 42, v, enc(42, v).array([group, group, "apis-nobody"], lambda e, g: e.str(g)).tags())
    d.i32()
    results = d.array(lambda d: (d.string(), d.i16(), d.tags())[:2])
    d.end()
    assert results == [(group, NONE), ("apis-nobody", GROUP_ID_NOT_FOUND)]  # de-duplicated
    assert group not in list_groups(c, 0)
    assert fetch_offsets(env.port, group, env.topic, [0]) == {0: -1}


def offset_delete(c, group, topics):
    e = enc(47, 0).str(group).array(topics, lambda e, t: e.str(t[0]).array(t[1], lambda e, p: e.i32(p)))
    d = send(c, 47, 0, e)
    error = d.i16()
    d.i32()
    topics = d.array(lambda d: (d.string(), d.array(lambda d: (d.i32(), d.i16()))))
    d.end()
    return error, {(t, p): err for t, parts in topics for p, err in parts}


def check_offset_delete(env, c, v):
    group = unique("apis-odel")
    commit_offsets(env.port, group, env.topic, {0: 4, 1: 2})
    error, parts = offset_delete(c, group, [(env.topic, [0]), (MISSING, [0])])
    assert error == NONE
    assert parts == {(env.topic, 0): NONE, (MISSING, 0): UNKNOWN_TOPIC_OR_PARTITION}
    assert fetch_offsets(env.port, group, env.topic, [0, 1]) == {0: -1, 1: 2}
    assert offset_delete(c, "apis-nobody", [(env.topic, [0])]) == (GROUP_ID_NOT_FOUND, {})
    assert offset_delete(c, "", [(env.topic, [0])]) == (INVALID_GROUP_ID, {})


# ---- KIP-848 consumer protocol (test_consumer_groups.py has the rest) ----

def check_consumer_group_heartbeat(env, c, v):
    # v0 may leave the member id to the broker; from v1 the client makes it.
    member = "" if v == 0 else f"apis-m{v}"
    e = enc(68, v).str(f"apis-cg{v}").str(member).i32(0).nstr(None).nstr(None).i32(30000)
    e.array([env.topic], lambda e, t: e.str(t))
    if v >= 1:
        e.nstr(None)
    e.nstr(None).array([], None).tags()
    d = send(c, 68, v, e)
    d.i32()
    error, message, got_member, epoch, interval = d.i16(), d.nstring(), d.nstring(), d.i32(), d.i32()
    assert d.i8() == 1  # an assignment: the whole topic
    parts = d.array(lambda d: (d.uuid(), d.array(lambda d: d.i32()), d.tags())[1])
    d.tags()
    d.end()
    assert (error, epoch, interval) == (NONE, 1, 5000), message
    assert got_member == member if v else len(got_member) == 36
    assert sorted(p for ps in parts for p in ps) == list(range(3))


def check_consumer_group_describe(env, c, v):
    # A classic (offsets-only) group and an unknown one: GROUP_ID_NOT_FOUND, as Kafka answers
    # for a group that is not a consumer group (clients then use DescribeGroups).
    d = send(c, 69, v, enc(69, v).array([env.group, "apis-nobody"], lambda e, g: e.str(g)).bool(True).tags())
    d.i32()

    def group(d):
        error, _msg, gid = d.i16(), d.nstring(), d.string()
        d.string(), d.i32(), d.i32(), d.string()
        assert d.array(lambda d: None) == []
        d.i32()
        d.tags()
        return gid, error

    got = d.array(group)
    d.end()
    assert got == [(env.group, GROUP_ID_NOT_FOUND), ("apis-nobody", GROUP_ID_NOT_FOUND)]


# ---- SASL on a PLAINTEXT listener: ILLEGAL_SASL_STATE ----

def check_sasl_handshake(env, c, v):
    d = send(c, 17, v, enc(17, v).str("PLAIN"))
    error, mechanisms = d.i16(), d.array(lambda d: d.string())
    d.end()
    assert (error, mechanisms) == (ILLEGAL_SASL_STATE, [])


def check_sasl_authenticate(env, c, v):
    d = send(c, 36, v, enc(36, v).bytes(b"\x00alice\x00secret").tags())
    error, message, auth = d.i16(), d.nstring(), d.nbytes()
    if v >= 1:
        d.i64()
    d.end()
    assert error == ILLEGAL_SASL_STATE
    assert message == "SaslAuthenticate request received after successful authentication"
    assert auth == b""


# ---- transactions: the coordinator answers for ids it does not know ----

INVALID_PRODUCER_ID_MAPPING = 49

def add_partitions(c, v, txn, topics):
    """{(topic, partition): error}; from v4 the batched form with this one transaction."""
    def topic(e, t):
        e.str(t[0]).array(t[1], lambda e, p: e.i32(p)).tags()

    e = enc(24, v)
    if v >= 4:
        e.array([txn], lambda e, x: (e.str(x).i64(7).i16(0).bool(False).array(topics, topic), e.tags())).tags()
    else:
        e.str(txn).i64(7).i16(0).array(topics, topic).tags()
    d = send(c, 24, v, e)
    d.i32()

    def topic_results(d):
        return d.array(lambda d: (d.string(), d.array(lambda d: (d.i32(), d.i16(), d.tags())[:2]), d.tags())[:2])

    if v >= 4:
        assert d.i16() == NONE
        ((got_txn, res),) = d.array(lambda d: (d.string(), topic_results(d), d.tags())[:2])
        assert got_txn == txn
    else:
        res = topic_results(d)
    d.end()
    return {(t, p): err for t, parts in res for p, err in parts}


def check_add_partitions_to_txn(env, c, v):
    t = env.topic
    # No InitProducerId for this id: TransactionCoordinator answers INVALID_PRODUCER_ID_MAPPING.
    assert add_partitions(c, v, "apis-txn", [(t, [0, 1])]) == {(t, 0): INVALID_PRODUCER_ID_MAPPING, (t, 1): INVALID_PRODUCER_ID_MAPPING}
    # One unknown partition fails the whole request; the others were not attempted.
    assert add_partitions(c, v, "apis-txn", [(t, [0, 9]), (MISSING, [0])]) == {
        (t, 0): OPERATION_NOT_ATTEMPTED, (t, 9): UNKNOWN_TOPIC_OR_PARTITION, (MISSING, 0): UNKNOWN_TOPIC_OR_PARTITION}
    assert add_partitions(c, v, "", [(t, [0])]) == {(t, 0): INVALID_REQUEST}


def check_add_offsets_to_txn(env, c, v):
    for txn, expected in (("apis-txn", INVALID_PRODUCER_ID_MAPPING), ("", INVALID_REQUEST)):
        d = send(c, 25, v, enc(25, v).str(txn).i64(7).i16(0).str(env.group).tags())
        d.i32()
        error = d.i16()
        d.end()
        assert error == expected


def check_end_txn(env, c, v):
    for txn, expected in (("apis-txn", INVALID_PRODUCER_ID_MAPPING), ("", INVALID_REQUEST)):
        d = send(c, 26, v, enc(26, v).str(txn).i64(7).i16(0).bool(True).tags())
        d.i32()
        error = d.i16()
        d.end()
        assert error == expected


def check_txn_offset_commit(env, c, v):
    group = unique("apis-txngroup")

    def commit(group):
        e = enc(28, v).str("apis-txn").str(group).i64(7).i16(0)
        if v >= 3:
            e.i32(-1).str("").nstr(None)

        def part(e, p):
            e.i32(p).i64(1)
            if v >= 2:
                e.i32(-1)
            e.nstr(None).tags()

        e.array([(env.topic, [0, 7]), (MISSING, [0])], lambda e, t: e.str(t[0]).array(t[1], part).tags()).tags()
        d = send(c, 28, v, e)
        d.i32()
        res = d.array(lambda d: (d.string(), d.array(lambda d: (d.i32(), d.i16(), d.tags())[:2]), d.tags())[:2])
        d.end()
        return {(t, p): err for t, parts in res for p, err in parts}

    assert commit(group) == {(env.topic, 0): INVALID_PRODUCER_ID_MAPPING, (env.topic, 7): UNKNOWN_TOPIC_OR_PARTITION,
                             (MISSING, 0): UNKNOWN_TOPIC_OR_PARTITION}
    assert commit("")[(env.topic, 0)] == INVALID_GROUP_ID
    assert fetch_offsets(env.port, group, env.topic, [0]) == {0: -1}  # nothing stored
    assert group not in list_groups(c, 0)


def check_describe_transactions(env, c, v):
    d = send(c, 65, v, enc(65, v).array(["apis-txn", ""], lambda e, t: e.str(t)).tags())
    d.i32()

    def state(d):
        error, tid = d.i16(), d.string()
        d.string(), d.i32(), d.i64(), d.i64(), d.i16()
        assert d.array(lambda d: None) == []
        d.tags()
        return tid, error

    got = d.array(state)
    d.end()
    assert got == [("apis-txn", TRANSACTIONAL_ID_NOT_FOUND), ("", INVALID_REQUEST)]


def check_list_transactions(env, c, v):
    e = enc(66, v).array(["Ongoing", "Bogus"], lambda e, s: e.str(s)).array([], None)
    if v >= 1:
        e.i64(-1)
    d = send(c, 66, v, e.tags())
    d.i32()
    error, unknown = d.i16(), d.array(lambda d: d.string())
    states = d.array(lambda d: None)
    d.end()
    assert (error, unknown, states) == (NONE, ["Bogus"], [])


def check_describe_producers(env, c, v):
    topics = [(env.topic, [0, 1, 9]), (MISSING, [0]), ("bad name!", [0])]
    d = send(c, 61, v, enc(61, v).array(topics, lambda e, t: e.str(t[0]).array(t[1], lambda e, p: e.i32(p)).tags()).tags())
    d.i32()

    def partition(d):
        p = (d.i32(), d.i16(), d.nstring(),
             d.array(lambda d: (d.i64(), d.i32(), d.i32(), d.i64(), d.i32(), d.i64(), d.tags())[:6]))
        d.tags()
        return p

    res = d.array(lambda d: (d.string(), d.array(partition), d.tags())[:2])
    d.end()
    got = {(t, p[0]): p[1:] for t, parts in res for p in parts}
    error, message, producers = got[(env.topic, 0)]
    assert (error, message) == (NONE, None)
    assert len(producers) == 1, producers
    pid, epoch, last_seq, last_ts, coordinator_epoch, txn_start = producers[0]
    assert pid >= 0 and epoch == 0
    assert last_seq == env.produced - 1
    lo, hi = env.produced_between
    assert lo <= last_ts <= hi, (lo, last_ts, hi)
    assert (coordinator_epoch, txn_start) == (-1, -1)
    assert got[(env.topic, 1)] == (NONE, None, [])
    assert got[(env.topic, 9)] == (UNKNOWN_TOPIC_OR_PARTITION, None, [])
    assert got[(MISSING, 0)] == (UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition.", [])
    assert got[("bad name!", 0)][0] == INVALID_TOPIC_EXCEPTION
    assert "contains one or more characters other than ASCII alphanumerics" in got[("bad name!", 0)][1]


# ---- ACLs: no authorizer → SECURITY_DISABLED ----

def check_describe_acls(env, c, v):
    # resource type ANY, any name, pattern ANY, any principal and host, operation ANY, permission ANY
    e = enc(29, v).i8(1).nstr(None).i8(1).nstr(None).nstr(None).i8(1).i8(1).tags()
    d = send(c, 29, v, e)
    d.i32()
    error, message, resources = d.i16(), d.nstring(), d.array(lambda d: None)
    d.end()
    assert (error, message, resources) == (SECURITY_DISABLED, "No Authorizer is configured on the broker", [])


def check_create_acls(env, c, v):
    creation = lambda e, name: e.i8(2).str(name).i8(3).str("User:alice").str("*").i8(READ).i8(3).tags()
    d = send(c, 30, v, enc(30, v).array([env.topic, "other"], creation).tags())
    d.i32()
    results = d.array(lambda d: (d.i16(), d.nstring(), d.tags())[:2])
    d.end()
    assert results == [(SECURITY_DISABLED, "No Authorizer is configured.")] * 2


def check_delete_acls(env, c, v):
    flt = lambda e, _: e.i8(2).nstr(env.topic).i8(3).nstr(None).nstr(None).i8(1).i8(1).tags()
    d = send(c, 31, v, enc(31, v).array([0, 1, 2], flt).tags())
    d.i32()
    results = d.array(lambda d: (d.i16(), d.nstring(), d.array(lambda d: None), d.tags())[:3])
    d.end()
    assert results == [(SECURITY_DISABLED, "No Authorizer is configured.", [])] * 3


# ---- cluster ----

def describe_cluster(c, v, include_ops, endpoint_type=1):
    e = enc(60, v).bool(include_ops)
    if v >= 1:
        e.i8(endpoint_type)
    d = send(c, 60, v, e.tags())
    d.i32()
    out = {"error": d.i16(), "message": d.nstring()}
    if v >= 1:
        out["endpoint_type"] = d.i8()
    out["cluster_id"], out["controller"] = d.string(), d.i32()
    out["brokers"] = d.array(lambda d: (d.i32(), d.string(), d.i32(), d.nstring(), d.tags())[:4])
    out["ops"] = d.i32()
    d.end()
    return out


def check_describe_cluster(env, c, v):
    got = describe_cluster(c, v, include_ops=True)
    assert got["error"] == NONE and got["message"] is None
    assert got["cluster_id"] == metadata_cluster_id(env.port) and got["cluster_id"]
    assert got["controller"] == NODE_ID
    assert got["brokers"] == [(NODE_ID, "127.0.0.1", env.port, None)]
    assert got["ops"] == CLUSTER_OPS
    assert describe_cluster(c, v, include_ops=False)["ops"] == OPS_OMITTED
    if v >= 1:
        assert got["endpoint_type"] == 1
        wrong = describe_cluster(c, v, include_ops=False, endpoint_type=2)
        assert wrong["error"] == MISMATCHED_ENDPOINT_TYPE and "CONTROLLER" in wrong["message"]
        assert describe_cluster(c, v, include_ops=False, endpoint_type=7)["error"] == UNSUPPORTED_ENDPOINT_TYPE


def describe_log_dirs(c, v, topics):
    e = enc(35, v).array(topics, lambda e, t: e.str(t[0]).array(t[1], lambda e, p: e.i32(p)).tags()).tags()
    d = send(c, 35, v, e)
    d.i32()
    if v >= 3:
        assert d.i16() == NONE

    def result(d):
        error, path = d.i16(), d.string()
        topics = d.array(lambda d: (d.string(), d.array(lambda d: (d.i32(), d.i64(), d.i64(), d.boolean(), d.tags())[:4]),
                                    d.tags())[:2])
        total = usable = None
        if v >= 4:
            total, usable = d.i64(), d.i64()
        d.tags()
        return error, path, {(t, p[0]): p[1:] for t, parts in topics for p in parts}, total, usable

    out = d.array(result)
    d.end()
    assert len(out) == 1
    return out[0]


def check_describe_log_dirs(env, c, v):
    error, path, parts, total, usable = describe_log_dirs(c, v, None)
    assert error == NONE
    assert path.startswith("file://") and path.endswith("/objects"), path
    size = stored_batch_bytes(env.port, env.topic, 0)
    assert size > 0
    assert parts[(env.topic, 0)] == (size, 0, False)
    assert parts[(env.topic, 1)] == (0, 0, False)
    assert ("apis-dtp-b", 1) in parts
    if v >= 4:
        assert (total, usable) == (-1, -1)
    _, _, some, _, _ = describe_log_dirs(c, v, [(env.topic, [0, 9]), (MISSING, [0])])
    assert some == {(env.topic, 0): (size, 0, False)}


def reassign(c, topics):
    def part(e, p):
        e.i32(p[0]).array(p[1], lambda e, r: e.i32(r)).tags()

    e = enc(45, 0).i32(30000).array(topics, lambda e, t: e.str(t[0]).array(t[1], part).tags()).tags()
    d = send(c, 45, 0, e)
    d.i32()
    error, message = d.i16(), d.nstring()
    res = d.array(lambda d: (d.string(), d.array(lambda d: (d.i32(), d.i16(), d.nstring(), d.tags())[:3]), d.tags())[:2])
    d.end()
    assert (error, message) == (NONE, None)
    return {(t, p[0]): p[1:] for t, parts in res for p in parts}


def check_alter_partition_reassignments(env, c, v):
    t = env.topic
    got = reassign(c, [(t, [(0, [NODE_ID]), (1, None), (2, [NODE_ID, 2])]), (MISSING, [(0, [NODE_ID])])])
    assert got[(t, 0)] == (NONE, None)  # already the replica set: nothing to move
    assert got[(t, 1)] == (NO_REASSIGNMENT_IN_PROGRESS, None)
    assert got[(t, 2)][0] == INVALID_REPLICA_ASSIGNMENT and "broker 2" in got[(t, 2)][1]
    assert got[(MISSING, 0)] == (UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find a topic named {MISSING}.")
    got = reassign(c, [(t, [(0, []), (1, [NODE_ID, NODE_ID]), (7, [NODE_ID])])])
    assert got[(t, 0)][0] == INVALID_REPLICA_ASSIGNMENT and "empty" in got[(t, 0)][1]
    assert got[(t, 1)][0] == INVALID_REPLICA_ASSIGNMENT and "more than once" in got[(t, 1)][1]
    assert got[(t, 7)] == (UNKNOWN_TOPIC_OR_PARTITION, f"Unable to find partition {t}:7.")


def check_list_partition_reassignments(env, c, v):
    for topics in (None, [(env.topic, [0, 1])]):
        e = enc(46, 0).i32(30000).array(topics, lambda e, t: e.str(t[0]).array(t[1], lambda e, p: e.i32(p)).tags())
        d = send(c, 46, 0, e.tags())
        d.i32()
        got = (d.i16(), d.nstring(), d.array(lambda d: None))
        d.end()
        assert got == (NONE, None, [])


def describe_topic_partitions(c, topics, limit, cursor=None):
    e = enc(75, 0).array(topics, lambda e, t: e.str(t).tags()).i32(limit)
    if cursor is None:
        e.i8(-1)
    else:
        e.i8(1).str(cursor[0]).i32(cursor[1]).tags()
    d = send(c, 75, 0, e.tags())
    d.i32()

    def partition(d):
        p = {"error": d.i16(), "index": d.i32(), "leader": d.i32(), "epoch": d.i32(),
             "replicas": d.array(Reader.i32), "isr": d.array(Reader.i32), "elr": d.array(Reader.i32),
             "last_elr": d.array(Reader.i32), "offline": d.array(Reader.i32)}
        d.tags()
        return p

    def topic(d):
        t = {"error": d.i16(), "name": d.nstring(), "id": d.uuid(), "internal": d.boolean(),
             "partitions": d.array(partition), "ops": d.i32()}
        d.tags()
        return t

    topics = d.array(topic)
    next_cursor = None
    if d.i8() >= 0:
        next_cursor = (d.string(), d.i32())
        d.tags()
    d.end()
    return topics, next_cursor


def check_describe_topic_partitions(env, c, v):
    a, b, zz = "apis-dtp-a", "apis-dtp-b", "apis-dtp-zz"

    def pages(topics, limit):
        out, cursor = [], None
        for _ in range(10):
            got, cursor = describe_topic_partitions(c, topics, limit, cursor)
            out.append(([(t["name"], t["error"], [p["index"] for p in t["partitions"]]) for t in got], cursor))
            if cursor is None:
                return out
        raise AssertionError("pagination did not end")

    # Names in order from the cursor; at most `limit` partitions a page; an unknown name fails alone.
    assert pages([zz, b, a, b], 2) == [
        ([(a, NONE, [0, 1])], (a, 2)),
        ([(a, NONE, [2]), (b, NONE, [0])], (b, 1)),
        ([(b, NONE, [1]), (zz, UNKNOWN_TOPIC_OR_PARTITION, [])], None),
    ]
    # A page that ends exactly at a topic boundary points at the next topic's partition 0.
    assert pages([a, b], 3) == [([(a, NONE, [0, 1, 2])], (b, 0)), ([(b, NONE, [0, 1])], None)]
    got, cursor = describe_topic_partitions(c, [env.topic], 2000)
    assert cursor is None
    (t,) = got
    assert t["error"] == NONE and t["name"] == env.topic and t["internal"] is False
    assert t["id"] != bytes(16) and t["ops"] == TOPIC_OPS
    for p in t["partitions"]:
        assert (p["error"], p["leader"], p["replicas"], p["isr"], p["elr"], p["last_elr"], p["offline"]) == \
            (NONE, NODE_ID, [NODE_ID], [NODE_ID], [], [], [])
        assert p["epoch"] >= 1
    # All topics when none is named (missing ones cannot appear).
    got, _ = describe_topic_partitions(c, [], 2000)
    assert {t["name"] for t in got} >= {env.topic, a, b}
    # A cursor naming a topic that is not asked for fails every named topic.
    got, cursor = describe_topic_partitions(c, [a], 10, cursor=(b, 0))
    assert [(t["name"], t["error"]) for t in got] == [(a, INVALID_REQUEST)] and cursor is None


CHECKS = {
    11: check_join_group, 12: check_heartbeat, 13: check_leave_group, 14: check_sync_group,
    15: check_describe_groups, 16: check_list_groups, 17: check_sasl_handshake, 24: check_add_partitions_to_txn,
    25: check_add_offsets_to_txn, 26: check_end_txn, 28: check_txn_offset_commit, 29: check_describe_acls,
    30: check_create_acls, 31: check_delete_acls, 35: check_describe_log_dirs, 36: check_sasl_authenticate,
    42: check_delete_groups, 45: check_alter_partition_reassignments, 46: check_list_partition_reassignments,
    47: check_offset_delete, 60: check_describe_cluster, 61: check_describe_producers,
    65: check_describe_transactions, 66: check_list_transactions, 68: check_consumer_group_heartbeat,
    69: check_consumer_group_describe, 75: check_describe_topic_partitions,
}


@pytest.mark.parametrize("api,version", [(api, v) for api, (_, lo, hi, _) in sorted(APIS.items())
                                         for v in sorted({lo, hi})],
                         ids=lambda x: str(x))
def test_api_over_the_wire(env, api, version):
    c = Conn(env.port)
    try:
        CHECKS[api](env, c, version)
        # The connection stays open and in step: the next request is answered on it.
        api_versions_ok(c)
    finally:
        c.close()
    assert env.broker.alive()

# ---------------------------------------------------------------------------------------------
# Part 2: real clients
# ---------------------------------------------------------------------------------------------

COMMON = {"socket.timeout.ms": 10000, "socket.connection.setup.timeout.ms": 10000}


def assigned_commit(broker, group, topic, offsets):
    """Commits {partition: offset} the way an assign() consumer does (confluent-kafka)."""
    c = Consumer(dict(COMMON, **{"bootstrap.servers": broker.bootstrap, "group.id": group,
                                 "enable.auto.commit": False}))
    try:
        c.assign([TopicPartition(topic, p) for p in offsets])
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()


def test_confluent_admin_client(broker):
    from confluent_kafka import ConsumerGroupState
    admin = AdminClient(dict(COMMON, **{"bootstrap.servers": broker.bootstrap}))
    topic, group, other = unique("cfk"), unique("cfk-g"), unique("cfk-g2")
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    assigned_commit(broker, group, topic, {0: 5, 1: 7})
    assigned_commit(broker, other, topic, {0: 1})

    md = admin.list_topics(timeout=10)
    assert topic in md.topics and len(md.topics[topic].partitions) == 2

    # librdkafka builds describe_cluster from a Metadata request, not from DescribeCluster
    # (kafka-python's test below drives DescribeCluster itself).
    cluster = admin.describe_cluster(request_timeout=10).result(30)
    assert cluster.cluster_id == md.cluster_id
    assert cluster.controller.id == NODE_ID
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(NODE_ID, "127.0.0.1", broker.port)]

    listed = admin.list_consumer_groups(request_timeout=10).result(30)
    assert not listed.errors
    by_id = {g.group_id: g for g in listed.valid}
    assert {group, other} <= set(by_id)
    assert by_id[group].state == ConsumerGroupState.EMPTY and by_id[group].is_simple_consumer_group
    stable = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}, request_timeout=10).result(30)
    assert group not in {g.group_id for g in stable.valid}

    # librdkafka asks ConsumerGroupDescribe first and falls back to DescribeGroups on
    # GROUP_ID_NOT_FOUND (a group that is not a consumer group).
    described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(30)
    assert described.group_id == group and described.state == ConsumerGroupState.EMPTY
    assert described.members == [] and described.is_simple_consumer_group
    assert described.coordinator.id == NODE_ID

    admin.delete_consumer_groups([group], request_timeout=10)[group].result(30)
    remaining = {g.group_id for g in admin.list_consumer_groups(request_timeout=10).result(30).valid}
    assert group not in remaining and other in remaining
    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups([group], request_timeout=10)[group].result(30)
    assert e.value.args[0].code() == GROUP_ID_NOT_FOUND

    # ACLs: SECURITY_DISABLED reaches the caller of create_acls and delete_acls. librdkafka
    # (2.16, rd_kafka_DescribeAclsResponse_parse) drops the top-level error of DescribeAcls and
    # returns no bindings, as it does against Kafka; kafka-python raises it (test below, and the
    # wire test checks the code and message).
    flt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                           AclOperation.ANY, AclPermissionType.ANY)
    assert admin.describe_acls(flt, request_timeout=10).result(30) == []
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException) as e:
        admin.create_acls([binding], request_timeout=10)[binding].result(30)
    assert e.value.args[0].code() == SECURITY_DISABLED
    with pytest.raises(KafkaException) as e:
        admin.delete_acls([flt], request_timeout=10)[flt].result(30)
    assert e.value.args[0].code() == SECURITY_DISABLED


def test_kafka_python_admin_client(broker):
    """kafka-python 3.0's KafkaAdminClient sends DescribeCluster, ListGroups, DescribeGroups,
    OffsetDelete, DeleteGroups, DescribeAcls, DescribeLogDirs, DescribeProducers,
    DescribeTopicPartitions, ListTransactions and the reassignment APIs itself."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, NewTopic as KNewTopic,
                             ResourcePatternFilter, ResourceType as KResourceType)
    from kafka.errors import SecurityDisabledError

    topic, group = unique("kp"), unique("kp-g")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        admin.create_topics([KNewTopic(topic, num_partitions=3, replication_factor=1)])
        before = int(time.time() * 1000)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all")
        for i in range(4):
            producer.send(topic, f"x{i}".encode(), partition=1)
        producer.flush(30)
        producer.close()
        after = int(time.time() * 1000)
        assigned_commit(broker, group, topic, {0: 2, 1: 4})
        assert topic in admin.list_topics()

        cluster = admin.describe_cluster()
        assert cluster["cluster_id"] == metadata_cluster_id(broker.port)
        assert cluster["controller_id"] == NODE_ID
        assert cluster["brokers"] == [{"broker_id": NODE_ID, "host": "127.0.0.1", "port": broker.port, "rack": None}]
        assert sorted(cluster["authorized_operations"]) == sorted(
            ["CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE"])

        assert {"group_id": group, "protocol_type": "", "group_state": "Empty"} in admin.list_groups()
        described = admin.describe_groups([group, "kp-nobody"])
        assert (described[group]["group_state"], described[group]["members"], described[group]["error"]) == ("Empty", [], None)
        assert described["kp-nobody"]["group_state"] == "Dead"

        producers = admin.describe_producers([KTP(topic, 1)])[KTP(topic, 1)].active_producers
        assert len(producers) == 1
        assert (producers[0].producer_epoch, producers[0].last_sequence) == (0, 3)
        assert before <= producers[0].last_timestamp <= after

        page = admin.describe_topic_partitions([topic], response_partition_limit=2)
        assert [p["partition_index"] for p in page["topics"][0]["partitions"]] == [0, 1]
        assert page["next_cursor"]["topic_name"] == topic and page["next_cursor"]["partition_index"] == 2

        (dirs,) = admin.describe_log_dirs()
        (log_dir,) = dirs["log_dirs"]
        sizes = {(t["name"], p["partition_index"]): p["partition_size"] for t in log_dir["topics"] for p in t["partitions"]}
        assert sizes[(topic, 1)] == stored_batch_bytes(broker.port, topic, 1) > 0
        assert sizes[(topic, 0)] == 0

        assert admin.list_partition_reassignments() == {}
        assert admin.alter_partition_reassignments({KTP(topic, 0): [NODE_ID]}) == {KTP(topic, 0): None}
        assert admin.list_transactions() == {NODE_ID: []}

        assert admin.delete_group_offsets(group, [KTP(topic, 0)])[KTP(topic, 0)].errno == 0
        assert set(admin.list_group_offsets({group: None})[group]) == {KTP(topic, 1)}
        assert admin.delete_groups([group, "kp-nobody"]) == {group: "OK", "kp-nobody": "GroupIdNotFoundError"}
        assert group not in [g["group_id"] for g in admin.list_groups()]

        with pytest.raises(SecurityDisabledError):
            admin.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                          permission_type=ACLPermissionType.ANY,
                                          resource_pattern=ResourcePatternFilter(KResourceType.ANY, None,
                                                                                 ACLResourcePatternType.ANY)))
    finally:
        admin.close()


def test_subscribe_consumers_read_through_the_group_coordinator(make_broker):
    """subscribe() consumers of confluent-kafka and kafka-python join their groups and read
    (test_groups.py covers groups in depth); no request is refused as bad input."""
    from kafka import KafkaConsumer
    broker = make_broker(settings={"group.initial.rebalance.delay.ms": "100"})
    topic = unique("sub")
    create_topic(broker, topic)
    produce_values(broker, topic, [b"a", b"b"])
    c = Consumer(dict(COMMON, **{"bootstrap.servers": broker.bootstrap, "group.id": unique("sub-g"),
                                 "auto.offset.reset": "earliest"}))
    try:
        c.subscribe([topic])
        deadline, got, errors = time.time() + 30, [], []
        while time.time() < deadline and len(got) < 2:
            m = c.poll(0.2)
            if m is not None:
                (errors if m.error() else got).append(m)
        assert ([m.value() for m in got], errors) == ([b"a", b"b"], [])
    finally:
        c.close()
    kc = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=unique("sub-kp"),
                       auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        assert [m.value for m in kc] == [b"a", b"b"]
    finally:
        kc.close()
    assert broker.metric('tern_request_errors_total{api="joinGroup"}') == 0
    assert broker.metric("tern_connections_closed_bad_input_total") == 0
    assert "closing connection" not in broker.log()
