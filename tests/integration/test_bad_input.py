"""Malformed and hostile input on the Kafka port, sent over raw sockets.

Every frame is built by hand with `struct` (request header v1, non-flexible versions only) and
every response is decoded by hand, so these tests do not depend on a client library's idea of
what the broker should say. After each kind of bad input the test checks that the broker is
still alive, still serves OTHER connections (one opened before the bad input and a fresh one),
and that nothing it had stored was lost.
"""
import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# ---------------------------------------------------------------------------------------------
# Kafka wire helpers
# ---------------------------------------------------------------------------------------------

API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA, API_VERSIONS = 0, 1, 2, 3, 18

NONE, OFFSET_OUT_OF_RANGE, CORRUPT_MESSAGE, UNKNOWN_TOPIC_OR_PARTITION = 0, 1, 2, 3
MESSAGE_TOO_LARGE, UNSUPPORTED_VERSION, INVALID_RECORD = 10, 35, 87


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


assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C


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
    if items is None:
        return i32(-1)
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

    def string(self):
        s = self.nstring()
        assert s is not None, "non-nullable string was null"
        return s

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


def encode_record(offset_delta, value, key=None, ts_delta=0):
    body = i8(0) + varint(ts_delta) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(0)  # no headers
    return varint(len(body)) + body


def record_batch(values, timestamp=None):
    """A valid, uncompressed record batch v2 (magic 2) holding `values`."""
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    records = b"".join(encode_record(i, v) for i, v in enumerate(values))
    # attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, producerEpoch,
    # baseSequence, recordCount
    covered = struct.pack(">hiqqqhii", 0, len(values) - 1, ts, ts, -1, -1, -1, len(values)) + records
    after_length = i32(-1) + i8(2) + struct.pack(">I", crc32c(covered)) + covered
    return i64(0) + i32(len(after_length)) + after_length


def message_set_v1(value, key=None):
    """One message in the old format, magic 1 (offset, size, CRC-32, magic, attributes, ts, key, value)."""
    import zlib
    body = i8(1) + i8(0) + i64(int(time.time() * 1000)) + nbytes(key) + nbytes(value)
    msg = struct.pack(">I", zlib.crc32(body)) + body
    return i64(0) + i32(len(msg)) + msg


def parse_batches(data):
    """[(offset, value, partition_leader_epoch)] of the complete uncompressed batches in `data`."""
    out = []
    r = Reader(data or b"")
    while r.remaining() >= 12:
        base_offset = r.i64()
        length = r.i32()
        if r.remaining() < length:
            break
        b = Reader(r.take(length))
        leader_epoch = b.i32()
        magic = b.i8()
        assert magic == 2, f"fetched a batch with magic {magic}"
        crc = b.u32()
        assert crc32c(b.d[b.p:]) == crc, "fetched batch fails its CRC"
        attributes = b.i16()
        assert attributes & 0x07 == 0, "test batches are uncompressed"
        b.i32(); b.i64(); b.i64(); b.i64(); b.i16(); b.i32()
        count = b.i32()
        for _ in range(count):
            b.varint()  # record length
            b.i8()
            b.varint()  # timestamp delta
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
    """One raw Kafka connection: header v1 requests, header v0 responses."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.next_cid = 1

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def frame(self, api_key, version, body, cid=None, client_id="tern-test"):
        if cid is None:
            cid = self.next_cid
            self.next_cid += 1
        payload = i16(api_key) + i16(version) + i32(cid) + nstring(client_id) + body
        return cid, i32(len(payload)) + payload

    def send(self, api_key, version, body, cid=None):
        cid, data = self.frame(api_key, version, body, cid)
        self.sock.sendall(data)
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
        """(correlation_id, body) of the next response."""
        size = struct.unpack(">i", self.recv_exact(4))[0]
        data = self.recv_exact(size)
        return struct.unpack(">i", data[:4])[0], data[4:]

    def request(self, api_key, version, body):
        cid = self.send(api_key, version, body)
        got, resp = self.recv()
        assert got == cid, f"response correlation id {got}, expected {cid}"
        return resp

    def closed_by_peer(self, timeout=5):
        """True if the broker closes this connection (EOF or reset) within `timeout` seconds,
        without sending anything first."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        assert data == b"", f"expected the connection to be closed, got {len(data)} bytes: {data[:64]!r}"
        return True


def parse_api_versions_v0(body):
    r = Reader(body)
    error = r.i16()
    keys = r.array(lambda r: (r.i16(), r.i16(), r.i16()))
    assert r.remaining() == 0, f"{r.remaining()} bytes left over in ApiVersions v0 response"
    return error, {k: (lo, hi) for k, lo, hi in keys}


def api_versions_ok(conn):
    error, keys = parse_api_versions_v0(conn.request(API_VERSIONS, 0, b""))
    assert error == NONE
    assert API_PRODUCE in keys and API_FETCH in keys and API_METADATA in keys
    return keys


def produce_request(topics, acks=-1, timeout_ms=10000, transactional_id=None):
    """topics: [(name, [(partition, records_bytes_or_None)])] -> Produce v3+ (non-flexible) body."""
    return (nstring(transactional_id) + i16(acks) + i32(timeout_ms) +
            array(topics, lambda t: string(t[0]) +
                  array(t[1], lambda p: i32(p[0]) + nbytes(p[1]))))


def parse_produce_response(body, version):
    """{(topic, partition): {...}} of a Produce v3..v8 response."""
    r = Reader(body)
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            p = {"index": r.i32(), "error": r.i16(), "base_offset": r.i64(), "log_append_time": r.i64()}
            if version >= 5:
                p["log_start_offset"] = r.i64()
            if version >= 8:
                p["record_errors"] = r.array(lambda r: (r.i32(), r.nstring()))
                p["error_message"] = r.nstring()
            assert (name, p["index"]) not in out, f"partition {name}/{p['index']} answered twice"
            out[(name, p["index"])] = p
    r.i32()  # throttle_time_ms
    assert r.remaining() == 0, f"{r.remaining()} bytes left over in Produce v{version} response"
    return out


def fetch_request(version, topics, max_wait_ms=100, min_bytes=1, max_bytes=1 << 20):
    """topics: [(name, [(partition, fetch_offset)])] -> Fetch v4..v11 body."""
    assert 4 <= version <= 11

    def part(p):
        b = i32(p[0])
        if version >= 9:
            b += i32(-1)  # current_leader_epoch: unknown
        b += i64(p[1])
        if version >= 5:
            b += i64(-1)  # log_start_offset (followers only)
        return b + i32(max_bytes)

    b = i32(-1) + i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes) + i8(0)
    if version >= 7:
        b += i32(0) + i32(-1)  # session_id, session_epoch: no fetch session
    b += array(topics, lambda t: string(t[0]) + array(t[1], part))
    if version >= 7:
        b += array([], None)  # forgotten_topics_data
    if version >= 11:
        b += string("")  # rack_id
    return b


def parse_fetch_response(body, version):
    """{(topic, partition): {...}} of a Fetch v4..v11 response."""
    r = Reader(body)
    r.i32()  # throttle_time_ms
    if version >= 7:
        top_error = r.i16()
        assert top_error == NONE, f"fetch top-level error {top_error}"
        r.i32()  # session_id
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            p = {"index": r.i32(), "error": r.i16(), "high_watermark": r.i64(), "last_stable_offset": r.i64()}
            if version >= 5:
                p["log_start_offset"] = r.i64()
            p["aborted"] = r.array(lambda r: (r.i64(), r.i64()))
            if version >= 11:
                p["preferred_read_replica"] = r.i32()
            p["records"] = r.nbytes()
            out[(name, p["index"])] = p
    assert r.remaining() == 0, f"{r.remaining()} bytes left over in Fetch v{version} response"
    return out


def fetch(conn, topic, partition, offset, version=11, max_wait_ms=100):
    body = conn.request(API_FETCH, version, fetch_request(version, [(topic, [(partition, offset)])], max_wait_ms))
    return parse_fetch_response(body, version)[(topic, partition)]


def fetch_all(conn, topic, partition, version=11):
    """[(offset, value, leader_epoch)] of the whole partition; a fetch may stop at an object
    boundary, so keep fetching from where the last one ended."""
    out = []
    while True:
        p = fetch(conn, topic, partition, len(out), version)
        assert p["error"] == NONE, f"fetch {topic}/{partition} at {len(out)}: error {p['error']}"
        if len(out) >= p["high_watermark"]:
            return out
        part = [r for r in parse_batches(p["records"]) if r[0] >= len(out)]
        assert part, f"fetch at {len(out)} below the high watermark {p['high_watermark']} returned nothing"
        out += part


# ---------------------------------------------------------------------------------------------
# Client-library helpers and health checks
# ---------------------------------------------------------------------------------------------


def create_topic(broker, name, partitions=1):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result(20)


def produce_values(broker, topic, values, partition=0, acks="all"):
    """Produce with confluent-kafka; returns the offsets of the acked records, in order."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks, "linger.ms": 5,
                  "message.timeout.ms": 30000})
    results = []

    def report(err, msg):
        results.append((err, msg.offset(), msg.value()))

    for v in values:
        p.produce(topic, v, partition=partition, on_delivery=report)
    assert p.flush(40) == 0, "messages left undelivered"
    errors = [r for r in results if r[0] is not None]
    assert not errors, f"delivery failed: {errors[:3]}"
    return [o for _, o, _ in sorted(results, key=lambda r: r[1])]


def consume_all(broker, topic, partition=0, start=0, timeout=30):
    """[(offset, value)] from `start` to the end of the partition, via confluent-kafka."""
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
    assert offsets == list(range(start, start + len(records))), f"offsets not contiguous: {offsets[:20]}..."


class Canary:
    """A topic with records stored before the bad input; `check()` after it proves the broker
    still serves other connections and lost nothing."""

    def __init__(self, broker):
        self.broker = broker
        self.topic = f"canary-{uuid.uuid4().hex[:8]}"
        create_topic(broker, self.topic)
        self.values = [f"before-{i}".encode() for i in range(20)]
        assert produce_values(broker, self.topic, self.values) == list(range(20))
        # A connection that is open while the bad input arrives on another one.
        self.bystander = Conn(broker.port)
        api_versions_ok(self.bystander)

    def check(self):
        assert self.broker.alive(), f"broker died:\n{self.broker.log()[-3000:]}"
        # The connection that was open all along still works...
        api_versions_ok(self.bystander)
        got = fetch_all(self.bystander, self.topic, 0)
        assert [o for o, _, _ in got] == list(range(len(self.values)))
        assert [v for _, v, _ in got] == self.values
        # ...and so does a fresh one, raw and through a client library.
        fresh = Conn(self.broker.port)
        try:
            api_versions_ok(fresh)
        finally:
            fresh.close()
        n = len(self.values)
        more = [f"after-{n + i}".encode() for i in range(5)]
        assert produce_values(self.broker, self.topic, more) == list(range(n, n + 5))
        self.values += more
        got = consume_all(self.broker, self.topic)
        assert_contiguous(got)
        assert [v for _, v in got] == self.values


def bad_input_count(broker):
    return broker.metric("tern_connections_closed_bad_input_total")


def wait_for(pred, timeout=5, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


# ---------------------------------------------------------------------------------------------
# 1. Oversized frame
# ---------------------------------------------------------------------------------------------


def test_frame_larger_than_socket_request_max_bytes_closes_connection(broker):
    canary = Canary(broker)
    before = bad_input_count(broker)
    c = Conn(broker.port)
    # The size field claims 200 MiB (> socket.request.max.bytes = 100 MiB); we send only a
    # request header's worth of bytes after it.
    header = i16(API_PRODUCE) + i16(7) + i32(1) + string("big")
    t0 = time.time()
    c.send_raw(i32(200 * 1024 * 1024) + header + b"\0" * 64)
    assert c.closed_by_peer(timeout=5), "broker kept a connection announcing a 200 MiB frame open"
    assert time.time() - t0 < 5
    c.close()
    assert wait_for(lambda: bad_input_count(broker) > before), "tern_connections_closed_bad_input_total did not rise"
    canary.check()


def test_negative_frame_size_closes_connection(broker):
    canary = Canary(broker)
    before = bad_input_count(broker)
    c = Conn(broker.port)
    c.send_raw(i32(-5) + b"\0" * 16)
    assert c.closed_by_peer(timeout=5)
    c.close()
    assert wait_for(lambda: bad_input_count(broker) > before)
    canary.check()


# ---------------------------------------------------------------------------------------------
# 2. Truncated frames
# ---------------------------------------------------------------------------------------------


def test_truncated_frame_then_close_does_not_hurt_the_broker(broker):
    canary = Canary(broker)
    for _ in range(3):
        c = Conn(broker.port)
        c.send_raw(i32(100) + i16(API_METADATA) + i16(1) + i32(7) + i16(0))  # 10 of 100 bytes
        c.close()
    # A truncated frame on a connection that stays open: the broker just waits for the rest,
    # and other connections are not held up meanwhile.
    hanging = Conn(broker.port)
    hanging.send_raw(i32(100) + b"\0" * 10)
    time.sleep(0.5)
    canary.check()
    hanging.close()
    time.sleep(0.2)
    canary.check()


def test_body_truncated_inside_a_field_closes_connection(broker):
    canary = Canary(broker)
    before = bad_input_count(broker)
    c = Conn(broker.port)
    # Metadata v1: topics array says 5 topics, and the frame ends there.
    c.send(API_METADATA, 1, i32(5))
    assert c.closed_by_peer(timeout=5), "broker did not close a connection whose Metadata request is truncated"
    c.close()
    # Same for a Produce v7 whose records length points past the end of the frame.
    c = Conn(broker.port)
    c.send(API_PRODUCE, 7, nstring(None) + i16(-1) + i32(1000) + i32(1) + string(canary.topic) +
           i32(1) + i32(0) + i32(5000) + b"x" * 10)
    assert c.closed_by_peer(timeout=5), "broker did not close a connection whose Produce request is truncated"
    c.close()
    # A frame shorter than a request header.
    c = Conn(broker.port)
    c.send_raw(i32(3) + b"\0\0\0")
    assert c.closed_by_peer(timeout=5), "broker did not close a connection that sent a 3-byte frame"
    c.close()
    assert wait_for(lambda: bad_input_count(broker) >= before + 3)
    canary.check()


# ---------------------------------------------------------------------------------------------
# 3. Unknown API key
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api_key,version", [(9999, 0), (1000, 0), (-1, 0), (API_FETCH, 99), (API_METADATA, 99)])
def test_unknown_api_key_or_version_closes_connection(broker, api_key, version):
    canary = Canary(broker)
    before = bad_input_count(broker)
    c = Conn(broker.port)
    c.send(api_key, version, b"")
    assert c.closed_by_peer(timeout=5), f"broker answered or ignored API key {api_key} v{version} instead of closing"
    c.close()
    assert wait_for(lambda: bad_input_count(broker) > before)
    canary.check()


# ---------------------------------------------------------------------------------------------
# 4. ApiVersions of a version the broker does not know
# ---------------------------------------------------------------------------------------------


def test_api_versions_unknown_version_answers_unsupported_version_at_v0(broker):
    canary = Canary(broker)
    c = Conn(broker.port)
    cid = c.send(API_VERSIONS, 99, b"\0\0\0")  # whatever a v99 body is, the broker must not parse it
    got, body = c.recv()
    assert got == cid
    error, keys = parse_api_versions_v0(body)  # v0 encoding: exactly error_code + array, no throttle
    assert error == UNSUPPORTED_VERSION
    assert API_VERSIONS in keys and keys[API_VERSIONS][0] == 0 and keys[API_VERSIONS][1] >= 3
    for k in (API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA):
        assert k in keys, f"api key {k} missing from the list"
        lo, hi = keys[k]
        assert 0 <= lo <= hi
    # The connection stays usable: the client retries with a version from the list.
    api_versions_ok(c)
    c.close()
    canary.check()


# ---------------------------------------------------------------------------------------------
# 5. Produce of bad record batches
# ---------------------------------------------------------------------------------------------


def corrupt_crc_batch(values):
    b = bytearray(record_batch(values))
    b[-3] ^= 0xFF  # a byte of the last record's value, covered by the CRC
    return bytes(b)


def magic1_batch(values):
    return b"".join(message_set_v1(v) for v in values)


def test_produce_bad_batches(make_broker):
    broker = make_broker(settings={"message.max.bytes": "10000"})
    canary = Canary(broker)
    bad = f"bad-{uuid.uuid4().hex[:8]}"
    good = f"good-{uuid.uuid4().hex[:8]}"
    create_topic(broker, bad, 1)
    create_topic(broker, good, 2)
    unknown = f"never-created-{uuid.uuid4().hex[:8]}"
    c = Conn(broker.port)
    stored = []  # values expected in good/0, in order

    cases = [
        ("corrupt CRC", lambda: corrupt_crc_batch([b"x" * 30, b"y" * 30]), CORRUPT_MESSAGE),
        ("magic 1", lambda: magic1_batch([b"old-1", b"old-2"]), INVALID_RECORD),
        ("two batches", lambda: record_batch([b"a1", b"a2"]) + record_batch([b"b1"]), INVALID_RECORD),
        ("too large", lambda: record_batch([b"z" * 20000]), MESSAGE_TOO_LARGE),
    ]
    for version in range(3, 9):
        for name, make_bad, code in cases:
            good_values = [f"v{version}-{name}-{i}".encode() for i in range(3)]
            body = produce_request([
                (bad, [(0, make_bad()), (7, record_batch([b"to-partition-7"]))]),
                (unknown, [(0, record_batch([b"to-unknown-topic"]))]),
                (good, [(0, record_batch(good_values)), (1, make_bad())]),
            ])
            resp = parse_produce_response(c.request(API_PRODUCE, version, body), version)
            assert set(resp) == {(bad, 0), (bad, 7), (unknown, 0), (good, 0), (good, 1)}, \
                f"v{version} {name}: partitions answered {sorted(resp)}"
            for key in [(bad, 0), (good, 1)]:
                assert resp[key]["error"] == code, f"v{version} {name}: {key} error {resp[key]['error']}, expected {code}"
                assert resp[key]["base_offset"] == -1
            assert resp[(bad, 7)]["error"] == UNKNOWN_TOPIC_OR_PARTITION, f"v{version}: partition 7 -> {resp[(bad, 7)]}"
            assert resp[(unknown, 0)]["error"] == UNKNOWN_TOPIC_OR_PARTITION, f"v{version}: unknown topic -> {resp[(unknown, 0)]}"
            ok = resp[(good, 0)]
            assert ok["error"] == NONE, f"v{version} {name}: the valid batch failed: {ok}"
            assert ok["base_offset"] == len(stored), f"v{version} {name}: base offset {ok['base_offset']}, expected {len(stored)}"
            if version >= 5:
                assert ok["log_start_offset"] == 0
            if version >= 8:
                assert resp[(bad, 0)]["error_message"], f"v{version} {name}: no error message"
            stored += good_values

    # Nothing of the rejected batches was stored, anywhere.
    for topic, partition in [(bad, 0), (good, 1)]:
        p = fetch(c, topic, partition, 0)
        assert p["error"] == NONE and p["high_watermark"] == 0 and not p["records"], \
            f"{topic}/{partition} holds data from a rejected batch: {p}"
    p = fetch(c, unknown, 0, 0)
    assert p["error"] == UNKNOWN_TOPIC_OR_PARTITION, "a produce to an unknown topic created it"

    # The valid batches are there, in order, with contiguous offsets, raw and via a client.
    raw = fetch_all(c, good, 0)
    assert [(o, v) for o, v, _ in raw] == list(enumerate(stored))
    got = consume_all(broker, good, 0)
    assert_contiguous(got)
    assert [v for _, v in got] == stored
    c.close()
    canary.check()


def batch_with_fewer_records_than_declared(values):
    """A batch whose header (count, lastOffsetDelta, CRC) is self-consistent but whose last
    declared record is missing from the payload."""
    ts = int(time.time() * 1000)
    n = len(values) + 1
    records = b"".join(encode_record(i, v) for i, v in enumerate(values))
    covered = struct.pack(">hiqqqhii", 0, n - 1, ts, ts, -1, -1, -1, n) + records
    after_length = i32(-1) + i8(2) + struct.pack(">I", crc32c(covered)) + covered
    return i64(0) + i32(len(after_length)) + after_length


def batch_with_garbage_records(count):
    """Header fine, CRC fine, but the bytes after the header are not records."""
    ts = int(time.time() * 1000)
    covered = struct.pack(">hiqqqhii", 0, count - 1, ts, ts, -1, -1, -1, count) + b"\xff" * 40
    after_length = i32(-1) + i8(2) + struct.pack(">I", crc32c(covered)) + covered
    return i64(0) + i32(len(after_length)) + after_length


def test_produce_batch_whose_records_do_not_parse_is_rejected(broker):
    """Kafka's LogValidator iterates the records of every batch it appends; a batch whose
    records do not match its header is refused with INVALID_RECORD (87) and never stored, so a
    consumer can never be handed a batch it cannot decode."""
    canary = Canary(broker)
    topic = f"malformed-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic, 1)
    c = Conn(broker.port)
    for name, batch in [("missing record", batch_with_fewer_records_than_declared([b"r0", b"r1"])),
                        ("garbage records", batch_with_garbage_records(3))]:
        resp = parse_produce_response(c.request(API_PRODUCE, 8, produce_request([(topic, [(0, batch)])])), 8)
        p = resp[(topic, 0)]
        assert p["error"] == INVALID_RECORD, f"{name}: produce answered {p}, Kafka answers INVALID_RECORD (87)"
    p = fetch(c, topic, 0, 0)
    assert p["high_watermark"] == 0, f"a batch with malformed records was stored: {p}"
    c.close()
    canary.check()


def test_produce_acks_0_sends_no_response(broker):
    canary = Canary(broker)
    topic = f"acks0-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)
    c = Conn(broker.port)
    values = [b"fire-1", b"fire-2", b"fire-3"]
    c.send(API_PRODUCE, 7, produce_request([(topic, [(0, record_batch(values))])], acks=0), cid=500)
    c.send(API_PRODUCE, 3, produce_request([(topic, [(0, record_batch([b"fire-4"]))])], acks=0), cid=501)
    probe = c.send(API_VERSIONS, 0, b"", cid=502)
    got, body = c.recv()
    assert got == probe, f"first response after acks=0 produces has correlation id {got}, expected {probe}"
    parse_api_versions_v0(body)
    # And nothing else trails it.
    c.sock.settimeout(1.0)
    with pytest.raises(socket.timeout):
        c.sock.recv(1)
    c.sock.settimeout(10)
    # The records were stored all the same (acks=0 just means nobody waits for it).
    assert wait_for(lambda: fetch(c, topic, 0, 0)["high_watermark"] == 4, timeout=10)
    got = consume_all(broker, topic)
    assert_contiguous(got)
    assert [v for _, v in got] == values + [b"fire-4"]
    c.close()
    canary.check()


# ---------------------------------------------------------------------------------------------
# 6. Fetch errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 11])
def test_fetch_errors(broker, version):
    canary = Canary(broker)
    c = Conn(broker.port)
    unknown = f"never-created-{uuid.uuid4().hex[:8]}"
    end = len(canary.values)
    body = c.request(API_FETCH, version, fetch_request(version, [
        (unknown, [(0, 0)]),
        (canary.topic, [(7, 0), (0, end + 1000)]),
    ]))
    resp = parse_fetch_response(body, version)
    assert resp[(unknown, 0)]["error"] == UNKNOWN_TOPIC_OR_PARTITION
    assert resp[(canary.topic, 7)]["error"] == UNKNOWN_TOPIC_OR_PARTITION
    beyond = resp[(canary.topic, 0)]
    assert beyond["error"] == OFFSET_OUT_OF_RANGE, f"fetch beyond the end -> {beyond}"
    assert not beyond["records"]
    # Each case alone, too.
    assert fetch(c, unknown, 0, 0, version)["error"] == UNKNOWN_TOPIC_OR_PARTITION
    assert fetch(c, canary.topic, 7, 0, version)["error"] == UNKNOWN_TOPIC_OR_PARTITION
    assert fetch(c, canary.topic, 0, end + 1, version)["error"] == OFFSET_OUT_OF_RANGE
    assert fetch(c, canary.topic, 0, -5, version)["error"] == OFFSET_OUT_OF_RANGE
    # At exactly the end: no error, no records, and the high watermark says where the end is.
    at_end = fetch(c, canary.topic, 0, end, version)
    assert at_end["error"] == NONE and at_end["high_watermark"] == end and not at_end["records"]
    got = fetch_all(c, canary.topic, 0, version)
    assert [o for o, _, _ in got] == list(range(end))
    assert [v for _, v, _ in got] == canary.values
    c.close()
    canary.check()
