"""Durability of acknowledged produce: acks wait for the object write, kill -9 loses nothing
acked and leaves no gap, SIGTERM flushes, and failing object PUTs are retried.

Timing-sensitive steps use raw Produce requests (built by hand with `struct`), so the test knows
exactly when a request left and when its response came back; the rest uses confluent-kafka.
"""
import socket
import struct
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PUTS = 'tern_object_store_requests_total{type="PUT"}'
PUT_ERRORS = 'tern_object_store_errors_total{type="PUT"}'
DELAY_S = 3.0

# ---------------------------------------------------------------------------------------------
# Kafka wire helpers (request header v1, non-flexible versions)
# ---------------------------------------------------------------------------------------------

API_PRODUCE, API_FETCH, API_METADATA, API_VERSIONS, API_OFFSET_FOR_LEADER_EPOCH = 0, 1, 3, 18, 23


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)


def string(s):
    b = s.encode()
    return i16(len(b)) + b


def nstring(s):
    return i16(-1) if s is None else string(s)


def nbytes(b):
    return i32(-1) if b is None else i32(len(b)) + b


def array(items, enc):
    return i32(len(items)) + b"".join(enc(x) for x in items)


def varint(n):
    z = ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError(f"response truncated: need {n} bytes at {self.p} of {len(self.d)}")
        v = self.d[self.p:self.p + n]
        self.p += n
        return v

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def u32(self): return struct.unpack(">I", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]

    def nstring(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def nbytes(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def array(self, dec):
        n = self.i32()
        return None if n < 0 else [dec(self) for _ in range(n)]

    def varint(self):
        z = shift = 0
        while True:
            b = self.take(1)[0]
            z |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return (z >> 1) ^ -(z & 1)

    def remaining(self):
        return len(self.d) - self.p


def record_batch(values):
    ts = int(time.time() * 1000)
    records = b""
    for i, v in enumerate(values):
        body = i8(0) + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        records += varint(len(body)) + body
    covered = struct.pack(">hiqqqhii", 0, len(values) - 1, ts, ts, -1, -1, -1, len(values)) + records
    after_length = i32(-1) + i8(2) + struct.pack(">I", crc32c(covered)) + covered
    return i64(0) + i32(len(after_length)) + after_length


def parse_batches(data):
    """[(offset, value, partition_leader_epoch)] of the complete batches in `data`."""
    out = []
    r = Reader(data or b"")
    while r.remaining() >= 12:
        base_offset = r.i64()
        length = r.i32()
        if r.remaining() < length:
            break
        b = Reader(r.take(length))
        leader_epoch = b.i32()
        assert b.i8() == 2
        crc = b.u32()
        assert crc32c(b.d[b.p:]) == crc, "fetched batch fails its CRC"
        assert b.i16() & 0x07 == 0, "test batches are uncompressed"
        b.i32(); b.i64(); b.i64(); b.i64(); b.i16(); b.i32()
        for _ in range(b.i32()):
            b.varint(); b.i8(); b.varint()
            offset_delta = b.varint()
            kl = b.varint()
            if kl >= 0:
                b.take(kl)
            vl = b.varint()
            value = b.take(vl) if vl >= 0 else None
            for _ in range(b.varint()):
                b.take(b.varint())
                hl = b.varint()
                if hl >= 0:
                    b.take(hl)
            out.append((base_offset + offset_delta, value, leader_epoch))
    return out


class Conn:
    def __init__(self, port, timeout=15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.next_cid = 1

    def close(self):
        self.sock.close()

    def send(self, api_key, version, body):
        cid = self.next_cid
        self.next_cid += 1
        payload = i16(api_key) + i16(version) + i32(cid) + nstring("tern-durability") + body
        self.sock.sendall(i32(len(payload)) + payload)
        return cid

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv(self):
        size = struct.unpack(">i", self.recv_exact(4))[0]
        data = self.recv_exact(size)
        return struct.unpack(">i", data[:4])[0], data[4:]

    def nothing_within(self, seconds):
        """True if no byte arrives within `seconds` (the connection stays open and silent)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(15)
        raise AssertionError(f"unexpected {'EOF' if not data else 'data'} on the connection")

    def request(self, api_key, version, body):
        cid = self.send(api_key, version, body)
        got, resp = self.recv()
        assert got == cid
        return resp


def produce_body(topic, partition, batch, acks=-1, timeout_ms=30000):
    return (nstring(None) + i16(acks) + i32(timeout_ms) +
            array([topic], lambda t: string(t) + array([partition], lambda p: i32(p) + nbytes(batch))))


def parse_produce_v7(body):
    """[(topic, partition, error, base_offset)] of a Produce v7 response."""
    r = Reader(body)
    out = []
    for _ in range(r.i32()):
        name = r.nstring()
        for _ in range(r.i32()):
            index, error, base = r.i32(), r.i16(), r.i64()
            r.i64(); r.i64()  # log_append_time, log_start_offset
            out.append((name, index, error, base))
    r.i32()
    assert r.remaining() == 0
    return out


def leader_epoch(port, topic, partition=0):
    """The partition's leader epoch from a Metadata v7 response."""
    c = Conn(port)
    try:
        body = c.request(API_METADATA, 7, array([topic], string) + i8(0))
    finally:
        c.close()
    r = Reader(body)
    r.i32()  # throttle
    r.array(lambda r: (r.i32(), r.nstring(), r.i32(), r.nstring()))  # brokers
    r.nstring(); r.i32()  # cluster id, controller id
    found = None
    for _ in range(r.i32()):
        error, name, _internal = r.i16(), r.nstring(), r.i8()
        assert error == 0, f"metadata error {error} for {name}"
        for _ in range(r.i32()):
            perr, index, _leader, epoch = r.i16(), r.i32(), r.i32(), r.i32()
            r.array(Reader.i32); r.array(Reader.i32); r.array(Reader.i32)
            if name == topic and index == partition:
                assert perr == 0
                found = epoch
    assert r.remaining() == 0
    assert found is not None, f"{topic}/{partition} not in metadata"
    return found


def offset_for_leader_epoch(port, topic, partition, epoch):
    """(error, leader_epoch, end_offset) from OffsetForLeaderEpoch v2."""
    c = Conn(port)
    try:
        body = c.request(API_OFFSET_FOR_LEADER_EPOCH, 2,
                         array([topic], lambda t: string(t) + array([partition], lambda p: i32(p) + i32(-1) + i32(epoch))))
    finally:
        c.close()
    r = Reader(body)
    r.i32()  # throttle
    out = None
    for _ in range(r.i32()):
        name = r.nstring()
        for _ in range(r.i32()):
            error, index, le, end = r.i16(), r.i32(), r.i32(), r.i64()
            if name == topic and index == partition:
                out = (error, le, end)
    assert r.remaining() == 0
    return out


def fetch_raw(port, topic, partition, offset):
    """(error, high_watermark, [(offset, value, leader_epoch)]) via Fetch v11."""
    c = Conn(port)
    try:
        body = (i32(-1) + i32(100) + i32(1) + i32(1 << 22) + i8(0) + i32(0) + i32(-1) +
                array([topic], lambda t: string(t) + array([partition], lambda p: i32(p) + i32(-1) + i64(offset) + i64(-1) + i32(1 << 22))) +
                i32(0) + string(""))
        body = c.request(API_FETCH, 11, body)
    finally:
        c.close()
    r = Reader(body)
    r.i32()
    assert r.i16() == 0
    r.i32()
    result = None
    for _ in range(r.i32()):
        name = r.nstring()
        for _ in range(r.i32()):
            index, error, hw = r.i32(), r.i16(), r.i64()
            r.i64(); r.i64()
            r.array(lambda r: (r.i64(), r.i64()))
            r.i32()
            records = r.nbytes()
            if name == topic and index == partition:
                result = (error, hw, parse_batches(records))
    return result


# ---------------------------------------------------------------------------------------------
# Client-library helpers
# ---------------------------------------------------------------------------------------------


def create_topic(broker, name, partitions=1):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result(30)


class Deliveries:
    def __init__(self):
        self.lock = threading.Lock()
        self.results = []  # (err, offset, value, monotonic time)

    def __call__(self, err, msg):
        with self.lock:
            self.results.append((err, msg.offset(), msg.value(), time.monotonic()))

    def acked(self):
        return sorted((o, v) for e, o, v, _ in self.results if e is None)

    def failed(self):
        return [(e, v) for e, o, v, _ in self.results if e is not None]


def produce_values(broker, topic, values, acks="all", partition=0, timeout=40):
    """Produce and wait; asserts every message was acked; returns [(offset, value)]."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks, "linger.ms": 5,
                  "message.timeout.ms": int(timeout * 1000) - 5000})
    d = Deliveries()
    for v in values:
        p.produce(topic, v, partition=partition, on_delivery=d)
    assert p.flush(timeout) == 0, "messages left undelivered"
    assert not d.failed(), f"delivery failed: {d.failed()[:3]}"
    return d.acked()


def consume_all(broker, topic, partition=0, start=0, timeout=30):
    """[(offset, value)] from `start` to the end of the partition."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, partition, start)])
        out = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(f"consume error: {m.error()}")
            out.append((m.offset(), m.value()))
        raise AssertionError(f"no end of partition within {timeout}s; got {len(out)} records")
    finally:
        c.close()


def assert_contiguous(records, start=0):
    offsets = [o for o, _ in records]
    assert offsets == list(range(start, start + len(records))), f"offsets have a gap or duplicate: {offsets}"


# ---------------------------------------------------------------------------------------------
# 1. No ack before the object write
# ---------------------------------------------------------------------------------------------


def test_produce_is_not_acked_before_its_object_write(make_broker):
    broker = make_broker(settings={"object.store.fault.put.delay.ms": str(int(DELAY_S * 1000))})
    topic = f"slow-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)

    # Raw requests, acks=all and acks=1 on two connections at once: we know when each left.
    conns = [Conn(broker.port), Conn(broker.port)]
    for c in conns:
        c.request(API_VERSIONS, 0, b"")
    puts_before = broker.metric(PUTS)
    sent = []
    for c, acks, value in [(conns[0], -1, b"acks-all"), (conns[1], 1, b"acks-1")]:
        c.send(API_PRODUCE, 7, produce_body(topic, 0, record_batch([value]), acks=acks))
        sent.append(time.monotonic())
    # Well inside the delay: no response, and no PUT has completed.
    for c in conns:
        assert c.nothing_within(1.5), "a produce was answered before its object write finished"
    assert broker.metric(PUTS) == puts_before, "a PUT completed before the injected delay elapsed"
    offsets = []
    for c, t0 in zip(conns, sent):
        _, body = c.recv()
        elapsed = time.monotonic() - t0
        assert elapsed >= DELAY_S - 0.1, f"produce acked after {elapsed:.2f}s, before the {DELAY_S}s object write"
        [(name, index, error, base)] = parse_produce_v7(body)
        assert (name, index, error) == (topic, 0, 0)
        offsets.append(base)
        c.close()
    assert sorted(offsets) == [0, 1]
    assert broker.metric(PUTS) > puts_before, "acked without any PUT having completed"

    # The same through confluent-kafka, with the connection and metadata already in place.
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    p.list_topics(topic, timeout=10)
    puts_before = broker.metric(PUTS)
    d = Deliveries()
    t0 = time.monotonic()
    p.produce(topic, b"via-librdkafka", partition=0, on_delivery=d)
    p.poll(0)
    assert p.flush(30) == 0
    [(err, offset, _value, at)] = d.results
    assert err is None and offset == 2
    assert at - t0 >= DELAY_S - 0.1, f"delivery report after {at - t0:.2f}s, before the {DELAY_S}s object write"
    assert broker.metric(PUTS) > puts_before
    got = consume_all(broker, topic)
    assert_contiguous(got)
    assert [v for _, v in got] in ([b"acks-all", b"acks-1", b"via-librdkafka"],
                                   [b"acks-1", b"acks-all", b"via-librdkafka"])


# ---------------------------------------------------------------------------------------------
# 2. kill -9 while a write is in flight
# ---------------------------------------------------------------------------------------------


def test_kill_9_during_object_write_loses_nothing_acked_and_leaves_no_gap(make_broker):
    broker = make_broker(settings={"object.store.fault.put.delay.ms": str(int(DELAY_S * 1000))})
    topic = f"kill-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)
    epoch_before = leader_epoch(broker.port, topic)
    assert epoch_before >= 0

    a = [f"A-{i}".encode() for i in range(10)]
    assert produce_values(broker, topic, a) == list(enumerate(a))

    b = [f"B-{i}".encode() for i in range(10)]
    conn = Conn(broker.port)
    conn.send(API_PRODUCE, 7, produce_body(topic, 0, record_batch(b), acks=-1))
    assert conn.nothing_within(1.0), "batch B was answered before its object write could finish"
    broker.kill()
    try:
        leftover = conn.sock.recv(1 << 16)
    except ConnectionResetError:
        leftover = b""
    assert leftover == b"", "batch B was answered although the broker was killed during its write"
    conn.close()

    restarted = make_broker(data_dir=broker.data_dir)  # same data, no injected delay
    epoch_after = leader_epoch(restarted.port, topic)
    assert epoch_after > epoch_before, f"leader epoch {epoch_after} after restart, {epoch_before} before"

    got = consume_all(restarted, topic)
    assert_contiguous(got)
    values = [v for _, v in got]
    assert values[:len(a)] == a, "acked batch A is not intact at offsets 0..9"
    # B was never acked; it may be missing, but if present it is whole and right after A.
    assert values[len(a):] in ([], b), f"unexpected records after A: {values[len(a):]}"
    n = len(values)

    c = [f"C-{i}".encode() for i in range(5)]
    assert produce_values(restarted, topic, c) == list(enumerate(c, start=n)), \
        "C does not continue right after the last offset"
    got = consume_all(restarted, topic)
    assert_contiguous(got)
    assert [v for _, v in got] == values + c

    # Batches carry the epoch they were written in; the old epoch ends where C begins.
    raw = []
    while len(raw) < n + len(c):  # a fetch may stop at an object boundary: continue from there
        error, hw, part = fetch_raw(restarted.port, topic, 0, len(raw))
        assert error == 0 and hw == n + len(c) and part, f"fetch at {len(raw)}: error {error}, hw {hw}"
        raw += [r for r in part if r[0] >= len(raw)]
    assert [o for o, _, _ in raw] == list(range(n + len(c)))
    epochs = {v: e for _, v, e in raw}
    assert all(epochs[v] == epoch_before for v in a), f"A's batch epoch {epochs[a[0]]}, expected {epoch_before}"
    assert all(epochs[v] == epoch_after for v in c), f"C's batch epoch {epochs[c[0]]}, expected {epoch_after}"
    assert offset_for_leader_epoch(restarted.port, topic, 0, epoch_before) == (0, epoch_before, n)
    assert offset_for_leader_epoch(restarted.port, topic, 0, epoch_after) == (0, epoch_after, n + len(c))


# ---------------------------------------------------------------------------------------------
# 3. Graceful shutdown
# ---------------------------------------------------------------------------------------------


def test_sigterm_after_acks_1_produce_exits_0_and_keeps_every_acked_record(make_broker):
    broker = make_broker()
    topic = f"term-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)
    first = [f"first-{i}".encode() for i in range(50)]
    assert produce_values(broker, topic, first, acks=1) == list(enumerate(first))

    # A second wave is still being sent when SIGTERM arrives; whatever of it gets acked must stay.
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": 1, "linger.ms": 0,
                  "message.timeout.ms": 6000, "retries": 0})
    d = Deliveries()
    second = [f"second-{i}".encode() for i in range(200)]
    exit_code = []
    stopper = threading.Thread(target=lambda: exit_code.append(broker.stop()))
    for i, v in enumerate(second):
        p.produce(topic, v, partition=0, on_delivery=d)
        p.poll(0)
        if i == 100:
            p.poll(0.05)
            stopper.start()  # SIGTERM, then wait for the exit
        if i % 10 == 0:
            time.sleep(0.005)
    stopper.join(30)
    [code] = exit_code
    assert code == 0, f"exit code {code} after SIGTERM:\n{broker.log()[-3000:]}"
    p.flush(15)
    acked = d.acked()

    broker.start()
    got = consume_all(broker, topic)
    assert_contiguous(got)
    stored = dict(got)
    assert [stored.get(o) for o in range(len(first))] == first
    lost = [(o, v) for o, v in acked if stored.get(o) != v]
    assert not lost, f"{len(lost)} acked records lost or moved after SIGTERM, e.g. {lost[:3]}"
    # Nothing appears that was not sent, and nothing twice.
    values = [v for _, v in got]
    assert len(set(values)) == len(values)
    assert set(values) <= set(first) | set(second)


def test_sigterm_during_object_write_answers_the_produce_and_keeps_it(make_broker):
    broker = make_broker(settings={"object.store.fault.put.delay.ms": "1500"})
    topic = f"term-slow-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)
    values = [f"inflight-{i}".encode() for i in range(5)]
    conn = Conn(broker.port)
    conn.send(API_PRODUCE, 7, produce_body(topic, 0, record_batch(values), acks=1))
    time.sleep(0.5)  # the flush is now in its PUT
    code = broker.stop()
    assert code == 0, f"exit code {code} after SIGTERM:\n{broker.log()[-3000:]}"
    # The shutdown flushed and answered the request before closing the connection.
    _, body = conn.recv()
    assert parse_produce_v7(body) == [(topic, 0, 0, 0)]
    conn.close()
    broker.start()
    got = consume_all(broker, topic)
    assert got == list(enumerate(values))


# ---------------------------------------------------------------------------------------------
# 4. Failing object PUTs are retried
# ---------------------------------------------------------------------------------------------


def test_failing_puts_are_retried_and_every_record_is_acked_in_order(make_broker):
    broker = make_broker(settings={"object.store.fault.put.error.rate": "0.5"})
    topic = f"flaky-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)
    values = [f"m-{i:03d}".encode() for i in range(200)]
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0,
                  "message.timeout.ms": 50000})
    d = Deliveries()
    # 20 rounds of 10, each waited for, so there are many flushes (and failed PUTs) on the way.
    for r in range(20):
        for v in values[r * 10:(r + 1) * 10]:
            p.produce(topic, v, partition=0, on_delivery=d)
        assert p.flush(30) == 0
    assert not d.failed(), f"deliveries failed: {d.failed()[:3]}"
    assert d.acked() == list(enumerate(values)), "acked offsets are not 0..199 in send order"
    assert broker.metric(PUT_ERRORS) > 0, "no PUT failed; the fault injection did not take effect"

    got = consume_all(broker, topic)
    assert got == list(enumerate(values))
    # And from the objects themselves, after a restart (nothing served from memory).
    assert broker.stop() == 0
    broker.start()
    assert consume_all(broker, topic) == list(enumerate(values))
