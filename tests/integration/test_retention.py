"""retention.ms and retention.bytes take effect: the log start offset moves past expired
data (durably), as Kafka's log retention deletes whole segments from the start."""
import os
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from kafka_wire import consume_all, wait_for

FAST = {"log.retention.check.interval.ms": "200"}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_topic(broker, configs):
    name = unique("ret")
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1, config=configs)]).values():
        f.result(30)
    return name


def produce(broker, topic, values, timestamp=None, key=None):
    """One acked produce per call: acks=all answers after the upload, so each call's records
    land in their own object."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for v in values:
        p.produce(topic, v, key=key, partition=0, timestamp=timestamp or 0)
    assert p.flush(30) == 0


def watermarks(broker, topic):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("wm")})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        c.close()


def test_retention_ms_moves_the_log_start_past_expired_data(make_broker):
    broker = make_broker(settings=FAST)
    topic = make_topic(broker, {"retention.ms": "60000"})
    ten_minutes_ago = int(time.time() * 1000) - 600_000
    produce(broker, topic, [b"old%d" % i for i in range(5)], timestamp=ten_minutes_ago)
    produce(broker, topic, [b"new%d" % i for i in range(3)])
    assert wait_for(lambda: watermarks(broker, topic) == (5, 8), timeout=15), watermarks(broker, topic)
    assert consume_all(broker, topic) == [(5, b"new0"), (6, b"new1"), (7, b"new2")]
    broker.restart()
    assert watermarks(broker, topic) == (5, 8)


def test_retention_bytes_keeps_at_least_the_limit(make_broker):
    broker = make_broker(settings=FAST)
    value = b"x" * 2000
    topic = make_topic(broker, {"retention.bytes": str(5 * 2000 // 2)})  # room for 2.5 such batches
    for _ in range(5):
        produce(broker, topic, [value])
    # Whole ranges go while what stays is still >= 5000 bytes: three ranges stay.
    assert wait_for(lambda: watermarks(broker, topic) == (2, 5), timeout=15), watermarks(broker, topic)
    assert [o for o, _ in consume_all(broker, topic)] == [2, 3, 4]


def test_compact_only_topics_are_not_trimmed(make_broker):
    broker = make_broker(settings=FAST)
    topic = make_topic(broker, {"cleanup.policy": "compact", "retention.ms": "1000"})
    produce(broker, topic, [b"v"], timestamp=int(time.time() * 1000) - 600_000, key=b"k")
    time.sleep(1.5)
    assert watermarks(broker, topic) == (0, 1)


def test_altering_retention_takes_effect(make_broker):
    broker = make_broker(settings=FAST)
    topic = make_topic(broker, {})
    produce(broker, topic, [b"a", b"b"], timestamp=int(time.time() * 1000) - 2 * 86_400_000)
    produce(broker, topic, [b"c"])
    time.sleep(1)
    assert watermarks(broker, topic) == (0, 3), "the default retention.ms (7 days) keeps 2-day-old data"
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "86400000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(20)
    assert wait_for(lambda: watermarks(broker, topic) == (2, 3), timeout=15), watermarks(broker, topic)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_checks_pause_their_interval_between_passes(make_broker):
    """Retention and offset expiry run a pass every interval, not back to back. Their passes
    return a count, which was taken for the pause of a self-pacing pass: 0 ms, so once the
    first pass had run (5 minutes after startup by default) an idle broker spun a core."""
    broker = make_broker(settings={**FAST, "offsets.retention.check.interval.ms": "200"})
    topic = make_topic(broker, {"retention.ms": "60000"})
    produce(broker, topic, [b"x"])
    time.sleep(1)  # past the first passes of both
    before = cpu_seconds(broker.proc.pid)
    time.sleep(3)
    used = cpu_seconds(broker.proc.pid) - before
    assert used < 1.0, f"the idle broker used {used:.2f} CPU seconds in 3 s"
