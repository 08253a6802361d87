"""offsets.retention.minutes with real clients (Kafka's OffsetMetadataManager.cleanupExpiredOffsets):
a standalone (assign()) group's offsets expire that long after their commit; a subscribed
group keeps the offsets of its topics while it has members, and loses those of a topic it
does not subscribe to. Retention is 1 minute (Kafka's minimum) checked every 500 ms, so the
test takes a little over a minute."""
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka import ConsumerGroupTopicPartitions

from kafka_wire import create_topic

RETENTION_S = 60


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def committed(admin, group, partitions):
    """The group's committed offsets of `partitions` as {(topic, partition): offset}, -1001 for none."""
    fs = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, partitions)])
    got = fs[group].result(10)
    return {(tp.topic, tp.partition): tp.offset for tp in got.topic_partitions}


def test_offsets_expire_by_commit_time_unless_their_group_is_subscribed(make_broker):
    broker = make_broker(settings={"offsets.retention.minutes": "1", "offsets.retention.check.interval.ms": "500",
                                   "group.initial.rebalance.delay.ms": "0"})
    topic, other = unique("kept"), unique("unsubscribed")
    create_topic(broker, topic)
    create_topic(broker, other)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    both = [TopicPartition(topic, 0), TopicPartition(other, 0)]

    solo_group = unique("solo")
    solo = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": solo_group, "enable.auto.commit": False})
    solo.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
    solo.close()

    group = unique("active")
    active = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                       "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
    try:
        active.subscribe([topic])
        deadline = time.time() + 30
        while not active.assignment() and time.time() < deadline:
            active.poll(0.2)
        assert active.assignment(), "never assigned"
        active.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(other, 0, 4)], asynchronous=False)
        committed_at = time.time()
        assert committed(admin, group, both) == {(topic, 0): 3, (other, 0): 4}
        assert committed(admin, solo_group, [TopicPartition(topic, 0)]) == {(topic, 0): 7}

        # Well inside the retention nothing has gone.
        while time.time() < committed_at + RETENTION_S - 15:
            active.poll(0.2)
        assert committed(admin, solo_group, [TopicPartition(topic, 0)]) == {(topic, 0): 7}
        assert committed(admin, group, both) == {(topic, 0): 3, (other, 0): 4}

        # Past it: the standalone group's offset and the unsubscribed topic's are gone.
        deadline = committed_at + RETENTION_S + 20
        while time.time() < deadline:
            active.poll(0.2)
            if committed(admin, solo_group, [TopicPartition(topic, 0)])[(topic, 0)] < 0 and \
                    committed(admin, group, both)[(other, 0)] < 0:
                break
        assert time.time() >= committed_at + RETENTION_S - 2, "expired before the retention"
        assert committed(admin, solo_group, [TopicPartition(topic, 0)])[(topic, 0)] < 0, "standalone offset kept"
        got = committed(admin, group, both)
        assert got[(other, 0)] < 0, "the offset of a topic the group does not subscribe to was kept"
        assert got[(topic, 0)] == 3, "a subscribed topic's offset expired while the group has members"
        groups = [g.group_id for g in admin.list_consumer_groups().result(10).valid]
        assert solo_group not in groups, "an Empty group without offsets is still listed"
        assert group in groups
    finally:
        active.close()
