"""Durability of acknowledged produce: acks wait for the object write, kill -9 loses nothing
acked and leaves no gap, SIGTERM flushes, and failing object PUTs are retried.

Timing-sensitive steps use raw Produce requests (built by hand, see kafka_wire.py), so the test knows
exactly when a request left and when its response came back; the rest uses confluent-kafka.
"""
import threading
import time
import uuid

from confluent_kafka import Producer

from kafka_wire import (API_PRODUCE, API_VERSIONS, Conn, Deliveries, assert_contiguous, consume_all,
                        create_topic, fetch, leader_epoch, offset_for_leader_epoch, parse_batches,
                        parse_produce_response, produce_request, produce_values, record_batch)

PUTS = 'tern_object_store_requests_total{type="PUT"}'
PUT_ERRORS = 'tern_object_store_errors_total{type="PUT"}'
DELAY_S = 3.0
PRODUCE_TIMEOUT_MS = 30000


def connect(port):
    return Conn(port, timeout=15, client_id="tern-durability")


def fetch_raw(port, topic, partition, offset):
    """(error, high_watermark, [(offset, value, leader_epoch)]) via Fetch v11."""
    c = connect(port)
    try:
        p = fetch(c, topic, partition, offset, version=11, max_wait_ms=100, max_bytes=1 << 22)
    finally:
        c.close()
    return p["error"], p["high_watermark"], parse_batches(p["records"])


# ---------------------------------------------------------------------------------------------
# 1. No ack before the object write
# ---------------------------------------------------------------------------------------------


def test_produce_is_not_acked_before_its_object_write(make_broker):
    broker = make_broker(settings={"object.store.fault.put.delay.ms": str(int(DELAY_S * 1000))})
    topic = f"slow-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic)

    # Raw requests, acks=all and acks=1 on two connections at once: we know when each left.
    conns = [connect(broker.port), connect(broker.port)]
    for c in conns:
        c.request(API_VERSIONS, 0, b"")
    puts_before = broker.metric(PUTS)
    sent = []
    for c, acks, value in [(conns[0], -1, b"acks-all"), (conns[1], 1, b"acks-1")]:
        c.send(API_PRODUCE, 7, produce_request([(topic, [(0, record_batch([value]))])], acks=acks, timeout_ms=PRODUCE_TIMEOUT_MS))
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
        [((name, index), p)] = parse_produce_response(body, 7).items()
        assert (name, index, p["error"]) == (topic, 0, 0)
        offsets.append(p["base_offset"])
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


def test_a_buffer_its_producers_stopped_filling_is_flushed_after_the_idle_time(make_broker):
    """A produce of more than wal.upload.bytes / 8 that nothing follows is acked after
    wal.upload.idle.ms and a PUT, not after wal.upload.interval.ms (its producer may be waiting
    for that ack to send more); a smaller one waits for the interval, and so does everything
    with wal.upload.idle.ms=0."""
    interval_s = 3.0
    for idle in ("10", "0"):
        broker = make_broker(settings={"wal.upload.interval.ms": str(int(interval_s * 1000)),
                                       "wal.upload.bytes": str(4 << 20), "wal.upload.idle.ms": idle})
        topic = f"idle-{uuid.uuid4().hex[:8]}"
        create_topic(broker, topic)
        c = connect(broker.port)
        c.request(API_VERSIONS, 0, b"")
        took = {}
        for size in (600_000, 1000):  # over and under 512 KiB
            t0 = time.monotonic()
            c.send(API_PRODUCE, 7, produce_request([(topic, [(0, record_batch([b"v" * size]))])], timeout_ms=PRODUCE_TIMEOUT_MS))
            _, body = c.recv()
            took[size] = time.monotonic() - t0
            [(_, p)] = parse_produce_response(body, 7).items()
            assert p["error"] == 0
        c.close()
        if idle == "10":
            assert took[600_000] < 1.5, f"a 600 kB produce waited {took[600_000]:.2f} s with the idle flush on"
        else:
            assert took[600_000] >= interval_s - 0.1, f"acked after {took[600_000]:.2f} s with wal.upload.idle.ms=0"
        assert took[1000] >= interval_s - 0.1, f"a 1 kB produce was flushed after {took[1000]:.2f} s, before the interval"
        assert [v for _, v in consume_all(broker, topic)] == [b"v" * 600_000, b"v" * 1000]
        broker.stop()


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
    conn = connect(broker.port)
    conn.send(API_PRODUCE, 7, produce_request([(topic, [(0, record_batch(b))])], acks=-1, timeout_ms=PRODUCE_TIMEOUT_MS))
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
    conn = connect(broker.port)
    conn.send(API_PRODUCE, 7, produce_request([(topic, [(0, record_batch(values))])], acks=1, timeout_ms=PRODUCE_TIMEOUT_MS))
    time.sleep(0.5)  # the flush is now in its PUT
    code = broker.stop()
    assert code == 0, f"exit code {code} after SIGTERM:\n{broker.log()[-3000:]}"
    # The shutdown flushed and answered the request before closing the connection.
    _, body = conn.recv()
    [((name, index), p)] = parse_produce_response(body, 7).items()
    assert (name, index, p["error"], p["base_offset"]) == (topic, 0, 0, 0)
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
