"""A subscribe() consumer in its own process, for test_groups.py: one of confluent-kafka,
kafka-python or aiokafka joins a group and prints one JSON line per event on stdout:

    {"event": "assignment", "partitions": [..], "change": "assigned"|"revoked"|"lost", "delta": [..], "t": ...}
    {"event": "records", "records": [[partition, offset, value], ...], "t": ...}
    {"event": "committed", "offsets": {partition: next offset}, "t": ...}
    {"event": "closed", "t": ...}

--protocol consumer makes confluent-kafka use the KIP-848 protocol (group.protocol=consumer);
--topic may then be a regex (^...), as subscribe() takes it.

SIGTERM closes the consumer gracefully (a dynamic member leaves the group); SIGKILL is the
crash. With --commit every batch's offsets are committed synchronously before the next poll.
"""
import argparse
import asyncio
import json
import signal
import sys
import time

stop = False


def on_term(*_):
    global stop
    stop = True


def emit(**event):
    event["t"] = time.time()
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Assignment:
    """The partitions held, from the rebalance callbacks (eager: revoke all, assign all;
    cooperative: revoke and assign the increments)."""

    def __init__(self):
        self.held = set()

    def assigned(self, partitions):
        self.held |= set(partitions)
        emit(event="assignment", change="assigned", delta=sorted(partitions), partitions=sorted(self.held))

    def revoked(self, partitions, change="revoked"):
        self.held -= set(partitions)
        emit(event="assignment", change=change, delta=sorted(partitions), partitions=sorted(self.held))


def run_confluent(a):
    from confluent_kafka import Consumer, TopicPartition
    conf = {"bootstrap.servers": a.bootstrap, "group.id": a.group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "client.id": "cfk-" + a.name}
    if a.protocol == "consumer":
        # KIP-848: the broker sets the session timeout and heartbeat interval, and assigns.
        conf["group.protocol"] = "consumer"
        if a.strategy:
            conf["group.remote.assignor"] = a.strategy
    else:
        conf.update({"session.timeout.ms": a.session_ms, "heartbeat.interval.ms": a.heartbeat_ms})
        if a.strategy:
            conf["partition.assignment.strategy"] = a.strategy
    if a.instance:
        conf["group.instance.id"] = a.instance
    held = Assignment()
    c = Consumer(conf)
    c.subscribe([a.topic],
                on_assign=lambda _c, ps: held.assigned([p.partition for p in ps]),
                on_revoke=lambda _c, ps: held.revoked([p.partition for p in ps]),
                on_lost=lambda _c, ps: held.revoked([p.partition for p in ps], "lost"))
    while not stop:
        msgs = c.consume(100, 0.2)
        good = [m for m in msgs if not m.error()]
        if good:
            emit(event="records", records=[[m.partition(), m.offset(), m.value().decode()] for m in good])
            if a.commit:
                last = {}
                for m in good:
                    last[m.partition()] = m.offset() + 1
                c.commit(offsets=[TopicPartition(a.topic, p, o) for p, o in last.items()], asynchronous=False)
                emit(event="committed", offsets=last)
    c.close()
    emit(event="closed")


def run_kafka_python(a):
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition
    held = Assignment()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            held.revoked([p.partition for p in revoked])

        def on_partitions_assigned(self, assigned):
            held.assigned([p.partition for p in assigned])

    kwargs = dict(bootstrap_servers=a.bootstrap, group_id=a.group, auto_offset_reset="earliest",
                  enable_auto_commit=False, session_timeout_ms=a.session_ms, heartbeat_interval_ms=a.heartbeat_ms,
                  client_id="kp-" + a.name)
    if a.instance:
        kwargs["group_instance_id"] = a.instance
    c = KafkaConsumer(**kwargs)
    c.subscribe([a.topic], listener=Listener())
    while not stop:
        batches = c.poll(timeout_ms=200)
        good = [m for ms in batches.values() for m in ms]
        if good:
            emit(event="records", records=[[m.partition, m.offset, m.value.decode()] for m in good])
            if a.commit:
                last = {}
                for m in good:
                    last[m.partition] = m.offset + 1
                c.commit({TopicPartition(a.topic, p): OffsetAndMetadata(o, "", -1) for p, o in last.items()})
                emit(event="committed", offsets=last)
    c.close()
    emit(event="closed")


def run_aiokafka(a):
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.structs import OffsetAndMetadata
    held = Assignment()

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            held.revoked([p.partition for p in revoked])

        async def on_partitions_assigned(self, assigned):
            held.assigned([p.partition for p in assigned])

    async def main():
        kwargs = dict(bootstrap_servers=a.bootstrap, group_id=a.group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=a.session_ms, heartbeat_interval_ms=a.heartbeat_ms,
                      client_id="aio-" + a.name)
        if a.instance:
            kwargs["group_instance_id"] = a.instance
        c = AIOKafkaConsumer(**kwargs)
        await c.start()
        c.subscribe([a.topic], listener=Listener())
        try:
            while not stop:
                batches = await c.getmany(timeout_ms=200)
                good = [m for ms in batches.values() for m in ms]
                if good:
                    emit(event="records", records=[[m.partition, m.offset, m.value.decode()] for m in good])
                    if a.commit:
                        last = {}
                        for m in good:
                            last[m.partition] = m.offset + 1
                        await c.commit({TopicPartition(a.topic, p): OffsetAndMetadata(o, "") for p, o in last.items()})
                        emit(event="committed", offsets=last)
        finally:
            await c.stop()
        emit(event="closed")

    asyncio.run(main())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--client", choices=["confluent", "kafka-python", "aiokafka"], required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--name", default="c")
    p.add_argument("--instance")
    p.add_argument("--strategy")
    p.add_argument("--session-ms", type=int, default=10000)
    p.add_argument("--heartbeat-ms", type=int, default=1000)
    p.add_argument("--commit", action="store_true")
    p.add_argument("--protocol", choices=["classic", "consumer"], default="classic",
                   help="confluent only: group.protocol (consumer = KIP-848)")
    a = p.parse_args()
    signal.signal(signal.SIGTERM, on_term)
    {"confluent": run_confluent, "kafka-python": run_kafka_python, "aiokafka": run_aiokafka}[a.client](a)


if __name__ == "__main__":
    main()
