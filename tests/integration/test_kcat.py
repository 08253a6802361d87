"""kcat (Debian's, on its own librdkafka 2.0.x): metadata listing and every codec.

librdkafka before 2.11.1 enables compression only when the broker advertises Produce from
v0, so this also checks that Tern's advertised range keeps old librdkafka compressing.
"""
import json
import shutil
import subprocess
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from kafka_wire import CODEC_IDS, NONE, Conn, batch_headers, fetch

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def kcat(broker, *args, input=None, timeout=60):
    p = subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=input, capture_output=True, timeout=timeout)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def test_kcat_metadata_listing(broker):
    topic = unique("meta")
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
        f.result(30)
    text = kcat(broker, "-L", "-t", topic)
    assert "1 brokers:" in text and f"broker 1 at {broker.bootstrap}" in text
    assert f'topic "{topic}" with 3 partitions:' in text
    for p in range(3):
        assert f"partition {p}, leader 1, replicas: 1, isrs: 1" in text
    meta = json.loads(kcat(broker, "-L", "-J"))
    assert [b["id"] for b in meta["brokers"]] == [1]
    t = next(t for t in meta["topics"] if t["topic"] == topic)
    assert "error" not in t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    assert all(p["leader"] == 1 and p["replicas"] == [{"id": 1}] for p in t["partitions"])


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_codec_round_trip(broker, codec):
    topic = unique(f"kcat-{codec}")
    lines = [f"{codec}-{i:04d} " * 8 for i in range(200)]
    kcat(broker, "-P", "-t", topic, "-p", "0", "-z", codec, "-X", "linger.ms=100",
         input=("\n".join(lines) + "\n").encode())
    c = Conn(broker.port)
    try:
        p = fetch(c, topic, 0, 0, version=11)
        assert p["error"] == NONE
        codecs = {b["codec"] for b in batch_headers(p["records"])}
    finally:
        c.close()
    assert codecs == {CODEC_IDS[codec]}, f"kcat -z {codec} stored codecs {codecs}"
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q")
    assert out.splitlines() == lines
