#!/usr/bin/env python3
"""Rebalance time of a consumer group with the classic protocol on `tern serve`.

Starts the release binary on a fresh data directory, creates a topic of P partitions with a
producer writing to every partition all the time, forms a group of N confluent-kafka
subscribe() consumers, then adds one more and prints the time from that member's subscribe()
to every member consuming again (each holding its share of the partitions, with no overlap,
and having read a record since its last assignment change). Run after `swift build -c release`:

    python3 bench/groups.py [--consumers 10] [--partitions 100] [--strategy range|cooperative-sticky] [--rounds 3]
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import start_tern  # noqa: E402


class Member(threading.Thread):
    def __init__(self, bootstrap, group, topic, strategy):
        super().__init__(daemon=True)
        self.conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "latest",
                     "enable.auto.commit": False, "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
                     "partition.assignment.strategy": strategy}
        self.topic = topic
        self.lock = threading.Lock()
        self.held = set()
        self.changed = 0.0  # when the assignment last changed
        self.read_since_change = None  # first record after that
        self.stopping = False

    def _assign(self, _c, parts):
        with self.lock:
            self.held |= {p.partition for p in parts}
            self.changed, self.read_since_change = time.time(), None

    def _revoke(self, _c, parts):
        with self.lock:
            self.held -= {p.partition for p in parts}
            self.changed, self.read_since_change = time.time(), None

    def run(self):
        c = Consumer(self.conf)
        c.subscribe([self.topic], on_assign=self._assign, on_revoke=self._revoke, on_lost=self._revoke)
        while not self.stopping:
            for m in c.consume(500, 0.1):
                if not m.error():
                    with self.lock:
                        if self.read_since_change is None:
                            self.read_since_change = time.time()
        c.close()

    def state(self):
        with self.lock:
            return set(self.held), self.read_since_change


def settled(members, partitions):
    """When every member reads again with a clean split; None while not."""
    states = [m.state() for m in members]
    held = [h for h, _ in states]
    if any(not h for h in held) or sum(map(len, held)) != partitions or set().union(*held) != set(range(partitions)):
        return None
    if any(t is None for _, t in states):
        return None
    return max(t for _, t in states)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--consumers", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--strategy", default="range")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    data = tempfile.mkdtemp(prefix="tern-bench-groups-")
    proc, bootstrap, _ = start_tern(data)
    stop = threading.Event()
    members = []
    try:
        topic = "bench-groups"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=a.partitions, replication_factor=1)])[topic].result(60)

        def produce():
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
            while not stop.is_set():
                for part in range(a.partitions):
                    p.produce(topic, b"x", partition=part)
                p.poll(0)
                time.sleep(0.05)
            p.flush(10)

        threading.Thread(target=produce, daemon=True).start()
        results = []
        for r in range(a.rounds):
            group = f"bench-{r}-{int(time.time())}"
            members = [Member(bootstrap, group, topic, a.strategy) for _ in range(a.consumers)]
            for m in members:
                m.start()
            deadline = time.time() + 120
            while settled(members, a.partitions) is None:
                if time.time() > deadline:
                    raise SystemExit("the group did not form")
                time.sleep(0.05)
            joining = Member(bootstrap, group, topic, a.strategy)
            t0 = time.time()
            joining.start()
            members.append(joining)
            deadline = t0 + 120
            while True:
                # Wait until the newcomer holds partitions, then until everyone reads again.
                done = settled(members, a.partitions) if joining.state()[0] else None
                if done is not None:
                    break
                if time.time() > deadline:
                    raise SystemExit("the group did not settle after the new member joined")
                time.sleep(0.02)
            results.append(done - t0)
            print(f"round {r + 1}: {a.consumers} consumers + 1 joining, {a.partitions} partitions, "
                  f"{a.strategy}: all consuming again after {done - t0:.2f} s", flush=True)
            for m in members:
                m.stopping = True
            for m in members:
                m.join(30)
        print(f"classic protocol ({a.strategy}): median {sorted(results)[len(results) // 2]:.2f} s over {len(results)} rounds")
    finally:
        stop.set()
        for m in members:
            m.stopping = True
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
