"""Raw Kafka wire helpers shared by the integration tests.

Every frame is built by hand with `struct` (request header v1 for classic versions; `Enc`, `Dec`
and `versioned_request` add the flexible encoding and header v2) and every response is decoded
by hand, so the tests that use these helpers do not depend on a client
library's idea of what the broker should say. The client-library helpers at the end
(create_topic, produce_values, consume_all, ...) use confluent-kafka.
"""
import socket
import struct
import threading
import time
import uuid
import zlib

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# ---------------------------------------------------------------------------------------------
# API keys and error codes
# ---------------------------------------------------------------------------------------------

API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA, API_VERSIONS = 0, 1, 2, 3, 18
API_OFFSET_FOR_LEADER_EPOCH = 23

NONE, OFFSET_OUT_OF_RANGE, CORRUPT_MESSAGE, UNKNOWN_TOPIC_OR_PARTITION = 0, 1, 2, 3
REQUEST_TIMED_OUT, MESSAGE_TOO_LARGE, UNSUPPORTED_VERSION, INVALID_RECORD = 7, 10, 35, 87

# ---------------------------------------------------------------------------------------------
# CRC-32C
# ---------------------------------------------------------------------------------------------


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

# ---------------------------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------------------------


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
    """A non-flexible array; `None` encodes the null array (length -1)."""
    if items is None:
        return i32(-1)
    return i32(len(items)) + b"".join(enc(x) for x in items)


def varint(n):
    return uvarint(((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF)

# ---------------------------------------------------------------------------------------------
# Decoder
# ---------------------------------------------------------------------------------------------


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

    def uvarint(self):
        z = shift = 0
        while True:
            b = self.take(1)[0]
            z |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return z

    def varint(self):
        z = self.uvarint()
        return (z >> 1) ^ -(z & 1)

    def remaining(self):
        return len(self.d) - self.p

# ---------------------------------------------------------------------------------------------
# Flexible versions (KIP-482): compact strings and arrays, tagged fields
# ---------------------------------------------------------------------------------------------


def uvarint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def cstring(s):
    """A compact (nullable) string."""
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def carray(items, enc):
    """A compact (nullable) array, each item encoded by `enc`."""
    if items is None:
        return uvarint(0)
    return uvarint(len(items) + 1) + b"".join(enc(x) for x in items)


TAGS = uvarint(0)  # an empty tagged-field section


class Enc:
    """A request body built field by field, in classic or flexible (compact) encoding.
    Every method returns self so fields chain; `bytes(enc)` is the body."""

    def __init__(self, flexible):
        self.flex = flexible
        self.b = bytearray()

    def __bytes__(self):
        return bytes(self.b)

    def raw(self, data):
        self.b += data
        return self

    def i8(self, v): return self.raw(i8(v))
    def i16(self, v): return self.raw(i16(v))
    def i32(self, v): return self.raw(i32(v))
    def i64(self, v): return self.raw(i64(v))
    def bool(self, v): return self.raw(i8(1 if v else 0))
    def uuid(self, u): return self.raw(u)

    def nstr(self, s):
        if not self.flex:
            return self.raw(nstring(s))
        if s is None:
            return self.raw(uvarint(0))
        b = s.encode()
        return self.raw(uvarint(len(b) + 1) + b)

    def str(self, s):
        assert s is not None
        return self.nstr(s)

    def bytes(self, data):
        if not self.flex:
            return self.raw(nbytes(data))
        return self.raw(uvarint(0) if data is None else uvarint(len(data) + 1) + data)

    def array(self, items, fn):
        """`fn(enc, item)` writes one item; `items` None is the null array."""
        if items is None:
            return self.raw(uvarint(0) if self.flex else i32(-1))
        self.raw(uvarint(len(items) + 1) if self.flex else i32(len(items)))
        for x in items:
            fn(self, x)
        return self

    def tags(self):
        """The (empty) tagged-field section that ends every flexible struct."""
        return self.raw(uvarint(0)) if self.flex else self


class Dec(Reader):
    """A response reader for classic or flexible versions; tagged fields are skipped."""

    def __init__(self, data, flexible):
        super().__init__(data)
        self.flex = flexible

    def boolean(self):
        return self.i8() != 0

    def uuid(self):
        return self.take(16)

    def nstring(self):
        if not self.flex:
            return super().nstring()
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def nbytes(self):
        if not self.flex:
            return super().nbytes()
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1)

    def array(self, dec):
        if not self.flex:
            return super().array(dec)
        n = self.uvarint()
        return None if n == 0 else [dec(self) for _ in range(n - 1)]

    def tags(self):
        if self.flex:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.take(self.uvarint())

    def end(self):
        self.tags()
        assert self.remaining() == 0, f"{self.remaining()} bytes left over in the response"


def versioned_request(conn, api_key, version, body, flexible):
    """Sends one request (header v2 when `flexible`) and returns a Dec over the response
    body (after the response header's tagged fields when `flexible`)."""
    cid = conn.next_cid
    conn.next_cid += 1
    payload = i16(api_key) + i16(version) + i32(cid) + nstring(conn.client_id)
    if flexible:
        payload += uvarint(0)
    payload += bytes(body)
    conn.send_raw(i32(len(payload)) + payload)
    got, resp = conn.recv()
    assert got == cid, f"response correlation id {got}, expected {cid}"
    d = Dec(resp, flexible)
    d.tags()  # response header v1
    return d

# ---------------------------------------------------------------------------------------------
# Classic consumer groups (JoinGroup v5, SyncGroup v3, Heartbeat v3: non-flexible)
# ---------------------------------------------------------------------------------------------


def group_join_v5(c, group, member="", instance=None, session=10000, rebalance=30000, metadata=b"\x00\x00"):
    body = (string(group) + i32(session) + i32(rebalance) + string(member) + nstring(instance) + string("consumer")
            + array([("range", metadata)], lambda p: string(p[0]) + nbytes(p[1])))
    r = Reader(c.request(11, 5, body))
    r.i32()
    out = dict(error=r.i16(), generation=r.i32(), protocol=r.string(), leader=r.string(), member=r.string(),
               members=r.array(lambda r: (r.string(), r.nstring(), r.nbytes())))
    assert r.remaining() == 0
    return out


def group_sync_v3(c, group, generation, member, assignments=(), instance=None):
    body = (string(group) + i32(generation) + string(member) + nstring(instance)
            + array(list(assignments), lambda a: string(a[0]) + nbytes(a[1])))
    r = Reader(c.request(14, 3, body))
    r.i32()
    out = (r.i16(), r.nbytes())
    assert r.remaining() == 0
    return out


def group_heartbeat_v3(c, group, generation, member, instance=None):
    r = Reader(c.request(12, 3, string(group) + i32(generation) + string(member) + nstring(instance)))
    r.i32()
    return r.i16()


def group_member(c, group, instance=None):
    """Joins (MEMBER_ID_REQUIRED, then again with the id) and syncs: (member id, generation)."""
    first = group_join_v5(c, group, instance=instance)
    member = first["member"]
    if first["error"] == 79:  # MEMBER_ID_REQUIRED
        assert member and first["generation"] == -1
        first = group_join_v5(c, group, member=member)
    assert first["error"] == NONE, first
    assert first["leader"] == member and first["members"][0][0] == member
    assert group_sync_v3(c, group, first["generation"], member, [(member, b"mine")], instance=instance) == (NONE, b"mine")
    return member, first["generation"]

# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


def encode_record(offset_delta, value, key=None, ts_delta=0):
    """One record of a v2 batch (length-prefixed), without headers."""
    body = i8(0) + varint(ts_delta) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(0)  # no headers
    return varint(len(body)) + body


def batch_v2(records, count, last_offset_delta=None, timestamp=None, attributes=0):
    """Frame already encoded `records` as an uncompressed record batch v2 (magic 2) with a
    correct CRC. The header says `count` records and `last_offset_delta` (default count - 1),
    whether or not `records` holds that many: callers may build inconsistent batches on purpose."""
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    if last_offset_delta is None:
        last_offset_delta = count - 1
    # attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId, producerEpoch,
    # baseSequence, recordCount
    covered = struct.pack(">hiqqqhii", attributes, last_offset_delta, ts, ts, -1, -1, -1, count) + records
    after_length = i32(-1) + i8(2) + struct.pack(">I", crc32c(covered)) + covered
    return i64(0) + i32(len(after_length)) + after_length


def record_batch(values, timestamp=None, key=None):
    """A valid, uncompressed record batch v2 (magic 2) holding `values`, every record with the
    key `key` (None: no key) and the batch's timestamp (default: now)."""
    records = b"".join(encode_record(i, v, key) for i, v in enumerate(values))
    return batch_v2(records, len(values), timestamp=timestamp)


CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def compress(codec, data):
    """`data` compressed as Kafka clients frame it, with Python's own codec libraries."""
    if codec == "gzip":
        import gzip
        return gzip.compress(data)
    if codec == "snappy":
        import snappy
        return snappy.compress(data)  # raw snappy, as librdkafka sends
    if codec == "lz4":
        import lz4.frame
        return lz4.frame.compress(data, block_linked=False)
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdCompressor().compress(data)
    assert codec == "none"
    return data


def compressed_batch(values, codec, timestamp=None, key=None):
    """A valid record batch v2 holding `values`, its records compressed with `codec`."""
    records = b"".join(encode_record(i, v, key) for i, v in enumerate(values))
    return batch_v2(compress(codec, records), len(values), timestamp=timestamp, attributes=CODEC_IDS[codec])


def batch_headers(data):
    """[{base_offset, attributes, codec, max_timestamp, count}] of the complete batches in
    `data`, whatever their codec; asserts each batch's CRC."""
    out = []
    r = Reader(data or b"")
    while r.remaining() >= 12:
        base_offset = r.i64()
        length = r.i32()
        if r.remaining() < length:
            break
        b = Reader(r.take(length))
        b.i32()
        assert b.i8() == 2
        crc = b.u32()
        assert crc32c(b.d[b.p:]) == crc, "fetched batch fails its CRC"
        attributes = b.i16()
        b.i32()
        base_ts, max_ts = b.i64(), b.i64()
        b.i64(); b.i16(); b.i32()
        out.append({"base_offset": base_offset, "attributes": attributes, "codec": attributes & 7,
                    "base_timestamp": base_ts, "max_timestamp": max_ts, "count": b.i32()})
    return out


def message_set_v1(value, key=None):
    """One message in the old format, magic 1 (offset, size, CRC-32, magic, attributes, ts, key, value)."""
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

# ---------------------------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------------------------


class LoopbackServer:
    """A TCP listener on 127.0.0.1 (free port in `port`) that serves each accepted connection
    with `handle(conn)` on a thread of its own; for stand-in brokers and proxies in tests.
    Subclasses set their own state, then call `super().__init__()`."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        raise NotImplementedError

    def close(self):
        self.sock.close()


class Conn:
    """One raw Kafka connection: header v1 requests, header v0 responses."""

    def __init__(self, port, timeout=10, client_id="tern-test"):
        self.timeout = timeout
        self.client_id = client_id
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.next_cid = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def frame(self, api_key, version, body, cid=None, client_id=None):
        """(correlation_id, bytes) of a size-prefixed request frame."""
        if cid is None:
            cid = self.next_cid
            self.next_cid += 1
        if client_id is None:
            client_id = self.client_id
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

    def nothing_within(self, seconds):
        """True if no byte arrives within `seconds` (the connection stays open and silent)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(self.timeout)
        raise AssertionError(f"unexpected {'EOF' if not data else 'data'} on the connection")

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

# ---------------------------------------------------------------------------------------------
# Requests and responses
# ---------------------------------------------------------------------------------------------


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


def fetch_request(version, topics, max_wait_ms=100, min_bytes=1, max_bytes=1 << 20, partition_max_bytes=None):
    """topics: [(name, [(partition, fetch_offset)])] -> Fetch v4..v11 body. `max_bytes` is the
    response's limit, and each partition's unless `partition_max_bytes` is given."""
    assert 4 <= version <= 11
    per_partition = max_bytes if partition_max_bytes is None else partition_max_bytes

    def part(p):
        b = i32(p[0])
        if version >= 9:
            b += i32(-1)  # current_leader_epoch: unknown
        b += i64(p[1])
        if version >= 5:
            b += i64(-1)  # log_start_offset (followers only)
        return b + i32(per_partition)

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


def fetch(conn, topic, partition, offset, version=11, max_wait_ms=100, max_bytes=1 << 20):
    """The response's entry for one partition (see parse_fetch_response)."""
    body = conn.request(API_FETCH, version,
                        fetch_request(version, [(topic, [(partition, offset)])], max_wait_ms, max_bytes=max_bytes))
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


def leader_epoch(port, topic, partition=0):
    """The partition's leader epoch from a Metadata v7 response (on a connection of its own)."""
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
    """(error, leader_epoch, end_offset) from OffsetForLeaderEpoch v2 (on a connection of its own)."""
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

# ---------------------------------------------------------------------------------------------
# Client-library helpers
# ---------------------------------------------------------------------------------------------


def create_topic(broker, name, partitions=1, timeout=30):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result(timeout)


class Deliveries:
    """A confluent-kafka delivery callback that records every report."""

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


def produce_values(broker, topic, values, acks="all", partition=0, timeout=40, key=None):
    """Produce with confluent-kafka and wait; asserts every message was acked; returns
    [(offset, value)] sorted by offset."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks, "linger.ms": 5,
                  "message.timeout.ms": int(timeout * 1000) - 5000})
    d = Deliveries()
    for v in values:
        p.produce(topic, v, key=key, partition=partition, on_delivery=d)
    assert p.flush(timeout) == 0, "messages left undelivered"
    assert not d.failed(), f"delivery failed: {d.failed()[:3]}"
    return d.acked()


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
    assert offsets == list(range(start, start + len(records))), f"offsets have a gap or duplicate: {offsets[:20]}"


def wait_for(pred, timeout=5, interval=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()
