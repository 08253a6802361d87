"""Record batch codecs and Kafka's produce validation, with real clients.

Every codec test checks the codec bits of the batches the broker actually stored (some
librdkafka versions quietly send uncompressed data when a codec is configured), and reads the
records back with a second client.
"""
import asyncio
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_wire import (API_FETCH, API_PRODUCE, CODEC_IDS, NONE, Conn, batch_headers, compressed_batch, consume_all,
                        fetch, parse_produce_response, produce_request, record_batch)

CODECS = ["gzip", "snappy", "lz4", "zstd"]
INVALID_TIMESTAMP, UNSUPPORTED_COMPRESSION_TYPE, INVALID_RECORD = 32, 76, 87


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_topic(broker, name, configs=None, partitions=1):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                           config=configs or {})]).values():
        f.result(30)
    return name


def values(n, tag=""):
    # Compressible, distinct values.
    return [f"{tag}value-{i:05d} ".encode() * 20 for i in range(n)]


def stored_batches(broker, topic, partition=0):
    """Headers of every batch stored in the partition, read with a raw Fetch v11."""
    c = Conn(broker.port)
    try:
        out, offset = [], 0
        while True:
            p = fetch(c, topic, partition, offset, version=11)
            assert p["error"] == NONE, f"fetch error {p['error']}"
            got = [b for b in batch_headers(p["records"]) if b["base_offset"] >= offset]
            if not got:
                assert offset >= p["high_watermark"], "fetch below the high watermark returned no batch"
                return out
            out += got
            offset = got[-1]["base_offset"] + got[-1]["count"]
    finally:
        c.close()


def confluent_produce(broker, topic, vals, **conf):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 50,
                  "message.timeout.ms": 30000, **conf})
    errors = []
    for v in vals:
        p.produce(topic, v, partition=0, on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(40) == 0
    assert not errors, errors[:3]


def kafka_python_values(broker, topic, n):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, group_id=None,
                      consumer_timeout_ms=5000, request_timeout_ms=30000)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        out = []
        deadline = time.time() + 30
        while len(out) < n and time.time() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                out += [r.value for r in recs]
        return out
    finally:
        c.close()


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_codec_stored_and_read_by_kafka_python(broker, codec):
    topic = make_topic(broker, unique(f"cc-{codec}"))
    vals = values(300, codec)
    confluent_produce(broker, topic, vals, **{"compression.type": codec})
    batches = stored_batches(broker, topic)
    assert sum(b["count"] for b in batches) == 300
    assert {b["codec"] for b in batches} == {CODEC_IDS[codec]}, batches[:3]
    assert max(b["count"] for b in batches) > 1  # really batched, so really compressed together
    assert [v for _, v in consume_all(broker, topic)] == vals
    assert kafka_python_values(broker, topic, 300) == vals


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_codec_stored_and_read_by_confluent(broker, codec):
    from kafka import KafkaProducer
    topic = make_topic(broker, unique(f"kp-{codec}"))
    vals = values(300, codec)
    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type=codec, linger_ms=50,
                         request_timeout_ms=30000, max_block_ms=30000)
    try:
        futures = [prod.send(topic, v, partition=0) for v in vals]
        prod.flush(30)
        assert [f.get(30).offset for f in futures] == list(range(300))
    finally:
        prod.close()
    batches = stored_batches(broker, topic)
    assert {b["codec"] for b in batches} == {CODEC_IDS[codec]}, batches[:3]
    assert [v for _, v in consume_all(broker, topic)] == vals


@pytest.mark.parametrize("codec", CODECS)
def test_aiokafka_codec_with_default_versions(broker, codec):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATP
    topic = make_topic(broker, unique(f"aio-{codec}"))
    vals = values(100, codec)

    async def run():
        prod = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type=codec,
                                linger_ms=50, request_timeout_ms=30000)
        await prod.start()
        try:
            futs = [await prod.send(topic, v, partition=0) for v in vals]
            metas = [await f for f in futs]
            assert [m.offset for m in metas] == list(range(100))
        finally:
            await prod.stop()
        cons = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=30000)
        await cons.start()
        try:
            tp = ATP(topic, 0)
            cons.assign([tp])
            await cons.seek_to_beginning(tp)
            out = []
            while len(out) < 100:
                batch = await asyncio.wait_for(cons.getmany(tp, timeout_ms=1000), 30)
                out += [m.value for m in batch.get(tp, [])]
            return out
        finally:
            await cons.stop()

    assert asyncio.run(run()) == vals
    assert {b["codec"] for b in stored_batches(broker, topic)} == {CODEC_IDS[codec]}


@pytest.mark.parametrize("topic_codec,producer_codec", [("zstd", "gzip"), ("uncompressed", "lz4"), ("snappy", "none"),
                                                        ("gzip", "gzip")])
def test_topic_compression_type_is_honoured(broker, topic_codec, producer_codec):
    topic = make_topic(broker, unique("tc"), {"compression.type": topic_codec})
    vals = values(200)
    confluent_produce(broker, topic, vals, **{"compression.type": producer_codec})
    want = CODEC_IDS["none" if topic_codec == "uncompressed" else topic_codec]
    assert {b["codec"] for b in stored_batches(broker, topic)} == {want}
    assert [v for _, v in consume_all(broker, topic)] == vals
    assert kafka_python_values(broker, topic, 200) == vals


def test_log_append_time_topic_stamps_broker_time(broker):
    topic = make_topic(broker, unique("lat"), {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    confluent_produce(broker, topic, values(20), **{"compression.type": "lz4"})
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, b"old", partition=0, timestamp=1000)
    assert p.flush(30) == 0
    after = int(time.time() * 1000)
    for b in stored_batches(broker, topic):
        assert b["attributes"] & 0x08, "LogAppendTime bit not set"
        assert before <= b["max_timestamp"] <= after
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        seen = []
        deadline = time.time() + 30
        while len(seen) < 21 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                seen.append(m.timestamp())
        assert len(seen) == 21
        for kind, ts in seen:
            assert kind == 2, "consumer does not see TIMESTAMP_LOG_APPEND_TIME"  # confluent_kafka.TIMESTAMP_LOG_APPEND_TIME
            assert before <= ts <= after
    finally:
        c.close()
    # The raw Produce response carries the stamped time.
    conn = Conn(broker.port)
    try:
        resp = parse_produce_response(conn.request(API_PRODUCE, 8, produce_request([(topic, [(0, record_batch([b"x"], timestamp=5))])])), 8)
        r = resp[(topic, 0)]
        assert r["error"] == NONE and abs(r["log_append_time"] - time.time() * 1000) < 60_000
    finally:
        conn.close()


def produce_raw(broker, topic, batch, version=8):
    conn = Conn(broker.port)
    try:
        return parse_produce_response(conn.request(API_PRODUCE, version, produce_request([(topic, [(0, batch)])])), version)[(topic, 0)]
    finally:
        conn.close()


def test_timestamps_outside_the_topic_bounds_are_invalid_timestamp(broker):
    topic = make_topic(broker, unique("ts"))
    now = int(time.time() * 1000)
    # Kafka 4's default message.timestamp.after.max.ms: one hour ahead at most.
    r = produce_raw(broker, topic, compressed_batch([b"a", b"b"], "gzip", timestamp=now + 2 * 3600 * 1000))
    assert r["error"] == INVALID_TIMESTAMP
    assert [i for i, _ in r["record_errors"]] == [0, 1]
    assert produce_raw(broker, topic, record_batch([b"ok"], timestamp=now + 60_000))["error"] == NONE
    assert produce_raw(broker, topic, record_batch([b"old"], timestamp=1000))["error"] == NONE
    strict = make_topic(broker, unique("ts-strict"), {"message.timestamp.before.max.ms": "60000"})
    assert produce_raw(broker, strict, record_batch([b"old"], timestamp=now - 3600_000))["error"] == INVALID_TIMESTAMP
    # librdkafka surfaces it to the application.
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 20000})
    errs = []
    p.produce(topic, b"future", partition=0, timestamp=now + 3 * 3600 * 1000, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.INVALID_TIMESTAMP
    assert [v for _, v in consume_all(broker, topic)] == [b"ok", b"old"]


def test_compacted_topic_refuses_records_without_key(broker):
    topic = make_topic(broker, unique("compact"), {"cleanup.policy": "compact"})
    r = produce_raw(broker, topic, compressed_batch([b"a", b"b"], "snappy"))
    assert r["error"] == INVALID_RECORD
    assert [i for i, _ in r["record_errors"]] == [0, 1]
    assert produce_raw(broker, topic, compressed_batch([b"a"], "snappy", key=b"k"))["error"] == NONE
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 20000})
    errs = []
    # Separate batches: Kafka refuses a whole batch when one record lacks a key.
    p.produce(topic, b"nokey", partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    p.produce(topic, b"keyed", key=b"k2", partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)
    assert [e.code() if e else None for e in errs] == [KafkaError.INVALID_RECORD, None]
    assert [v for _, v in consume_all(broker, topic)] == [b"a", b"keyed"]


def test_zstd_needs_produce_v7_and_fetch_v10(broker):
    topic = make_topic(broker, unique("zstd"))
    batch = compressed_batch([b"z1", b"z2"], "zstd")
    assert produce_raw(broker, topic, batch, version=6)["error"] == UNSUPPORTED_COMPRESSION_TYPE
    assert produce_raw(broker, topic, batch, version=7)["error"] == NONE
    conn = Conn(broker.port)
    try:
        assert fetch(conn, topic, 0, 0, version=9)["error"] == UNSUPPORTED_COMPRESSION_TYPE
        p = fetch(conn, topic, 0, 0, version=10)
        assert p["error"] == NONE and [b["codec"] for b in batch_headers(p["records"])] == [4]
    finally:
        conn.close()
    # A zstd topic refuses old fetchers whatever the batches hold (as Kafka).
    ztopic = make_topic(broker, unique("zstd-topic"), {"compression.type": "zstd"})
    conn = Conn(broker.port)
    try:
        assert fetch(conn, ztopic, 0, 0, version=9)["error"] == UNSUPPORTED_COMPRESSION_TYPE
    finally:
        conn.close()


def test_unknown_codec_and_undecodable_data_are_refused(broker):
    topic = make_topic(broker, unique("badcodec"))
    good = compressed_batch([b"x" * 100] * 10, "gzip")
    # Codec id 5 does not exist.
    from kafka_wire import batch_v2, encode_record
    records = b"".join(encode_record(i, b"v") for i in range(2))
    assert produce_raw(broker, topic, batch_v2(records, 2, attributes=5))["error"] == UNSUPPORTED_COMPRESSION_TYPE
    # gzip bits over bytes that are not gzip, under a valid CRC.
    assert produce_raw(broker, topic, batch_v2(records, 2, attributes=1))["error"] == INVALID_RECORD
    # A decompression bomb: 100 MB of zeros in a few kilobytes.
    bomb = compressed_batch([bytes(100 << 20)], "zstd")
    assert len(bomb) < 100_000
    assert produce_raw(broker, topic, bomb)["error"] == INVALID_RECORD
    assert produce_raw(broker, topic, good)["error"] == NONE
    assert broker.proc.poll() is None


def test_offsets_for_times_inside_a_compressed_batch(broker):
    topic = make_topic(broker, unique("oft"))
    t0 = int(time.time() * 1000) - 600_000
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 200, "compression.type": "gzip"})
    for i in range(100):
        p.produce(topic, f"v{i}".encode(), partition=0, timestamp=t0 + i * 1000)
    assert p.flush(30) == 0
    batches = stored_batches(broker, topic)
    assert len(batches) < 10 and {b["codec"] for b in batches} == {1}
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g")})
    try:
        got = c.offsets_for_times([TopicPartition(topic, 0, t0 + 50_500)], timeout=20)
        assert got[0].offset == 51
    finally:
        c.close()


@pytest.mark.parametrize("codec", CODECS)
def test_tern_cli_produces_and_consumes_every_codec(broker, codec):
    import subprocess
    from conftest import TERN
    topic = make_topic(broker, unique(f"cli-{codec}"))
    lines = [f"line-{i:04d} " * 10 for i in range(500)]
    p = subprocess.run([TERN, "produce", topic, "--compression", codec, "--bootstrap-server", broker.bootstrap],
                       input="\n".join(lines).encode() + b"\n", capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert {b["codec"] for b in stored_batches(broker, topic)} == {CODEC_IDS[codec]}
    assert [v.decode() for _, v in consume_all(broker, topic)] == lines
    # And tern consume reads batches another client compressed.
    other = make_topic(broker, unique(f"cli-read-{codec}"))
    vals = values(50, codec)
    confluent_produce(broker, other, vals, **{"compression.type": codec})
    c = subprocess.run([TERN, "consume", other, "--from-beginning", "--max-messages", "50", "--timeout-ms", "10000",
                        "--bootstrap-server", broker.bootstrap], capture_output=True, timeout=60)
    assert c.returncode == 0, c.stderr
    assert c.stdout.decode().splitlines() == [v.decode() for v in vals]
