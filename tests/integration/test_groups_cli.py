"""`tern groups list|describe|reset-offsets|delete` against the real broker.

Until the broker has a group coordinator, the groups it knows are those that hold committed
offsets (Empty classic groups), so these tests build groups by committing offsets with
confluent-kafka's Consumer (assign() + commit) and cross-check every effect of the CLI with
confluent-kafka (AdminClient.list_consumer_groups, Consumer.committed, watermarks).

What the broker cannot show yet (a group with members, a coordinator refusing an admin
commit or a delete) comes from a proxy in front of the real broker that answers chosen API
keys itself, with responses built by kafka-python's protocol classes and member assignments
encoded by kafka-python's ConsumerProtocolAssignment: the CLI's member path runs end to end
on bytes from another implementation.
"""
import datetime
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from kafka.protocol.admin.groups import (DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
                                         DescribeGroupsResponse)
from kafka.protocol.consumer.group import OffsetCommitRequest, OffsetCommitResponse
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment

from conftest import TERN, Broker, free_port
from test_cli import admin, failed, ok, tern, unique
from kafka_wire import LoopbackServer

OFFSET_INVALID = -1001  # confluent-kafka: no committed offset


# ---------------------------------------------------------------- helpers

def create_topic(broker, partitions=1):
    topic = unique("grp-topic")
    ok(tern(broker, "topics", "create", topic, "--partitions", str(partitions)))
    return topic


def produce(broker, topic, counts, timestamps=None):
    """counts: {partition: n}; timestamps: {partition: [ms, ...]} (CreateTime) if given."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    errors = []
    for part, n in counts.items():
        for i in range(n):
            kw = {"timestamp": timestamps[part][i]} if timestamps else {}
            p.produce(topic, f"v{i}".encode(), partition=part, on_delivery=lambda e, m: e and errors.append(e), **kw)
    assert p.flush(30) == 0 and not errors, errors


def consumer(broker, group):
    return Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})


def commit(broker, group, offsets, metadata=None):
    """Commits {(topic, partition): offset} as a standalone consumer (assign(), no subscribe)."""
    c = consumer(broker, group)
    try:
        tps = [TopicPartition(t, p, o, **({"metadata": metadata[(t, p)]} if (t, p) in (metadata or {}) else {}))
               for (t, p), o in offsets.items()]
        c.assign(tps)
        c.commit(offsets=tps, asynchronous=False)
    finally:
        c.close()


def committed(broker, group, topic, partitions):
    """{partition: committed offset or None} read by confluent-kafka."""
    c = consumer(broker, group)
    try:
        got = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: (None if tp.offset == OFFSET_INVALID else tp.offset) for tp in got}
    finally:
        c.close()


def confluent_groups(broker, states=None):
    kw = {"states": set(states)} if states else {}
    a = admin(broker)  # the handle must outlive the future
    result = a.list_consumer_groups(request_timeout=10, **kw).result(15)
    assert not result.errors, result.errors
    return {g.group_id: g.state for g in result.valid}


def tables(out):
    """The blank-line separated tables of stdout: [[header cells], [row cells], ...] each."""
    blocks, current = [], []
    for line in out.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current = []
        else:
            current.append(line.split())
    if current:
        blocks.append(current)
    return blocks


def table(out, first_headers):
    """The table whose header starts with `first_headers`, as a list of {header: cell}."""
    for block in tables(out):
        if block[0][:len(first_headers)] == first_headers:
            return [dict(zip(block[0], row)) for row in block[1:]]
    raise AssertionError(f"no table starting {first_headers} in:\n{out}")


def offsets_rows(out):
    rows = table(out, ["GROUP", "TOPIC", "PARTITION"])
    return {(r["TOPIC"], int(r["PARTITION"])): r for r in rows}


def plan(out):
    """{(topic, partition): new offset} of a reset-offsets plan; the table must be Kafka's."""
    rows = table(out, ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"])
    return {(r["TOPIC"], int(r["PARTITION"])): int(r["NEW-OFFSET"]) for r in rows}


def iso(ms, zone="Z"):
    """ms since the epoch as YYYY-MM-DDTHH:mm:SS.sss in `zone` ('Z' or '+HH:MM'/'-HH:MM')."""
    if zone == "Z":
        tz = datetime.timezone.utc
    else:
        sign = -1 if zone[0] == "-" else 1
        tz = datetime.timezone(sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    t = datetime.datetime.fromtimestamp(ms / 1000, tz)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}" + zone


# ---------------------------------------------------------------- list

def test_list_shows_groups_that_hold_offsets(broker):
    topic = create_topic(broker, 2)
    g1, g2 = unique("grp-a"), unique("grp-b")
    commit(broker, g1, {(topic, 0): 0})
    commit(broker, g2, {(topic, 1): 0})

    out = ok(tern(broker, "groups", "list"))
    lines = out.splitlines()
    assert lines[0].split() == ["GROUP", "STATE", "PROTOCOL-TYPE"], out
    rows = {r[0]: r[1:] for r in (line.split() for line in lines[1:])}
    # Groups that only hold offsets: Empty classic groups with no protocol type.
    assert rows == {g1: ["Empty", "-"], g2: ["Empty", "-"]}, out
    assert [line.split()[0] for line in lines[1:]] == sorted([g1, g2])
    # Another client sees the same groups.
    assert confluent_groups(broker) == {g1: ConsumerGroupState.EMPTY, g2: ConsumerGroupState.EMPTY}

    # The state filter, in any case, repeatable or comma-separated.
    for args in (["--state", "empty"], ["--state", "Stable,EMPTY"], ["--state", "Stable", "--state", "Empty"]):
        got = [line.split()[0] for line in ok(tern(broker, "groups", "list", *args)).splitlines()[1:]]
        assert got == sorted([g1, g2]), args
    out = ok(tern(broker, "groups", "list", "--state", "Stable"))
    assert [line.split() for line in out.splitlines()] == [["GROUP", "STATE", "PROTOCOL-TYPE"]], out
    assert confluent_groups(broker, [ConsumerGroupState.STABLE]) == {}
    failed(tern(broker, "groups", "list", "--state", "Running"), "--state", "'Running' is not a group state", "Empty", code=64)


def test_list_on_a_broker_with_no_groups(broker):
    out = ok(tern(broker, "groups", "list"))
    assert [line.split() for line in out.splitlines()] == [["GROUP", "STATE", "PROTOCOL-TYPE"]], out


# ---------------------------------------------------------------- describe

def test_describe_shows_committed_offsets_and_lag(broker):
    topic = create_topic(broker, 3)
    group = unique("grp-desc")
    produce(broker, topic, {0: 10, 1: 4})
    commit(broker, group, {(topic, 0): 3, (topic, 1): 4}, metadata={(topic, 0): "checkpoint-7"})

    p = tern(broker, "groups", "describe", group)
    out = ok(p)
    assert f"Consumer group '{group}' has no active members." in p.stderr.decode()
    state = table(out, ["GROUP", "STATE"])
    assert state == [{"GROUP": group, "STATE": "Empty", "PROTOCOL-TYPE": "-", "ASSIGNMENT-STRATEGY": "-", "#MEMBERS": "0",
                      "COORDINATOR": f"127.0.0.1:{broker.port}"}], out  # then "(1)", split off as its own cell
    assert out.splitlines()[1].rstrip().endswith(f"127.0.0.1:{broker.port} (1)"), out
    rows = offsets_rows(out)
    assert table(out, ["GROUP", "TOPIC"])[0].keys() == {"GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                                                          "CONSUMER-ID", "HOST", "CLIENT-ID"}
    assert set(rows) == {(topic, 0), (topic, 1)}, out  # partition 2 has no offset and no member
    assert [rows[(topic, 0)][k] for k in ("CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID")] == \
        ["3", "10", "7", "-", "-", "-"]
    assert [rows[(topic, 1)][k] for k in ("CURRENT-OFFSET", "LOG-END-OFFSET", "LAG")] == ["4", "4", "0"]
    assert "CONSUMER-ID GROUP-INSTANCE-ID" not in " ".join(out.split()), "a members table for a group without members"

    # Produce more: the log end and the lag grow; the committed offset does not move.
    produce(broker, topic, {0: 5, 1: 1})
    c = consumer(broker, group)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1] == 15
    finally:
        c.close()
    rows = offsets_rows(ok(tern(broker, "groups", "describe", group)))
    assert [rows[(topic, 0)][k] for k in ("CURRENT-OFFSET", "LOG-END-OFFSET", "LAG")] == ["3", "15", "12"]
    assert [rows[(topic, 1)][k] for k in ("CURRENT-OFFSET", "LOG-END-OFFSET", "LAG")] == ["4", "5", "1"]

    # --verbose: the commit's leader epoch (none here) and metadata.
    out = ok(tern(broker, "groups", "describe", group, "--verbose"))
    header = table(out, ["GROUP", "TOPIC"])[0]
    assert list(header)[3] == "LEADER-EPOCH" and list(header)[-1] == "METADATA", header
    rows = offsets_rows(out)
    assert rows[(topic, 0)]["METADATA"] == "checkpoint-7" and rows[(topic, 0)]["LEADER-EPOCH"] == "-"
    assert rows[(topic, 1)]["METADATA"] == "-"


def test_describe_several_groups_and_all_groups(broker):
    topic = create_topic(broker)
    produce(broker, topic, {0: 2})
    g1, g2 = unique("grp-1"), unique("grp-2")
    commit(broker, g1, {(topic, 0): 1})
    commit(broker, g2, {(topic, 0): 2})
    for args in ([g1, g2], ["--all-groups"]):
        out = ok(tern(broker, "groups", "describe", *args))
        blocks = [b for b in tables(out) if b[0][:2] == ["GROUP", "TOPIC"]]
        got = {row[0]: (row[3], row[5]) for b in blocks for row in b[1:]}
        assert got == {g1: ("1", "1"), g2: ("2", "0")}, out


def test_describe_errors(broker):
    topic = create_topic(broker)
    known, missing = unique("grp-known"), unique("grp-missing")
    commit(broker, known, {(topic, 0): 0})
    failed(tern(broker, "groups", "describe", missing), f"group '{missing}' does not exist")
    # One unknown group among known ones: the others are still shown, the exit status is 1.
    p = tern(broker, "groups", "describe", known, missing)
    failed(p, f"group '{missing}' does not exist")
    assert (topic, 0) in offsets_rows(p.stdout.decode())
    failed(tern(broker, "groups", "describe"), "--all-groups", code=64)
    failed(tern(broker, "groups", "describe", known, "--all-groups"), code=64)


def test_describe_a_group_whose_topic_was_deleted(broker):
    topic = create_topic(broker)
    group = unique("grp-gone")
    produce(broker, topic, {0: 3})
    commit(broker, group, {(topic, 0): 2})
    ok(tern(broker, "topics", "delete", topic))
    p = tern(broker, "groups", "describe", group)
    row = offsets_rows(ok(p))[(topic, 0)]
    assert (row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"]) == ("2", "-", "-")
    assert f"cannot find the log end offset of {topic}-0: UNKNOWN_TOPIC_OR_PARTITION" in p.stderr.decode()


# ---------------------------------------------------------------- reset-offsets

@pytest.fixture
def reset_setup(broker):
    """A topic with 10 records in partition 0 and 6 in partition 1, one a second from an hour
    ago, and a group that committed 2 and 1."""
    topic = create_topic(broker, 2)
    base = (int(time.time()) - 3600) * 1000
    produce(broker, topic, {0: 10, 1: 6}, timestamps={0: [base + i * 1000 for i in range(10)], 1: [base + i * 1000 for i in range(6)]})
    group = unique("grp-reset")
    commit(broker, group, {(topic, 0): 2, (topic, 1): 1})
    return broker, topic, group, base


def test_reset_dry_run_changes_nothing(reset_setup):
    broker, topic, group, _ = reset_setup
    for extra in (["--dry-run"], []):
        p = tern(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", *extra)
        assert plan(ok(p)) == {(topic, 0): 0, (topic, 1): 0}
        assert ("No action will be performed" in p.stderr.decode()) == (extra == [])
        assert committed(broker, group, topic, [0, 1]) == {0: 2, 1: 1}
    out = ok(tern(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-latest", "--dry-run"))
    assert out.splitlines()[0].split() == ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
    assert plan(out) == {(topic, 0): 10, (topic, 1): 6}
    assert committed(broker, group, topic, [0, 1]) == {0: 2, 1: 1}


def test_reset_execute_each_scenario(reset_setup):
    broker, topic, group, base = reset_setup

    def reset(*args):
        p = tern(broker, "groups", "reset-offsets", group, *args, "--execute")
        return plan(ok(p)), p.stderr.decode()

    assert reset("--topic", topic, "--to-latest")[0] == {(topic, 0): 10, (topic, 1): 6}
    assert committed(broker, group, topic, [0, 1]) == {0: 10, 1: 6}

    assert reset("--topic", topic, "--to-earliest")[0] == {(topic, 0): 0, (topic, 1): 0}
    assert committed(broker, group, topic, [0, 1]) == {0: 0, 1: 0}

    # One partition only; the other keeps its offset.
    assert reset("--topic", f"{topic}:0", "--to-offset", "7")[0] == {(topic, 0): 7}
    assert committed(broker, group, topic, [0, 1]) == {0: 7, 1: 0}

    # Beyond the end: moved to the end, with a warning.
    got, err = reset("--topic", f"{topic}:0,1", "--to-offset", "100")
    assert got == {(topic, 0): 10, (topic, 1): 6}
    assert f"higher than the latest offset of {topic}-0" in err and f"{topic}-1" in err
    assert committed(broker, group, topic, [0, 1]) == {0: 10, 1: 6}

    # Shift back from the committed offsets; too far back stops at the log start.
    assert reset("--topic", topic, "--shift-by", "-3")[0] == {(topic, 0): 7, (topic, 1): 3}
    assert committed(broker, group, topic, [0, 1]) == {0: 7, 1: 3}
    got, err = reset("--topic", topic, "--shift-by", "-5")
    assert got == {(topic, 0): 2, (topic, 1): 0} and f"lower than the earliest offset of {topic}-1" in err
    assert reset("--topic", topic, "--shift-by=2")[0] == {(topic, 0): 4, (topic, 1): 2}

    # By time: the first record at or after it (records are 1 s apart from `base`), in UTC,
    # with a zone offset, and without a zone (UTC, as Kafka).
    for text in (iso(base + 4500), iso(base + 4500, "+02:00"), iso(base + 4500, "-05:30"), iso(base + 4500)[:-1]):
        assert reset("--topic", topic, "--to-datetime", text)[0] == {(topic, 0): 5, (topic, 1): 5}, text
        assert committed(broker, group, topic, [0, 1]) == {0: 5, 1: 5}
    got, err = reset("--topic", topic, "--to-datetime", iso(base + 5500))
    assert got == {(topic, 0): 6, (topic, 1): 6} and f"{topic}-1 has no record at or after" in err  # p1's last is base+5000
    assert "has no record" not in err.replace(f"{topic}-1 has no record", "")
    assert reset("--topic", topic, "--to-datetime", iso(base - 86_400_000))[0] == {(topic, 0): 0, (topic, 1): 0}

    # Every partition the group has offsets for.
    assert reset("--all-topics", "--to-latest")[0] == {(topic, 0): 10, (topic, 1): 6}
    assert committed(broker, group, topic, [0, 1]) == {0: 10, 1: 6}


def test_reset_respects_the_log_start(reset_setup):
    broker, topic, group, _ = reset_setup
    a = admin(broker)
    futures = a.delete_records([TopicPartition(topic, 0, 4)], request_timeout=10)
    for f in futures.values():
        f.result(15)
    out = ok(tern(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute"))
    assert plan(out) == {(topic, 0): 4, (topic, 1): 0}
    assert committed(broker, group, topic, [0, 1]) == {0: 4, 1: 0}
    p = tern(broker, "groups", "reset-offsets", group, "--topic", f"{topic}:0", "--to-offset", "1", "--execute")
    assert plan(ok(p)) == {(topic, 0): 4} and "lower than the earliest offset" in p.stderr.decode()


def test_reset_creates_a_group_that_does_not_exist(broker):
    topic = create_topic(broker, 2)
    produce(broker, topic, {0: 3, 1: 1})
    group = unique("grp-new")
    out = ok(tern(broker, "groups", "reset-offsets", group, "--topic", topic, "--to-latest", "--execute"))
    assert plan(out) == {(topic, 0): 3, (topic, 1): 1}
    assert committed(broker, group, topic, [0, 1]) == {0: 3, 1: 1}
    assert group in confluent_groups(broker)


def test_reset_errors(reset_setup):
    broker, topic, group, _ = reset_setup
    base = ["groups", "reset-offsets", group, "--topic", topic]
    for args, needle in (
        ([], "exactly one of"),
        (["--to-earliest", "--to-latest"], "exactly one of"),
        (["--to-earliest", "--dry-run", "--execute"], "--dry-run and --execute"),
        (["--to-offset", "-1"], "--to-offset"),
        (["--to-offset", "x"], "--to-offset"),
        (["--shift-by", "1.5"], "--shift-by"),
        (["--to-datetime", "2024-13-01T00:00:00.000"], "--to-datetime"),
        (["--to-datetime", "2024-02-30T00:00:00Z"], "--to-datetime"),
        (["--to-datetime", "yesterday"], "--to-datetime"),
        (["--to-earliest", "--topic", f"{topic}:x"], "is not a partition number"),
        (["--to-earliest", "--topic", f"{topic}:0:1"], "--topic"),
        (["--to-earliest", "--all-topics"], "exclude each other"),
    ):
        failed(tern(broker, *base, *args), needle, code=64)
    failed(tern(broker, "groups", "reset-offsets", group, "--to-earliest"), "--all-topics", code=64)
    missing = unique("grp-missing-topic")
    failed(tern(broker, "groups", "reset-offsets", group, "--topic", missing, "--to-earliest", "--execute"),
           "UNKNOWN_TOPIC_OR_PARTITION", missing)
    failed(tern(broker, "groups", "reset-offsets", group, "--topic", f"{topic}:1,5,9", "--to-earliest", "--execute"),
           "UNKNOWN_TOPIC_OR_PARTITION", f"{topic}-5, {topic}-9")
    # Shifting needs a committed offset.
    fresh = unique("grp-fresh")
    failed(tern(broker, "groups", "reset-offsets", fresh, "--topic", topic, "--shift-by", "1", "--execute"),
           f"cannot shift the offset of {topic}-0", "no committed offset")
    failed(tern(broker, "groups", "reset-offsets", fresh, "--all-topics", "--to-earliest"), "no committed offsets")
    # Nothing was committed by any of these.
    assert committed(broker, group, topic, [0, 1]) == {0: 2, 1: 1}
    assert fresh not in confluent_groups(broker)


# ---------------------------------------------------------------- delete

def test_delete_groups(broker):
    topic = create_topic(broker)
    g1, g2, keep = unique("grp-del1"), unique("grp-del2"), unique("grp-keep")
    for g in (g1, g2, keep):
        commit(broker, g, {(topic, 0): 0})
    assert ok(tern(broker, "groups", "delete", g1, g2)) == f"Deleted group {g1}.\nDeleted group {g2}.\n"
    assert set(confluent_groups(broker)) == {keep}
    assert committed(broker, g1, topic, [0]) == {0: None}
    assert committed(broker, keep, topic, [0]) == {0: 0}

    missing = unique("grp-nope")
    p = tern(broker, "groups", "delete", missing)
    failed(p, f"cannot delete group '{missing}': GROUP_ID_NOT_FOUND (the group does not exist)")
    # A mix: what can be deleted is, each failure is named, the exit status is 1.
    p = tern(broker, "groups", "delete", g1, keep)
    assert p.stdout.decode() == f"Deleted group {keep}.\n"
    failed(p, f"cannot delete group '{g1}': GROUP_ID_NOT_FOUND")
    assert confluent_groups(broker) == {}
    failed(tern(broker, "groups", "delete"), code=64)


# ---------------------------------------------------------------- a proxy for what the broker cannot show yet

def read_frame(sock):
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data
    head = exactly(4)
    if head is None:
        return None
    return exactly(struct.unpack(">i", head)[0])


CLASSES = {15: (DescribeGroupsRequest, DescribeGroupsResponse), 8: (OffsetCommitRequest, OffsetCommitResponse),
           42: (DeleteGroupsRequest, DeleteGroupsResponse)}


class Proxy(LoopbackServer):
    """Forwards Kafka connections to a broker, except requests whose API key is in `answers`:
    answers[key](version, request) returns a kafka-python response to send back instead, or
    None to forward that request after all. The broker must advertise the proxy's port, so
    that clients reach every broker (and the coordinator) through it."""

    def __init__(self):
        self.upstream = None
        self.answers = {}
        self.asked = []
        super().__init__()

    def handle(self, client):
        up = socket.create_connection(("127.0.0.1", self.upstream))
        lock = threading.Lock()

        def back():
            try:
                while (frame := read_frame(up)) is not None:
                    with lock:
                        client.sendall(struct.pack(">i", len(frame)) + frame)
            except OSError:
                pass  # the other side closed first
            client.close()

        threading.Thread(target=back, daemon=True).start()
        with client, up:
            while (frame := read_frame(client)) is not None:
                key, version, cid = struct.unpack(">hhi", frame[:8])
                self.asked.append((key, version))
                answer = self.answers.get(key)
                response = None
                if answer is not None:
                    req_cls, resp_cls = CLASSES[key]
                    (n,) = struct.unpack(">h", frame[8:10])
                    pos = 10 + max(n, 0)
                    if req_cls.flexible_version_q(version):
                        assert frame[pos] == 0, "tagged fields in a request header"
                        pos += 1
                    response = answer(version, req_cls.decode(frame[pos:], version=version))
                if response is None:
                    up.sendall(struct.pack(">i", len(frame)) + frame)
                    continue
                body = struct.pack(">i", cid) + (b"\0" if resp_cls.flexible_version_q(version) else b"") + response.encode(version=version)
                with lock:
                    client.sendall(struct.pack(">i", len(body)) + body)


class AdvertisedBroker(Broker):
    """A broker that advertises another port (the proxy's)."""

    def __init__(self, data_dir, advertised_port):
        super().__init__(data_dir)
        self.advertised_port = advertised_port

    def args(self):
        a = super().args()
        a[a.index("--advertise") + 1] = f"127.0.0.1:{self.advertised_port}"
        return a


@pytest.fixture
def proxied():
    """(broker, proxy): the broker's clients all go through the proxy."""
    proxy = Proxy()
    broker = AdvertisedBroker(tempfile.mkdtemp(prefix="tern-test-"), proxy.port)
    broker.start()
    proxy.upstream = broker.port
    try:
        yield broker, proxy
    finally:
        broker.kill()
        proxy.close()


def via(proxy):
    return ["--bootstrap-server", f"127.0.0.1:{proxy.port}"]


def assignment(version, topics, user_data=None):
    """Consumer-protocol assignment bytes, encoded by kafka-python."""
    TP = ConsumerProtocolAssignment.TopicPartition
    return ConsumerProtocolAssignment(version=version, assigned_partitions=[TP(topic=t, partitions=ps) for t, ps in topics],
                                      user_data=user_data).encode()


def stable_group(group, members):
    G = DescribeGroupsResponse.DescribedGroup
    M = G.DescribedGroupMember
    return DescribeGroupsResponse(throttle_time_ms=0, groups=[G(
        error_code=0, group_id=group, group_state="Stable", protocol_type="consumer", protocol_data="range",
        authorized_operations=None,
        members=[M(member_id=m, group_instance_id=i, client_id=c, client_host=h, member_metadata=b"", member_assignment=a)
                 for m, i, c, h, a in members])])


def test_describe_a_group_with_members(proxied):
    broker, proxy = proxied
    topic = create_topic(broker, 4)
    group = unique("grp-members")
    produce(broker, topic, {0: 5, 1: 6, 2: 7, 3: 8})
    commit(broker, group, {(topic, 0): 1, (topic, 1): 2, (topic, 3): 0})
    garbage = b"\x00\x00\x7f\xff\xff\xff"
    proxy.answers[15] = lambda v, r: stable_group(r.groups[0], [
        ("m-small", None, "client-s", "/10.1.1.2", assignment(3, [(topic, [2])], user_data=b"sticky")),
        ("m-big", "pod-b", "client-b", "/10.1.1.1", assignment(0, [(topic, [1, 0])])),
        ("m-joining", None, "client-j", "/10.1.1.3", b""),
        ("m-garbage", None, "client-g", "/10.1.1.4", garbage),
    ])

    p = tern(None, "groups", "describe", group, *via(proxy))
    out, err = ok(p), p.stderr.decode()
    assert "no active members" not in err
    assert "Warning: the assignment of member m-garbage" in err and "exceeds" in err, err
    assert table(out, ["GROUP", "STATE"])[0]["STATE"] == "Stable"
    state = table(out, ["GROUP", "STATE"])[0]
    assert (state["PROTOCOL-TYPE"], state["ASSIGNMENT-STRATEGY"], state["#MEMBERS"]) == ("consumer", "range", "4")

    # Kafka's order: the member with most partitions first, then the others, then the
    # committed partitions nobody holds.
    rows = table(out, ["GROUP", "TOPIC", "PARTITION"])
    assert [(r["PARTITION"], r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"], r["CONSUMER-ID"], r["HOST"], r["CLIENT-ID"])
            for r in rows] == [
        ("0", "1", "5", "4", "m-big", "/10.1.1.1", "client-b"),
        ("1", "2", "6", "4", "m-big", "/10.1.1.1", "client-b"),
        ("2", "-", "7", "-", "m-small", "/10.1.1.2", "client-s"),  # held, never committed
        ("3", "0", "8", "8", "-", "-", "-"),                       # committed, held by nobody
    ], out

    members = [line.split(None, 6) for line in out.splitlines() if line.startswith(group)
               and line.split()[1].startswith("m-")]
    assert [m[:6] for m in members] == [
        [group, "m-big", "pod-b", "/10.1.1.1", "client-b", "2"],
        [group, "m-small", "-", "/10.1.1.2", "client-s", "1"],
        [group, "m-joining", "-", "/10.1.1.3", "client-j", "0"],
        [group, "m-garbage", "-", "/10.1.1.4", "client-g", "-"],
    ], out
    assert [m[6] for m in members[:3]] == [f"{topic}:0,1", f"{topic}:2", "-"]
    assert members[3][6].startswith("(undecodable assignment, 6 bytes:"), members[3]
    header = [line.split() for line in out.splitlines() if line.startswith("GROUP") and "GROUP-INSTANCE-ID" in line]
    assert header == [["GROUP", "CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS", "ASSIGNMENT"]]

    # A group with members cannot have its offsets reset: refused before any commit.
    before = len(proxy.asked)
    p = tern(None, "groups", "reset-offsets", group, "--topic", topic, "--to-latest", "--execute", *via(proxy))
    failed(p, f"group '{group}' is inactive, but the current state is Stable (4 members)", "Stop its consumers")
    assert not any(k == 8 for k, _ in proxy.asked[before:]), "an OffsetCommit for a group with members"
    failed(tern(None, "groups", "reset-offsets", group, "--topic", topic, "--to-latest", "--dry-run", *via(proxy)), "inactive")
    assert committed(broker, group, topic, [0, 1, 3]) == {0: 1, 1: 2, 3: 0}


def test_reset_refused_by_the_coordinator(proxied):
    """The group looked inactive, then a consumer joined before the commit: the coordinator
    refuses the admin commit (UNKNOWN_MEMBER_ID), and the CLI says why."""
    broker, proxy = proxied
    topic = create_topic(broker, 2)
    group = unique("grp-race")
    produce(broker, topic, {0: 3, 1: 3})
    commit(broker, group, {(topic, 0): 1, (topic, 1): 1})
    R = OffsetCommitResponse.OffsetCommitResponseTopic
    proxy.answers[8] = lambda v, r: OffsetCommitResponse(throttle_time_ms=0, topics=[
        R(name=t.name, partitions=[R.OffsetCommitResponsePartition(partition_index=p.partition_index, error_code=25)
                                   for p in t.partitions]) for t in r.topics])
    p = tern(None, "groups", "reset-offsets", group, "--topic", topic, "--to-latest", "--execute", *via(proxy))
    err = failed(p, f"cannot commit the new offsets of group '{group}' for {topic}-0, {topic}-1: UNKNOWN_MEMBER_ID",
                 "active members")
    assert p.stdout == b"", "a plan printed for a reset that failed"
    assert committed(broker, group, topic, [0, 1]) == {0: 1, 1: 1}, err


def test_delete_refused_for_a_group_with_members(proxied):
    broker, proxy = proxied
    topic = create_topic(broker)
    group = unique("grp-busy")
    commit(broker, group, {(topic, 0): 0})
    proxy.answers[42] = lambda v, r: DeleteGroupsResponse(throttle_time_ms=0, results=[
        DeleteGroupsResponse.DeletableGroupResult(group_id=g, error_code=68) for g in r.groups_names])
    failed(tern(None, "groups", "delete", group, *via(proxy)), f"cannot delete group '{group}': NON_EMPTY_GROUP (the group has active members)")
    assert group in confluent_groups(broker)


def test_coordinator_errors_are_retried_then_reported(proxied):
    broker, proxy = proxied
    topic = create_topic(broker)
    group = unique("grp-loading")
    commit(broker, group, {(topic, 0): 0})
    G = DescribeGroupsResponse.DescribedGroup
    refusals = []

    def loading(v, r):
        if len(refusals) < 2:
            refusals.append(1)
            return DescribeGroupsResponse(throttle_time_ms=0, groups=[G(error_code=14, group_id=r.groups[0], group_state="",
                                                                        protocol_type="", protocol_data="", members=[],
                                                                        authorized_operations=None)])
        return None  # then the real broker answers

    proxy.answers[15] = loading
    out = ok(tern(None, "groups", "describe", group, *via(proxy)))
    assert len(refusals) == 2 and (topic, 0) in offsets_rows(out)
    assert sum(1 for k, _ in proxy.asked if k == 15) == 3

    # A group-level error that is not the coordinator's: reported with its Kafka name.
    proxy.answers[15] = lambda v, r: DescribeGroupsResponse(throttle_time_ms=0, groups=[G(
        error_code=30, group_id=r.groups[0], group_state="", protocol_type="", protocol_data="", members=[], authorized_operations=None)])
    failed(tern(None, "groups", "describe", group, *via(proxy)), f"cannot describe group '{group}': GROUP_AUTHORIZATION_FAILED")
    failed(tern(None, "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", *via(proxy)), "GROUP_AUTHORIZATION_FAILED")


# ---------------------------------------------------------------- common

def test_broker_down_is_a_readable_error():
    port = free_port()  # nothing listens here
    for args in (["list"], ["describe", "g"], ["reset-offsets", "g", "--topic", "t", "--to-earliest"], ["delete", "g"]):
        start = time.time()
        p = tern(None, "groups", *args, "--bootstrap-server", f"127.0.0.1:{port}", timeout=30)
        failed(p, f"cannot connect to 127.0.0.1:{port}", "connection refused")
        assert time.time() - start < 10


def test_bad_flags_exit_64(broker):
    failed(tern(broker, "groups", "list", "--no-such-flag"), "--no-such-flag", code=64)
    failed(tern(broker, "groups", "frobnicate"), code=64)
    failed(tern(None, "groups", "list", "--bootstrap-server", "host:notaport"), "--bootstrap-server", code=64)


def test_help_documents_the_commands():
    def help_text(*cmd):
        p = subprocess.run([TERN, *cmd, "--help"], capture_output=True, timeout=30)
        assert p.returncode == 0, p
        return p.stdout.decode()

    assert "groups" in help_text()
    groups = help_text("groups")
    for cmd in ("list", "describe", "reset-offsets", "delete"):
        assert cmd in groups
    for cmd, flags in ((["groups", "list"], ["--state", "--bootstrap-server"]),
                       (["groups", "describe"], ["--all-groups", "--verbose", "CURRENT-OFFSET", "LAG"]),
                       (["groups", "reset-offsets"], ["--topic", "--all-topics", "--to-earliest", "--to-latest", "--to-datetime",
                                                      "--to-offset", "--shift-by", "--dry-run", "--execute", "inactive"]),
                       (["groups", "delete"], ["NON_EMPTY_GROUP", "GROUP_ID_NOT_FOUND"])):
        text = " ".join(help_text(*cmd).split())
        for f in flags:
            assert f in text, (cmd, f)

