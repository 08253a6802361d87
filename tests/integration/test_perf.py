"""`tern perf produce|consume|e2e` against the real broker.

Every count the load generator reports is checked against what another client sees:
confluent-kafka reads back the records (count, size, keys and their murmur2 partitions),
raw fetches read the codec bits of the stored batches, and confluent-kafka writes records
that `tern perf consume` must count. A generator that only agrees with itself cannot pass.
"""
import json
import os
import re
import resource
import signal
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kafka.partitioner.default import murmur2

from conftest import TERN, free_port
from kafka_wire import CODEC_IDS
from test_compression import stored_batches

PROGRESS = re.compile(r"^\d+ records sent, \d+\.\d records/sec \(\d+\.\d\d MB/sec\), "
                      r"avg \d+\.\d\d p50 \d+\.\d\d p99 \d+\.\d\d p99\.9 \d+\.\d\d max \d+\.\d\d ms latency\.$")
LATENCY_KEYS = {"avg", "p50", "p99", "p999", "max"}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def fast(make_broker):
    """A broker that flushes its WAL every 20 ms, so acks come quickly."""
    return make_broker(settings={"wal.upload.interval.ms": 20})


def perf(broker, *args, timeout=120, bootstrap=None):
    argv = [TERN, "perf", *args, "--bootstrap-server", bootstrap or broker.bootstrap]
    env = dict(os.environ)
    env.pop("TERN_BOOTSTRAP", None)
    return subprocess.run(argv, capture_output=True, timeout=timeout, env=env)


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout[-3000:]!r}\nstderr: {p.stderr[-3000:]!r}"
    assert b"Fatal error" not in p.stderr
    return p.stdout.decode()


def summary(p):
    """The JSON object a --json run prints on stdout (nothing else goes there)."""
    out = ok(p).strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


def failed(p, *needles):
    err = p.stderr.decode()
    assert p.returncode == 1, f"exit {p.returncode}\nstdout: {p.stdout!r}\nstderr: {err}"
    for n in needles:
        assert n in err, f"{n!r} not in stderr: {err}"
    assert "Fatal error" not in err and "Stack dump" not in err, err
    return err


def read_all(broker, topic, partitions, timeout=60):
    """[(partition, offset, key, value)] of every record, via confluent-kafka."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out, ended = [], set()
        deadline = time.time() + timeout
        while len(ended) < partitions:
            assert time.time() < deadline, f"no end of {topic} within {timeout}s; {len(out)} records"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                ended.add(m.partition())
                continue
            out.append((m.partition(), m.offset(), m.key(), m.value()))
        return out
    finally:
        c.close()


def end_offsets(broker, topic, partitions):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("w")})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p, 0), timeout=10)[1] for p in range(partitions)]
    finally:
        c.close()


def assert_latency(lat):
    assert set(lat) == LATENCY_KEYS, lat
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat
    assert lat["avg"] <= lat["max"], lat


# ---------------------------------------------------------------------------------------------
# produce


def test_produce_writes_exactly_n_records_of_the_size(fast):
    topic = unique("pp")
    s = summary(perf(fast, "produce", "--topic", topic, "--partitions", "3", "--num-records", "5000",
                     "--record-size", "200", "--json", "--interval", "0.2"))
    assert s["records"] == 5000
    assert s["bytes"] == 5000 * 200
    assert s["errors"] == {}
    assert s["seconds"] > 0 and s["records_per_sec"] == pytest.approx(5000 / s["seconds"], rel=0.01)
    assert s["mb_per_sec"] == pytest.approx(5000 * 200 / s["seconds"] / 1048576, rel=0.01)
    assert_latency(s["latency_ms"])

    records = read_all(fast, topic, 3)
    assert len(records) == 5000
    assert end_offsets(fast, topic, 3) == [sum(1 for r in records if r[0] == p) for p in range(3)]
    assert all(k is None and len(v) == 200 and re.fullmatch(rb"[A-Z]+", v) for _, _, k, v in records)
    # Sticky partitioning: unkeyed batches of 16 KiB move between partitions; 1 MB spreads.
    assert {p for p, _, _, _ in records} == {0, 1, 2}
    assert len({v for _, _, _, v in records}) > 4500  # random windows of a 64 KiB pool, not one payload


def test_produce_creates_the_topic_with_its_partitions(fast):
    from confluent_kafka.admin import AdminClient
    topic = unique("pc")
    ok(perf(fast, "produce", "--topic", topic, "--partitions", "5", "--num-records", "10", "--record-size", "1"))
    md = AdminClient({"bootstrap.servers": fast.bootstrap}).list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 5


@pytest.mark.parametrize("mode", ["sequential", "random"])
def test_keys_go_to_their_murmur2_partition(fast, mode):
    topic = unique(f"pk-{mode}")
    s = summary(perf(fast, "produce", "--topic", topic, "--partitions", "4", "--num-records", "1000",
                     "--record-size", "50", "--keys", mode, "--key-count", "10", "--json"))
    assert s["records"] == 1000
    records = read_all(fast, topic, 4)
    assert len(records) == 1000
    keys = [k for _, _, k, _ in records]
    assert set(keys) <= {str(i).encode() for i in range(10)}
    assert s["bytes"] == sum(len(k) + 50 for k in keys)
    for p, _, k, v in records:
        assert len(v) == 50
        assert p == (murmur2(k) & 0x7FFFFFFF) % 4, (k, p)
    if mode == "sequential":
        assert sorted(keys.count(str(i).encode()) for i in range(10)) == [100] * 10
    else:
        assert len(set(keys)) == 10


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_is_stored(fast, codec):
    topic = unique(f"pz-{codec}")
    s = summary(perf(fast, "produce", "--topic", topic, "--partitions", "1", "--num-records", "2000",
                     "--record-size", "100", "--compression", codec, "--json"))
    assert s["records"] == 2000
    batches = stored_batches(fast, topic)
    assert sum(b["count"] for b in batches) == 2000
    assert {b["codec"] for b in batches} == {CODEC_IDS[codec]}, batches[:3]
    assert max(b["count"] for b in batches) > 1
    records = read_all(fast, topic, 1)
    assert len(records) == 2000 and all(len(v) == 100 for _, _, _, v in records)


def test_progress_lines_and_summary_line(fast):
    topic = unique("pl")
    out = ok(perf(fast, "produce", "--topic", topic, "--num-records", "1500", "--throughput", "1000",
                  "--record-size", "10", "--interval", "0.25"))
    lines = out.strip().splitlines()
    progress, total = lines[:-1], lines[-1]
    assert len(progress) >= 4, lines
    for line in progress:
        assert PROGRESS.match(line), line
    assert sum(int(l.split()[0]) for l in progress) <= 1500
    assert re.match(r"^Total: 1500 records sent, \d+\.\d records/sec \(\d+\.\d\d MB/sec\), avg .* max \d+\.\d\d ms latency "
                    r"in \d+\.\d\d s, 0 errors\.$", total), total


def test_throughput_limits_the_rate(fast):
    topic = unique("pt")
    start = time.time()
    s = summary(perf(fast, "produce", "--topic", topic, "--num-records", "6000", "--throughput", "2000",
                     "--record-size", "100", "--json"))
    elapsed = time.time() - start
    assert s["records"] == 6000
    assert elapsed >= 2.5 and s["seconds"] >= 2.5, (elapsed, s)
    assert s["records_per_sec"] <= 2100, s


def test_a_paced_generator_sleeps_in_steps_not_per_record(fast):
    # Out of tokens, the generator waits for 1 ms of them, not for the next one: at 50k
    # records/s a wake-up per record or two was ~70k voluntary context switches in 2 s (a
    # third of its CPU, taken from the broker on a shared machine); now ~6k. The broker is
    # a child too, but it is not reaped here, so the children's totals count `tern perf` alone.
    topic = unique("pw")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nvcsw
    s = summary(perf(fast, "produce", "--topic", topic, "--num-records", "100000", "--throughput", "50000",
                     "--record-size", "100", "--json"))
    switches = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nvcsw - before
    assert s["records"] == 100000 and s["records_per_sec"] <= 52500, s
    assert switches < 25000, switches


def test_duration_runs_for_its_time(fast):
    topic = unique("pd")
    start = time.time()
    s = summary(perf(fast, "produce", "--topic", topic, "--duration", "2", "--throughput", "500",
                     "--record-size", "10", "--json"))
    assert time.time() - start >= 2
    assert 800 <= s["records"] <= 1100, s
    assert sum(end_offsets(fast, topic, 1)) == s["records"]


def test_several_producers_share_the_records(fast):
    topic = unique("pm")
    s = summary(perf(fast, "produce", "--topic", topic, "--partitions", "2", "--num-records", "3001",
                     "--producers", "3", "--record-size", "20", "--json"))
    assert s["records"] == 3001
    assert len(read_all(fast, topic, 2)) == 3001


def test_acks_0(fast):
    topic = unique("pa")
    s = summary(perf(fast, "produce", "--topic", topic, "--num-records", "1000", "--acks", "0",
                     "--record-size", "30", "--json"))
    assert s["records"] == 1000
    deadline = time.time() + 20
    while sum(end_offsets(fast, topic, 1)) < 1000 and time.time() < deadline:
        time.sleep(0.2)
    assert sum(end_offsets(fast, topic, 1)) == 1000


def test_refused_records_are_counted_by_error_name(fast):
    topic = unique("pr")
    p = perf(fast, "produce", "--topic", topic, "--num-records", "3", "--record-size", "1100000",
             "--batch-bytes", "2000000", "--max-request-bytes", "4000000", "--json")
    err = failed(p, "3 records were refused: MESSAGE_TOO_LARGE (3)")
    s = json.loads(p.stdout)
    assert s["records"] == 0 and s["errors"] == {"MESSAGE_TOO_LARGE": 3}
    assert "3 errors (MESSAGE_TOO_LARGE: 3)" in err


# ---------------------------------------------------------------------------------------------
# consume


def confluent_produce(broker, topic, n, partitions):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 20, "batch.size": 4096})
    for i in range(n):
        p.produce(topic, f"value-{i}".encode() * 5, partition=i % partitions)
    assert p.flush(30) == 0


def test_consume_counts_what_another_client_wrote(fast):
    topic = unique("cc")
    ok(perf(fast, "produce", "--topic", topic, "--partitions", "3", "--num-records", "1", "--record-size", "1"))
    confluent_produce(fast, topic, 776, 3)
    s = summary(perf(fast, "consume", "--topic", topic, "--num-records", "777", "--json"))
    assert s["records"] == 777
    assert s["bytes"] > 776 * 40 and s["seconds"] > 0
    assert set(s) == {"records", "bytes", "seconds", "records_per_sec", "mb_per_sec"}
    # Over a duration it reads everything there is, then idles: exactly the topic's records.
    d = summary(perf(fast, "consume", "--topic", topic, "--duration", "1.5", "--json"))
    assert d["records"] == 777 and d["bytes"] == s["bytes"]
    assert d["seconds"] == pytest.approx(1.5, abs=0.3)
    # From the end, nothing.
    e = summary(perf(fast, "consume", "--topic", topic, "--duration", "1", "--from-end", "--json"))
    assert e["records"] == 0


def test_consume_reads_what_perf_produced(fast):
    topic = unique("cp")
    ok(perf(fast, "produce", "--topic", topic, "--partitions", "4", "--num-records", "20000", "--record-size", "100",
            "--compression", "lz4"))
    s = summary(perf(fast, "consume", "--topic", topic, "--num-records", "20000", "--json"))
    assert s["records"] == 20000
    out = ok(perf(fast, "consume", "--topic", topic, "--num-records", "20000", "--interval", "0.1"))
    assert re.search(r"^Total: 20000 records received, \d+\.\d records/sec \(\d+\.\d\d MB/sec\) in \d+\.\d\d s\.$", out, re.M), out


def test_consume_gives_up_when_records_stop(fast):
    topic = unique("ct")
    ok(perf(fast, "produce", "--topic", topic, "--num-records", "50", "--record-size", "5"))
    start = time.time()
    p = perf(fast, "consume", "--topic", topic, "--num-records", "100", "--timeout", "1")
    failed(p, "only 50 of 100 records arrived")
    assert time.time() - start < 20


# ---------------------------------------------------------------------------------------------
# e2e


def test_e2e_measures_produce_to_consume_latency(make_broker):
    broker = make_broker(settings={"wal.upload.interval.ms": 100})
    topic = unique("ee")
    s = summary(perf(broker, "e2e", "--topic", topic, "--partitions", "2", "--num-records", "2000",
                     "--throughput", "1000", "--record-size", "64", "--json", "--interval", "0.5"))
    assert s["records_sent"] == 2000 and s["records"] == 2000 and s["missing"] == 0
    assert s["errors"] == {}
    assert_latency(s["latency_ms"])
    assert_latency(s["produce_latency_ms"])
    # Records become readable when their WAL flush (every 100 ms) is durable: most wait for
    # one, none waits for seconds.
    assert 5 <= s["latency_ms"]["p50"] <= 1000, s
    assert s["latency_ms"]["max"] < 5000, s
    assert s["seconds"] >= 1.5
    # Each value starts with its creation time (monotonic ns, big-endian), in creation order.
    records = read_all(broker, topic, 2)
    assert len(records) == 2000
    for p in range(2):
        stamps = [struct.unpack(">Q", v[:8])[0] for q, _, _, v in sorted(records) if q == p]
        assert stamps == sorted(stamps) and len(set(stamps)) > len(stamps) // 2


def test_e2e_needs_room_for_the_stamp(fast):
    p = perf(fast, "e2e", "--topic", unique("es"), "--num-records", "5", "--record-size", "4")
    assert p.returncode == 64 and b"--record-size must be at least 8" in p.stderr


# ---------------------------------------------------------------------------------------------
# errors


def test_unknown_topic_fails(fast):
    topic = unique("missing")
    failed(perf(fast, "consume", "--topic", topic, "--num-records", "5"),
           f"cannot consume from topic '{topic}': UNKNOWN_TOPIC_OR_PARTITION")
    failed(perf(fast, "produce", "--topic", topic, "--num-records", "5", "--no-create"),
           f"cannot produce to topic '{topic}': UNKNOWN_TOPIC_OR_PARTITION")


def test_broker_down_fails(fast):
    port = free_port()
    for cmd in (["produce", "--num-records", "5"], ["consume", "--num-records", "5"], ["e2e", "--num-records", "5"]):
        failed(perf(None, cmd[0], "--topic", "t", *cmd[1:], bootstrap=f"127.0.0.1:{port}", timeout=30),
               f"cannot connect to 127.0.0.1:{port}: connection refused")


@pytest.mark.parametrize("command", ["produce", "e2e"])
def test_broker_dying_mid_run_fails(make_broker, command):
    broker = make_broker(settings={"wal.upload.interval.ms": 20})
    env = dict(os.environ)
    env.pop("TERN_BOOTSTRAP", None)
    proc = subprocess.Popen([TERN, "perf", command, "--topic", unique("pk"), "--duration", "60", "--throughput", "2000",
                             "--record-size", "10", "--interval", "0.2", "--bootstrap-server", broker.bootstrap],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip(), "no progress line"
        broker.kill()
        out, err = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    err = err.decode()
    assert proc.returncode == 1, err
    assert "closed the connection" in err or "connection refused" in err or "connection reset" in err, err
    assert "Fatal error" not in err


def test_bad_flags_exit_64(fast):
    for args in (["produce", "--topic", "t"],
                 ["produce", "--topic", "t", "--num-records", "5", "--duration", "1"],
                 ["produce", "--topic", "t", "--num-records", "5", "--throughput", "0"],
                 ["produce", "--topic", "t", "--num-records", "5", "--compression", "brotli"],
                 ["produce", "--topic", "t", "--num-records", "5", "--keys", "some"],
                 ["consume", "--topic", "t", "--duration", "1", "--from-beginning", "--from-end"]):
        p = perf(fast, *args)
        assert p.returncode == 64, (args, p.stderr)


def test_help_documents_the_flags():
    for command, flags in {"produce": ["--num-records", "--duration", "--record-size", "--throughput", "--acks",
                                       "--compression", "--producers", "--batch-bytes", "--linger-ms", "--max-in-flight",
                                       "--keys", "--key-count", "--interval", "--json", "--partitions"],
                           "consume": ["--from-beginning", "--from-end", "--fetch-max-bytes", "--timeout"],
                           "e2e": ["--throughput", "--fetch-max-bytes", "--json"]}.items():
        out = subprocess.run([TERN, "perf", command, "--help"], capture_output=True, timeout=30).stdout.decode()
        for f in flags:
            assert f in out, (command, f)
    assert "perf" in subprocess.run([TERN, "--help"], capture_output=True, timeout=30).stdout.decode()
