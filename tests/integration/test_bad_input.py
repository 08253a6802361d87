"""Malformed and hostile input on the Kafka port, sent over raw sockets.

Every frame is built by hand (kafka_wire.py: request header v1, non-flexible versions only) and
every response is decoded by hand, so these tests do not depend on a client library's idea of
what the broker should say. After each kind of bad input the test checks that the broker is
still alive, still serves OTHER connections (one opened before the bad input and a fresh one),
and that nothing it had stored was lost.
"""
import socket
import time
import uuid

import pytest

from kafka_wire import (API_FETCH, API_LIST_OFFSETS, API_METADATA, API_PRODUCE, API_VERSIONS,
                        CORRUPT_MESSAGE, INVALID_RECORD, MESSAGE_TOO_LARGE, NONE, OFFSET_OUT_OF_RANGE,
                        UNKNOWN_TOPIC_OR_PARTITION, UNSUPPORTED_VERSION, Conn, api_versions_ok,
                        assert_contiguous, batch_v2, consume_all, create_topic, encode_record, fetch,
                        fetch_all, fetch_request, i16, i32, message_set_v1, nstring, parse_api_versions_v0,
                        parse_fetch_response, parse_produce_response, produce_request, produce_values,
                        record_batch, string, wait_for)

# ---------------------------------------------------------------------------------------------
# Health checks
# ---------------------------------------------------------------------------------------------


class Canary:
    """A topic with records stored before the bad input; `check()` after it proves the broker
    still serves other connections and lost nothing."""

    def __init__(self, broker):
        self.broker = broker
        self.topic = f"canary-{uuid.uuid4().hex[:8]}"
        create_topic(broker, self.topic)
        self.values = [f"before-{i}".encode() for i in range(20)]
        assert [o for o, _ in produce_values(broker, self.topic, self.values)] == list(range(20))
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
        assert [o for o, _ in produce_values(self.broker, self.topic, more)] == list(range(n, n + 5))
        self.values += more
        got = consume_all(self.broker, self.topic)
        assert_contiguous(got)
        assert [v for _, v in got] == self.values


def bad_input_count(broker):
    return broker.metric("tern_connections_closed_bad_input_total")


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
    records = b"".join(encode_record(i, v) for i, v in enumerate(values))
    return batch_v2(records, len(values) + 1)


def batch_with_garbage_records(count):
    """Header fine, CRC fine, but the bytes after the header are not records."""
    return batch_v2(b"\xff" * 40, count)


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


def test_produce_acks_0_with_an_error_closes_the_connection(broker):
    """With acks=0 there is no response to carry an error, so (as in Kafka) a broker that fails
    any partition of such a produce closes the connection; the client learns of the failure by
    the disconnect. A successful acks=0 produce leaves the connection open."""
    canary = Canary(broker)
    topic = f"acks0-ok-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)
    unknown = f"never-created-{uuid.uuid4().hex[:8]}"
    c = Conn(broker.port)
    # To an existing topic: no response, and the connection still serves the next request.
    c.send(API_PRODUCE, 7, produce_request([(topic, [(0, record_batch([b"kept"]))])], acks=0))
    api_versions_ok(c)  # the next response carries the ApiVersions correlation id
    assert wait_for(lambda: fetch(c, topic, 0, 0)["high_watermark"] == 1, timeout=10)
    # To a topic that does not exist: the broker closes the connection, without answering.
    c.send(API_PRODUCE, 7, produce_request([(unknown, [(0, record_batch([b"lost"]))])], acks=0))
    assert c.closed_by_peer(timeout=5), "broker kept the connection open after a failed acks=0 produce"
    c.close()
    # Other connections are not affected, and the failed produce created nothing.
    fresh = Conn(broker.port)
    try:
        assert fetch(fresh, unknown, 0, 0)["error"] == UNKNOWN_TOPIC_OR_PARTITION
        assert fetch(fresh, topic, 0, 0)["high_watermark"] == 1
    finally:
        fresh.close()
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


def test_a_closed_connection_does_not_keep_its_long_poll_fetch(make_broker):
    """A client that sends a long-polling fetch and goes away: the broker drops the wait with
    the connection instead of holding both until max_wait_ms passes."""
    broker = make_broker()  # its own broker: no other client's connections in the count
    topic = f"gone-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)
    assert wait_for(lambda: broker.metric("tern_connections") == 0, timeout=10), "the admin client's connections stay open"
    c = Conn(broker.port)
    c.send(API_FETCH, 11, fetch_request(11, [(topic, [(0, 0)])], max_wait_ms=120_000, min_bytes=1 << 20))
    assert wait_for(lambda: broker.metric("tern_connections") == 1, timeout=5)
    c.close()
    assert wait_for(lambda: broker.metric("tern_connections") == 0, timeout=5), \
        "the connection stayed open, waiting for its fetch"


def test_answers_go_out_in_request_order_whatever_order_they_are_ready_in(broker):
    """A long-polling fetch, then a produce and an ApiVersions on the same connection: the
    later two are ready first, but Kafka answers a connection in request order. A request
    that closes the connection (an unknown API key) still lets the answers before it out."""
    waiting, written = f"order-w-{uuid.uuid4().hex[:8]}", f"order-p-{uuid.uuid4().hex[:8]}"
    create_topic(broker, waiting)
    create_topic(broker, written)
    c = Conn(broker.port)
    start = time.monotonic()
    fetch_cid = c.send(API_FETCH, 11, fetch_request(11, [(waiting, [(0, 0)])], max_wait_ms=1500, min_bytes=1))
    produce_cid = c.send(API_PRODUCE, 8, produce_request([(written, [(0, record_batch([b"a", b"b"]))])]))
    versions_cid = c.send(API_VERSIONS, 0, b"")
    cid, body = c.recv()
    assert cid == fetch_cid and time.monotonic() - start >= 1.0, "an answer overtook the long-polling fetch"
    assert parse_fetch_response(body, 11)[(waiting, 0)]["records"] in (None, b"")
    cid, body = c.recv()
    assert cid == produce_cid
    assert parse_produce_response(body, 8)[(written, 0)]["error"] == NONE
    cid, body = c.recv()
    assert cid == versions_cid and parse_api_versions_v0(body)[0] == NONE

    fetch_cid = c.send(API_FETCH, 11, fetch_request(11, [(waiting, [(0, 0)])], max_wait_ms=800, min_bytes=1))
    c.send_raw(c.frame(9999, 0, b"")[1])
    cid, body = c.recv()
    assert cid == fetch_cid, "the answer before a closing request was lost"
    assert c.closed_by_peer()
    c.close()
    assert [v for _, v, _ in fetch_all(Conn(broker.port), written, 0)] == [b"a", b"b"]
