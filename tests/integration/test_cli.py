"""`tern topics`, `tern produce` and `tern consume` against the real broker.

Every check runs the real `tern` binary as a user would and cross-checks its effect with
another client (confluent-kafka's AdminClient, Producer and Consumer, kcat, kafka-python's
murmur2), so a command that only agrees with itself cannot pass.
"""
import base64
import os
import shutil
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic, ResourceType
from kafka.partitioner.default import murmur2

from conftest import TERN, free_port
from kafka_wire import API_VERSIONS, Conn, Dec, LoopbackServer, parse_api_versions_v0, wait_for

API_INCREMENTAL_ALTER_CONFIGS = 44
needs_kcat = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def tern(broker, *args, input=None, timeout=60, env=None, bootstrap=True):
    """Runs `tern ARGS --bootstrap-server <broker>`; returns the CompletedProcess (bytes)."""
    argv = [TERN, *args]
    if bootstrap and broker is not None:
        argv += ["--bootstrap-server", broker.bootstrap]
    e = dict(os.environ)
    e.pop("TERN_BOOTSTRAP", None)
    e.update(env or {})
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=e)


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout[-2000:]!r}\nstderr: {p.stderr[-2000:]!r}"
    return p.stdout.decode()


def failed(p, *needles, code=1):
    """Asserts the exit status and that stderr names every needle; returns stderr."""
    err = p.stderr.decode()
    assert p.returncode == code, f"exit {p.returncode}, expected {code}\nstdout: {p.stdout!r}\nstderr: {err}"
    for n in needles:
        assert n in err, f"{n!r} not in stderr: {err}"
    assert "Fatal error" not in err and "Stack dump" not in err, err
    return err


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10000})


def topic_names(broker):
    return set(admin(broker).list_topics(timeout=10).topics)


def topic_configs(broker, topic):
    r = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(broker)  # the handle must outlive the future
    return a.describe_configs([r])[r].result(10)


def read_all(broker, topic, partitions, timeout=30):
    """Every record of every partition via confluent-kafka: [(partition, offset, key, value)]."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out, eof = [], set()
        deadline = time.time() + timeout
        while time.time() < deadline and len(eof) < partitions:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                eof.add(m.partition())
                continue
            eof.discard(m.partition())
            out.append((m.partition(), m.offset(), m.key(), m.value()))
        assert len(eof) == partitions, f"no end of partitions within {timeout}s: {len(out)} records"
        return sorted(out)
    finally:
        c.close()


def produce_with_confluent(broker, topic, records):
    """records: [(partition, key, value)]; waits for every ack."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    errors = []
    for part, k, v in records:
        p.produce(topic, v, key=k, partition=part, on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors


def java_partition(key, partitions):
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def consume_lines(p):
    return ok(p).splitlines()


# ---------------------------------------------------------------- topics

def test_topics_create_list_describe_delete(broker):
    topic = unique("cli-topic")
    out = ok(tern(broker, "topics", "create", topic, "--partitions", "3",
                  "--config", "retention.ms=3600000", "--config", "cleanup.policy=compact"))
    assert out == f"Created topic {topic}.\n"

    # What the AdminClient sees: 3 partitions led by node 1, and both configs as overrides.
    md = admin(broker).list_topics(topic, timeout=10).topics[topic]
    assert md.error is None and sorted(md.partitions) == [0, 1, 2]
    assert {p.leader for p in md.partitions.values()} == {1}
    configs = topic_configs(broker, topic)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "compact"

    # `list` shows topics made by other clients too.
    other = unique("cli-other")
    a = admin(broker)
    a.create_topics([NewTopic(other, 1, 1)])[other].result(10)
    listed = ok(tern(broker, "topics", "list")).splitlines()
    assert listed == sorted(listed) and topic in listed and other in listed

    # `describe`: kafka-topics' layout, the topic id the AdminClient reports, overrides only.
    desc = a.describe_topics(TopicCollection([topic]))[topic].result(10)
    lines = ok(tern(broker, "topics", "describe", topic)).splitlines()
    assert len(lines) == 4, lines
    head = dict(f.split(": ", 1) for f in lines[0].split("\t"))
    assert head["Topic"] == topic
    # Kafka prints ids in URL-safe base64 (librdkafka in the standard alphabet): compare bits.
    raw = base64.urlsafe_b64decode(head["TopicId"] + "==")
    assert len(head["TopicId"]) == 22 and "+" not in head["TopicId"] and "/" not in head["TopicId"]
    assert struct.unpack(">qq", raw) == (desc.topic_id.get_most_significant_bits(),
                                         desc.topic_id.get_least_significant_bits())
    assert head["PartitionCount"] == "3" and head["ReplicationFactor"] == "1"
    assert sorted(head["Configs"].split(",")) == ["cleanup.policy=compact", "retention.ms=3600000"]
    for i, line in enumerate(lines[1:]):
        assert line.startswith("\t")
        fields = dict(f.split(": ", 1) for f in line.strip().split("\t"))
        assert fields == {"Topic": topic, "Partition": str(i), "Leader": "1", "Replicas": "1", "Isr": "1"}
    every = ok(tern(broker, "topics", "describe", topic, "--all-configs")).splitlines()[0]
    assert "max.message.bytes=" in every and "message.timestamp.type=CreateTime" in every

    # No names: every topic.
    both = ok(tern(broker, "topics", "describe"))
    assert f"Topic: {topic}\t" in both and f"Topic: {other}\t" in both

    out = ok(tern(broker, "topics", "delete", topic, other))
    assert out == f"Deleted topic {topic}.\nDeleted topic {other}.\n"
    assert wait_for(lambda: not {topic, other} & topic_names(broker))
    assert topic not in ok(tern(broker, "topics", "list")).splitlines()


def test_topics_create_defaults_and_errors(make_broker):
    broker = make_broker(settings={"num.partitions": 2})
    topic = unique("cli-dflt")
    ok(tern(broker, "topics", "create", topic))
    assert len(admin(broker).list_topics(topic, timeout=10).topics[topic].partitions) == 2  # num.partitions

    failed(tern(broker, "topics", "create", topic), "TOPIC_ALREADY_EXISTS", topic)
    assert ok(tern(broker, "topics", "create", topic, "--if-not-exists")) == ""
    failed(tern(broker, "topics", "create", "bad name!"), "INVALID_TOPIC_EXCEPTION")
    failed(tern(broker, "topics", "create", unique("cli-cfg"), "--config", "no.such.config=1"), "INVALID_CONFIG", "no.such.config")
    failed(tern(broker, "topics", "create", unique("cli-x"), "--partitions", "0"), "--partitions", code=64)
    failed(tern(broker, "topics", "create", unique("cli-x"), "--config", "novalue"), "KEY=VALUE", code=64)
    assert topic_names(broker) == {topic}


def test_describe_and_delete_unknown_topics(broker):
    known = unique("cli-known")
    ok(tern(broker, "topics", "create", known))
    missing = unique("cli-missing")
    p = tern(broker, "topics", "describe", known, missing)
    failed(p, "UNKNOWN_TOPIC_OR_PARTITION", missing)
    assert f"Topic: {known}\t" in p.stdout.decode()  # the known one is still described
    failed(tern(broker, "topics", "delete", missing), "UNKNOWN_TOPIC_OR_PARTITION", missing)
    assert ok(tern(broker, "topics", "delete", missing, "--if-exists")) == ""
    assert missing not in topic_names(broker)  # describing did not auto-create it


def broker_offers(broker, api_key):
    c = Conn(broker.port)
    try:
        error, keys = parse_api_versions_v0(c.request(API_VERSIONS, 0, b""))
    finally:
        c.close()
    assert error == 0
    return api_key in keys


def test_topics_alter(broker):
    if not broker_offers(broker, API_INCREMENTAL_ALTER_CONFIGS):
        pytest.skip("this broker does not serve IncrementalAlterConfigs (API 44) yet; "
                    "test_alter_request_and_response_on_the_wire covers the client side")
    topic = unique("cli-alter")
    ok(tern(broker, "topics", "create", topic, "--config", "retention.ms=1000"))
    out = ok(tern(broker, "topics", "alter", topic, "--config", "retention.ms=7200000",
                  "--config", "max.message.bytes=200000"))
    assert out == f"Updated config for topic {topic}.\n"
    c = topic_configs(broker, topic)
    assert c["retention.ms"].value == "7200000" and c["max.message.bytes"].value == "200000"
    assert c["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Deleting an override brings back the default; the other override stays.
    ok(tern(broker, "topics", "alter", topic, "--delete-config", "retention.ms"))
    c = topic_configs(broker, topic)
    assert c["retention.ms"].value == "604800000" and c["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert c["max.message.bytes"].value == "200000"
    assert "max.message.bytes=200000" in ok(tern(broker, "topics", "describe", topic))

    failed(tern(broker, "topics", "alter", unique("cli-nope"), "--config", "retention.ms=1"), "UNKNOWN_TOPIC_OR_PARTITION")
    failed(tern(broker, "topics", "alter", topic, "--config", "no.such.config=1"), "INVALID_CONFIG")
    failed(tern(broker, "topics", "alter", topic), "--config", code=64)


class FakeBroker(LoopbackServer):
    """A stand-in broker on a raw socket. It knows ApiVersions v0-2 only: a newer ApiVersions
    gets UNSUPPORTED_VERSION with its list in a v0 body (as Kafka answers), so the client must
    retry at v2. `handlers` answer other API keys: key -> fn(version, body) -> (flexible
    response header?, response body). Any other key closes the connection, as Kafka does."""

    def __init__(self, keys, handlers=None):
        self.keys = [(18, 0, 2)] + keys
        self.handlers = handlers or {}
        self.asked = []  # (api key, version) of every request
        super().__init__()

    def handle(self, conn):
        with conn:
            while True:
                head = self.recv(conn, 4)
                if head is None:
                    return
                frame = self.recv(conn, struct.unpack(">i", head)[0])
                key, version, cid = struct.unpack(">hhi", frame[:8])
                self.asked.append((key, version))
                if key == 18:
                    keys = struct.pack(">i", len(self.keys)) + b"".join(struct.pack(">hhh", *k) for k in self.keys)
                    if version > 2:
                        body = struct.pack(">h", 35) + keys
                    else:
                        body = struct.pack(">h", 0) + keys + (struct.pack(">i", 0) if version >= 1 else b"")
                    header = struct.pack(">i", cid)
                elif key in self.handlers:
                    # Request header v2: client id (int16 string), then tagged fields.
                    (n,) = struct.unpack(">h", frame[8:10])
                    r = Dec(frame[10 + max(n, 0):], flexible=True)
                    r.tags()
                    flexible, body = self.handlers[key](version, r)
                    header = struct.pack(">i", cid) + (b"\0" if flexible else b"")
                else:
                    return
                conn.sendall(struct.pack(">i", len(header) + len(body)) + header + body)

    @staticmethod
    def recv(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data


def cstring(s):
    return b"\0" if s is None else bytes([len(s) + 1]) + s.encode()


def test_alter_on_broker_without_incremental_alter_configs():
    fake = FakeBroker(keys=[(3, 0, 12), (0, 3, 9), (1, 4, 12)])
    try:
        p = tern(None, "topics", "alter", "t", "--config", "retention.ms=1",
                 "--bootstrap-server", f"127.0.0.1:{fake.port}", timeout=30)
        failed(p, "does not support IncrementalAlterConfigs", "API key 44")
        # Negotiation: our highest ApiVersions first, then the broker's highest after its refusal.
        assert fake.asked == [(18, 4), (18, 2)], fake.asked
    finally:
        fake.close()


def test_alter_request_and_response_on_the_wire():
    """The client side of IncrementalAlterConfigs, whatever the real broker serves yet: the
    request as a broker decodes it, and both answers (success, an error with its message)."""
    requests, answers = [], [(0, None), (40, "Invalid value x for configuration retention.ms")]

    def alter(version, r):
        def config():
            c = (r.nstring(), r.i8(), r.nstring())
            r.tags()
            return c

        def resource():
            res = (r.i8(), r.nstring(), r.array(lambda _: config()))
            r.tags()
            return res

        resources = r.array(lambda _: resource())
        requests.append((version, resources, r.i8()))
        code, message = answers[len(requests) - 1]
        body = struct.pack(">i", 0) + bytes([2])  # throttle, one response
        body += struct.pack(">h", code) + cstring(message) + struct.pack(">b", 2) + cstring(resources[0][1]) + b"\0"
        return True, body + b"\0"

    fake = FakeBroker(keys=[(44, 0, 1)], handlers={44: alter})
    try:
        bootstrap = ["--bootstrap-server", f"127.0.0.1:{fake.port}"]
        out = ok(tern(None, "topics", "alter", "orders", "--config", "retention.ms=5000",
                      "--config", "cleanup.policy=compact", "--delete-config", "max.message.bytes", *bootstrap, timeout=30))
        assert out == "Updated config for topic orders.\n"
        # v1 (the highest both speak), topic resource (2); SET is op 0, DELETE op 1 with a null value.
        assert requests[0] == (1, [(2, "orders", [("retention.ms", 0, "5000"), ("cleanup.policy", 0, "compact"),
                                                  ("max.message.bytes", 1, None)])], 0)
        p = tern(None, "topics", "alter", "orders", "--config", "retention.ms=x", *bootstrap, timeout=30)
        failed(p, "cannot alter topic 'orders'", "INVALID_CONFIG", "Invalid value x")
    finally:
        fake.close()


# ---------------------------------------------------------------- produce

def test_produce_keys_values_partitions_read_back_with_confluent(broker):
    topic = unique("cli-prod")
    ok(tern(broker, "topics", "create", topic, "--partitions", "3"))
    keyed = [(f"key-{i}".encode(), f"value {i} with spaces: and a colon".encode()) for i in range(40)]
    lines = b"".join(k + b":" + v + b"\n" for k, v in keyed)
    assert ok(tern(broker, "produce", topic, "--key-separator", ":", input=lines)) == ""

    got = read_all(broker, topic, 3)
    assert len(got) == 40
    # Keyed records land where the Java client's murmur2 partitioner puts them, in input order.
    for k, v in keyed:
        assert [(p, val) for p, _, key, val in got if key == k] == [(java_partition(k, 3), v)]
    for part in range(3):
        mine = [(o, key) for p, o, key, _ in got if p == part]
        assert [o for o, _ in mine] == list(range(len(mine)))
        assert [k for _, k in mine] == [k for k, _ in keyed if java_partition(k, 3) == part]

    # --partition: every record there, unkeyed (null key), empty lines kept as empty values.
    ok(tern(broker, "produce", topic, "--partition", "1", input="x\n\ny\r\nz"))
    p1 = [(key, val) for p, _, key, val in read_all(broker, topic, 3) if p == 1]
    assert p1[-4:] == [(None, b"x"), (None, b""), (None, b"y"), (None, b"z")]


def test_produce_keeps_input_order_with_rounds_in_flight(broker):
    """Each read of standard input goes out as its own request, up to 5 in flight: they must
    reach the broker in input order. Input without a final newline makes two rounds at once
    (the complete lines, then the last line at end of input), both waiting for the new
    connection to the partition's leader; CI once saw the second land first."""
    topic = unique("cli-order")
    ok(tern(broker, "topics", "create", topic, "--partitions", "2"))
    runs = 25
    for i in range(runs):
        ok(tern(broker, "produce", topic, "--partition", "1", input=f"a{i}\nb{i}\nc{i}"))
    got = [(o, val) for part, o, _, val in read_all(broker, topic, 2) if part == 1]
    assert [o for o, _ in got] == list(range(3 * runs))
    assert [val for _, val in got] == [f"{x}{i}".encode() for i in range(runs) for x in "abc"]


@needs_kcat
def test_produce_round_robin_read_with_kcat(broker):
    topic = unique("cli-rr")
    ok(tern(broker, "topics", "create", topic, "--partitions", "2"))
    ok(tern(broker, "produce", topic, input="".join(f"m{i}\n" for i in range(10))))
    c = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-e", "-o", "beginning",
                        "-f", "%p %o %k|%s\n"], capture_output=True, timeout=60)
    assert c.returncode == 0, c.stderr
    rows = [l.split(" ", 2) for l in c.stdout.decode().splitlines()]
    by_part = {p: [rest for q, _, rest in sorted(rows, key=lambda r: int(r[1])) if q == p] for p in ("0", "1")}
    # Unkeyed records alternate between the partitions, each partition in input order.
    assert sorted(by_part["0"] + by_part["1"]) == sorted(f"|m{i}" for i in range(10))
    assert len(by_part["0"]) == 5 and len(by_part["1"]) == 5
    for part in by_part.values():
        assert part == sorted(part, key=lambda s: int(s[2:]))


@pytest.mark.parametrize("acks", ["0", "1", "-1", "all"])
def test_produce_acks(broker, acks):
    topic = unique("cli-acks")
    ok(tern(broker, "topics", "create", topic))
    ok(tern(broker, "produce", topic, "--acks", acks, input="".join(f"a{i}\n" for i in range(100))))
    # acks=0 returns once written; the records still arrive.
    assert wait_for(lambda: len(read_all(broker, topic, 1)) == 100, timeout=20)
    assert [v for _, _, _, v in read_all(broker, topic, 1)] == [f"a{i}".encode() for i in range(100)]


def test_produce_many_lines_in_several_batches(broker):
    topic = unique("cli-many")
    ok(tern(broker, "topics", "create", topic, "--partitions", "2"))
    # ~3 MB: several stdin reads and several 512 KiB batches per partition.
    values = [f"{i:06d}-" + "x" * 90 for i in range(30000)]
    ok(tern(broker, "produce", topic, input="\n".join(values) + "\n", timeout=120))
    got = read_all(broker, topic, 2, timeout=60)
    assert sorted(v.decode() for _, _, _, v in got) == values
    # And tern reads them all back too.
    lines = consume_lines(tern(broker, "consume", topic, "--from-beginning", "--max-messages", "30000", timeout=120))
    assert sorted(lines) == values


def test_produce_sends_lines_as_they_arrive(broker):
    """An interactive producer: a line is sent when it is read, not at end of input."""
    topic = unique("cli-live")
    ok(tern(broker, "topics", "create", topic))
    p = subprocess.Popen([TERN, "produce", topic, "--bootstrap-server", broker.bootstrap],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"first\n")
        p.stdin.flush()
        assert wait_for(lambda: [v for *_, v in read_all(broker, topic, 1)] == [b"first"], timeout=20)
        assert p.poll() is None  # still reading
        p.stdin.write(b"second\n")
        p.stdin.close()
        assert p.wait(30) == 0, p.stderr.read()
    finally:
        p.kill()
    assert [v for *_, v in read_all(broker, topic, 1)] == [b"first", b"second"]


def test_produce_errors(make_broker):
    broker = make_broker(settings={"auto.create.topics.enable": "false"})
    missing = unique("cli-missing")
    failed(tern(broker, "produce", missing, input="a\n"), "UNKNOWN_TOPIC_OR_PARTITION", missing)
    assert missing not in topic_names(broker)
    topic = unique("cli-perr")
    ok(tern(broker, "topics", "create", topic, "--partitions", "2"))
    failed(tern(broker, "produce", topic, "--partition", "2", input="a\n"), "no partition 2")
    failed(tern(broker, "produce", topic, "--key-separator", ":", input="k:v\nnokey\n"), "line 2", "nokey")
    # A batch the broker refuses: the Kafka error by name, and a non-zero exit.
    ok(tern(broker, "topics", "create", small := unique("cli-small"), "--config", "max.message.bytes=100"))
    failed(tern(broker, "produce", small, input="y" * 500 + "\n"), "MESSAGE_TOO_LARGE", f"{small}-0")


def test_produce_auto_creates_when_the_broker_allows(make_broker):
    broker = make_broker(settings={"num.partitions": 2})
    topic = unique("cli-auto")
    ok(tern(broker, "produce", topic, input="a\nb\n"))
    assert sorted(v for *_, v in read_all(broker, topic, 2)) == [b"a", b"b"]


# ---------------------------------------------------------------- consume

@needs_kcat
def test_consume_what_kcat_produced(broker):
    topic = unique("cli-cons")
    ok(tern(broker, "topics", "create", topic, "--partitions", "2"))
    data = "".join(f"k{i}:v{i}\n" for i in range(6))
    for part in ("0", "1"):
        p = subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", topic, "-p", part, "-K:"],
                           input=data.encode(), capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
    subprocess.run(["kcat", "-b", broker.bootstrap, "-P", "-t", topic, "-p", "0"], input=b"unkeyed\n",
                   capture_output=True, timeout=60, check=True)

    lines = consume_lines(tern(broker, "consume", topic, "--from-beginning", "--timeout-ms", "2000",
                               "--print-partition", "--print-offset", "--print-key"))
    expected = [f"Partition:{p}\tOffset:{i}\tk{i}\tv{i}" for p in (0, 1) for i in range(6)]
    expected.append("Partition:0\tOffset:6\tnull\tunkeyed")
    assert sorted(lines) == sorted(expected)
    # Within a partition, offset order.
    p0 = [l for l in lines if l.startswith("Partition:0")]
    assert p0 == sorted(p0, key=lambda l: int(l.split("\t")[1][7:]))

    # Values only by default; --partition and --offset pick a range; --max-messages stops early.
    assert consume_lines(tern(broker, "consume", topic, "--partition", "1", "--offset", "4", "--timeout-ms", "1500")) == ["v4", "v5"]
    assert consume_lines(tern(broker, "consume", topic, "--partition", "0", "--offset", "earliest", "--max-messages", "2")) == ["v0", "v1"]
    assert consume_lines(tern(broker, "consume", topic, "--partition", "0", "--from-beginning", "--max-messages", "1",
                              "--print-key", "--key-separator", "=")) == ["k0=v0"]


def test_consume_starts_at_the_end_and_waits_for_new_records(broker):
    topic = unique("cli-tail")
    ok(tern(broker, "topics", "create", topic))
    produce_with_confluent(broker, topic, [(0, None, b"old")])
    fetches = broker.metric('tern_requests_total{api="fetch"}')
    p = subprocess.Popen([TERN, "consume", topic, "--max-messages", "2", "--timeout-ms", "30000",
                          "--bootstrap-server", broker.bootstrap], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Fetching means the start offset is fixed (ListOffsets comes first).
        assert wait_for(lambda: broker.metric('tern_requests_total{api="fetch"}') > fetches, timeout=20)
        produce_with_confluent(broker, topic, [(0, b"k", b"new1"), (0, None, b"new2")])
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert out.decode().splitlines() == ["new1", "new2"]
    assert b"Processed a total of 2 messages" in err


def test_consume_errors(broker):
    missing = unique("cli-missing")
    failed(tern(broker, "consume", missing, "--timeout-ms", "500"), "UNKNOWN_TOPIC_OR_PARTITION", missing)
    assert missing not in topic_names(broker)  # consuming does not create topics
    topic = unique("cli-cerr")
    ok(tern(broker, "topics", "create", topic))
    produce_with_confluent(broker, topic, [(0, None, b"one")])
    failed(tern(broker, "consume", topic, "--partition", "3"), "no partition 3")
    failed(tern(broker, "consume", topic, "--partition", "0", "--offset", "50", "--timeout-ms", "500"),
           "OFFSET_OUT_OF_RANGE", f"{topic}-0")
    failed(tern(broker, "consume", topic, "--offset", "1"), "--partition", code=64)
    failed(tern(broker, "consume", topic, "--offset", "-3", "--partition", "0"), "--offset", code=64)
    failed(tern(broker, "consume", topic, "--from-beginning", "--offset", "latest"), code=64)
    # An empty topic with a timeout: nothing printed, a clean exit.
    empty = unique("cli-empty")
    ok(tern(broker, "topics", "create", empty))
    start = time.time()
    assert ok(tern(broker, "consume", empty, "--from-beginning", "--timeout-ms", "700")) == ""
    assert time.time() - start < 10


# ---------------------------------------------------------------- common

def test_broker_down_is_a_readable_error():
    port = free_port()  # nothing listens here
    for args, stdin in ((["topics", "list"], None), (["topics", "create", "t"], None),
                        (["produce", "t"], b"a\n"), (["consume", "t"], None)):
        start = time.time()
        p = tern(None, *args, "--bootstrap-server", f"127.0.0.1:{port}", input=stdin, timeout=30)
        failed(p, f"cannot connect to 127.0.0.1:{port}", "connection refused")
        assert time.time() - start < 10


def test_broker_stopping_under_a_consumer(broker):
    topic = unique("cli-gone")
    ok(tern(broker, "topics", "create", topic))
    p = subprocess.Popen([TERN, "consume", topic, "--bootstrap-server", broker.bootstrap],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        fetches = broker.metric('tern_requests_total{api="fetch"}')
        assert wait_for(lambda: broker.metric('tern_requests_total{api="fetch"}') > fetches, timeout=20)
        broker.kill()
        _, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 1, err
    assert b"127.0.0.1" in err and (b"closed the connection" in err or b"connection refused" in err), err


def test_bootstrap_from_environment_and_bad_values(broker):
    topic = unique("cli-env")
    ok(tern(broker, "topics", "create", topic))
    assert topic in ok(tern(None, "topics", "list", env={"TERN_BOOTSTRAP": broker.bootstrap})).splitlines()
    # The flag wins over the environment.
    assert topic in ok(tern(broker, "topics", "list", env={"TERN_BOOTSTRAP": "127.0.0.1:1"})).splitlines()
    failed(tern(None, "topics", "list", "--bootstrap-server", "host:notaport"), "--bootstrap-server", code=64)
    failed(tern(broker, "topics", "list", "--no-such-flag"), "--no-such-flag", code=64)
    failed(tern(broker, "produce", topic, "--acks", "2", input=""), "--acks", code=64)
    failed(tern(broker, "produce", topic, "--compression", "brotli", input=""), "--compression", code=64)
    failed(tern(broker, "topics", "delete"), code=64)


def test_help_documents_the_commands():
    top = subprocess.run([TERN, "--help"], capture_output=True, timeout=30).stdout.decode()
    for cmd in ("serve", "topics", "produce", "consume"):
        assert cmd in top
    topics = subprocess.run([TERN, "topics", "--help"], capture_output=True, timeout=30).stdout.decode()
    for cmd in ("create", "list", "describe", "alter", "delete"):
        assert cmd in topics
    for cmd, flags in ((["produce"], ["--key-separator", "--acks", "--partition", "--compression", "--bootstrap-server"]),
                       (["consume"], ["--from-beginning", "--offset", "--max-messages", "--timeout-ms", "--print-key", "--print-offset"]),
                       (["topics", "alter"], ["--config", "--delete-config"])):
        text = subprocess.run([TERN, *cmd, "--help"], capture_output=True, timeout=30).stdout.decode()
        for f in flags:
            assert f in text, (cmd, f)
