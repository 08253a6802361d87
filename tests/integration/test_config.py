"""`tern serve` settings: defaults, layering, refusal of bad values, auto-creation rules."""
import os
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import TERN, Broker, free_port
from kafka_wire import (API_PRODUCE, NONE, REQUEST_TIMED_OUT, Conn, create_topic, fetch, parse_batches,
                        parse_produce_response, produce_request, record_batch, wait_for)


def run_serve(*args, env=None, timeout=15):
    d = tempfile.mkdtemp(prefix="tern-cfg-")
    return subprocess.run([TERN, "serve", "--data-dir", d, "--listen", f"127.0.0.1:{free_port()}",
                           "--metrics-listen", f"127.0.0.1:{free_port()}", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("args, named", [
    (["--set", "no.such.setting=1"], "no.such.setting"),
    (["--set", "num.partitions=many"], "num.partitions"),
    (["--set", "auto.create.topics.enable=maybe"], "auto.create.topics.enable"),
    (["--set", "wal.upload.interval.ms=0"], "wal.upload.interval.ms"),
    (["--set", "wal.upload.idle.ms=-1"], "wal.upload.idle.ms"),
    (["--listen", "nowhere"], "listeners"),
    (["--set", "object.store.fault.put.delay.ms=-5"], "object.store.fault.put.delay.ms"),
    (["--set", "object.store.fault.teleport.delay.ms=5"], "object.store.fault.teleport.delay.ms"),
    (["--object-store", "ftp://bucket"], "object.store"),
    (["--set", "object.store.fault.put.lost.nth=0"], "object.store.fault.put.lost.nth"),
    (["--set", "object.store.fault.get.timeout.rate=2"], "object.store.fault.get.timeout.rate"),
    (["--object-store", "s3://B!"], "object.store"),
    (["--object-store", "s3://bucket", "--s3-endpoint", "ftp://host"], "s3.endpoint"),
    (["--object-store", "s3://bucket", "--s3-endpoint", "http://host/path"], "s3.endpoint"),
    (["--object-store", "s3://bucket", "--s3-region", "us east"], "s3.region"),
    (["--object-store", "s3://bucket", "--set", "s3.part.size=1000"], "s3.part.size"),
    (["--object-store", "s3://bucket", "--set", "s3.path.style=sometimes"], "s3.path.style"),
    (["--set", "justaword"], "--set"),
    (["--set", "group.max.size=0"], "group.max.size"),
    (["--set", "group.min.session.timeout.ms=9000", "--set", "group.max.session.timeout.ms=8000"],
     "group.min.session.timeout.ms"),
    (["--set", "group.coordinator.rebalance.protocols=classic,share"], "group.coordinator.rebalance.protocols"),
    (["--set", "group.coordinator.rebalance.protocols=consumer"], "group.coordinator.rebalance.protocols"),
    (["--set", "group.consumer.session.timeout.ms=1000", "--set", "group.consumer.heartbeat.interval.ms=1000"],
     "group.consumer.heartbeat.interval.ms"),
])
def test_bad_settings_are_refused_by_name(args, named):
    r = run_serve(*args)
    assert r.returncode != 0
    assert named in r.stderr, r.stderr


def test_config_file_and_environment_layering(make_broker):
    d = tempfile.mkdtemp(prefix="tern-cfg-")
    path = os.path.join(d, "server.properties")
    with open(path, "w") as f:
        f.write("# a comment\nnum.partitions=2\nauto.create.topics.enable = true\nmessage.max.bytes: 5000\n")
    b = Broker(d, extra_args=["--config", path])
    # Environment beats the file; a flag (--set) beats the environment.
    os.environ["TERN_NUM_PARTITIONS"] = "3"
    try:
        b.start()
    finally:
        del os.environ["TERN_NUM_PARTITIONS"]
    try:
        p = Producer({"bootstrap.servers": b.bootstrap})
        p.produce("layered", b"x")
        assert p.flush(30) == 0
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics("layered", timeout=10)
        assert len(md.topics["layered"].partitions) == 3
        # message.max.bytes from the file is in force: a 6000-byte record is refused.
        errors = []
        p.produce("layered", b"y" * 6000, partition=0, on_delivery=lambda err, m: errors.append(err))
        p.flush(30)
        assert errors and errors[0] is not None and errors[0].code() == 10, errors  # MESSAGE_TOO_LARGE
    finally:
        b.kill()

    bad = os.path.join(d, "bad.properties")
    with open(bad, "w") as f:
        f.write("num.partitions=2\nthis line has no separator\n")
    r = run_serve("--config", bad)
    assert r.returncode != 0 and "bad.properties:2" in r.stderr, r.stderr


def test_ready_line_health_and_metrics(broker):
    log = broker.log()
    assert f"listening for Kafka on 127.0.0.1:{broker.port}" in log
    assert f"127.0.0.1:{broker.metrics_port}" in log
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/healthz") as r:
        assert r.status == 200
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("metered", b"x" * 100)
    assert p.flush(30) == 0
    m = broker.metrics()
    assert 'tern_requests_total{api="produce"}' in m
    assert broker.metric('tern_object_store_requests_total{type="PUT"}') >= 1
    assert broker.metric("tern_produced_bytes_total") >= 100
    assert 'tern_request_duration_seconds_bucket{api="produce",le="+Inf"}' in m
    # every PUT is in the request-time histogram, every WAL upload in the upload-time one
    m = broker.metrics()
    sample = {k: float(v) for k, v in (line.rsplit(" ", 1) for line in m.splitlines() if not line.startswith("#"))}
    puts = sample['tern_object_store_requests_total{type="PUT"}']
    assert sample['tern_object_store_request_duration_seconds_bucket{type="PUT",le="+Inf"}'] == puts
    assert sample['tern_object_store_request_duration_seconds_count{type="PUT"}'] == puts
    assert sample['tern_object_store_request_duration_seconds_sum{type="PUT"}'] > 0
    assert sample['tern_wal_upload_duration_seconds_count'] >= 1
    assert sample['tern_wal_upload_duration_seconds_bucket{le="10.0"}'] == sample['tern_wal_upload_duration_seconds_count']
    assert sample['tern_wal_sync_duration_seconds_count'] == 0, "no file WAL, no group commits"


def test_sigterm_exits_zero(broker):
    assert broker.stop() == 0
    assert "flushed and stopped" in broker.log()


def test_sigterm_the_moment_it_is_ready_exits_zero(make_broker):
    # /readyz polled without pause and SIGTERM sent as soon as it says ready: the broker must
    # already trap the signal. (It said ready before its service group installed the handler;
    # 15 of 20 such starts were killed, exit -15, and CI once caught it in the test above.)
    for _ in range(8):
        b = make_broker(start=False).start(poll=0)
        assert b.stop() == 0, b.log()
        assert "flushed and stopped" in b.log()


def test_auto_create_follows_kafka(make_broker):
    b = make_broker(settings={"num.partitions": "3"})
    # A consumer's metadata request does not create topics (allow.auto.create.topics=false).
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "g", "enable.auto.commit": False})
    c.assign([TopicPartition("consumer-only", 0, 0)])
    c.poll(2)
    c.close()
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
    assert "consumer-only" not in md.topics
    # A producer's does, with num.partitions partitions.
    p = Producer({"bootstrap.servers": b.bootstrap})
    p.produce("producer-made", b"x")
    assert p.flush(30) == 0
    md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
    assert len(md.topics["producer-made"].partitions) == 3

    off = make_broker(settings={"auto.create.topics.enable": "false"})
    p = Producer({"bootstrap.servers": off.bootstrap, "message.timeout.ms": 3000})
    errors = []
    p.produce("never", b"x", on_delivery=lambda err, m: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None
    md = AdminClient({"bootstrap.servers": off.bootstrap}).list_topics(timeout=10)
    assert "never" not in md.topics


def test_fetch_long_polls_until_data_arrives(broker):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("poll", b"first")
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 5000, "fetch.min.bytes": 1})
    c.assign([TopicPartition("poll", 0, 1)])
    c.poll(1.5)  # the consumer is now parked in a long-polling fetch at the end of the log
    fetches_before = broker.metric('tern_requests_total{api="fetch"}')
    time.sleep(2)
    idle_fetches = broker.metric('tern_requests_total{api="fetch"}') - fetches_before
    # Waiting is done by the broker, not by the client asking again and again.
    assert idle_fetches <= 1, idle_fetches
    sent = time.monotonic()
    p.produce("poll", b"second")
    p.flush(30)
    m = c.poll(10)
    latency = time.monotonic() - sent
    assert m is not None and m.value() == b"second"
    # Woken by the append, not by max_wait_ms (5 s).
    assert latency < 2.5, latency
    c.close()


def test_sigterm_with_an_unwritable_object_store_exits_1_in_bounded_time(make_broker):
    b = make_broker(settings={"object.store.fault.put.error.rate": "1", "shutdown.flush.timeout.ms": "1500"})
    p = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 20000})
    p.produce("stuck", b"never written")
    p.poll(1.0)
    started = time.monotonic()
    code = b.stop(timeout=20)
    assert code == 1
    assert time.monotonic() - started < 10
    assert "did not finish before the shutdown timeout" in b.log()


def test_broker_answers_request_timed_out(make_broker):
    """A Produce with acks=all whose object write outlasts the request's timeout_ms is answered
    REQUEST_TIMED_OUT (7) when the timeout expires, not when the write ends; as in Kafka, the
    batch is still written, and readable once the write completes."""
    b = make_broker(settings={"object.store.fault.put.delay.ms": "3000"})
    topic = f"timeout-{uuid.uuid4().hex[:8]}"
    create_topic(b, topic)
    c = Conn(b.port)
    try:
        body = produce_request([(topic, [(0, record_batch([b"late"]))])], acks=-1, timeout_ms=500)
        sent = time.monotonic()
        resp = parse_produce_response(c.request(API_PRODUCE, 7, body), 7)
        elapsed = time.monotonic() - sent
        assert set(resp) == {(topic, 0)}, resp
        assert resp[(topic, 0)]["error"] == REQUEST_TIMED_OUT, resp
        assert 0.4 <= elapsed < 2.0, f"REQUEST_TIMED_OUT after {elapsed:.2f}s for timeout_ms=500"
        # The write goes on and completes (3 s delay): the record is then at offset 0.
        time.sleep(max(0.0, sent + 4.0 - time.monotonic()))
        assert wait_for(lambda: fetch(c, topic, 0, 0)["high_watermark"] == 1, timeout=5)
        p = fetch(c, topic, 0, 0)
        assert p["error"] == NONE
        assert [(o, v) for o, v, _ in parse_batches(p["records"])] == [(0, b"late")]
    finally:
        c.close()


def test_a_taken_port_is_refused_by_name():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        r = run_serve("--listen", f"127.0.0.1:{taken}")
    assert r.returncode != 0
    assert "listeners: cannot listen on" in r.stderr, r.stderr
