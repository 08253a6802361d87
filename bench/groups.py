#!/usr/bin/env python3
"""Rebalance time of a consumer group on `tern serve`, with the classic protocol and with the
KIP-848 `consumer` protocol (group.protocol=consumer: the broker assigns, members reconcile).

Starts the release binary on a fresh data directory, creates a topic of P partitions with a
producer writing to every partition all the time, forms a group of N confluent-kafka
subscribe() consumers, then adds one more and prints the time from that member's subscribe()
to every member consuming again (each holding its share of the partitions, with no overlap,
and having read a record since its last assignment change). Run after `swift build -c release`:

    python3 bench/groups.py [--consumers 10] [--partitions 100] [--strategy range|cooperative-sticky]
                            [--assignor uniform|range] [--protocol both|classic|consumer] [--rounds 3]

It prints the median of each protocol measured. The broker's consumer-protocol heartbeat
interval is lowered to 1 s, the classic consumers' own interval is 1 s too.
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
    def __init__(self, bootstrap, group, topic, strategy, protocol="classic", assignor="uniform"):
        super().__init__(daemon=True)
        self.conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "latest",
                     "enable.auto.commit": False}
        if protocol == "consumer":
            self.conf.update({"group.protocol": "consumer", "group.remote.assignor": assignor})
        else:
            self.conf.update({"session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
                              "partition.assignment.strategy": strategy})
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
    ap.add_argument("--strategy", default="range", help="client-side assignor of the classic protocol")
    ap.add_argument("--assignor", default="uniform", help="server-side assignor of the consumer protocol")
    ap.add_argument("--protocol", default="both", choices=["both", "classic", "consumer"])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    data = tempfile.mkdtemp(prefix="tern-bench-groups-")
    # The consumer protocol's heartbeat interval is the broker's: 1 s, as the classic members'.
    os.environ["TERN_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS"] = "1000"
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
        summary = []
        for protocol in (["classic", "consumer"] if a.protocol == "both" else [a.protocol]):
            label = f"classic protocol ({a.strategy})" if protocol == "classic" else f"consumer protocol, KIP-848 ({a.assignor})"
            results = []
            for r in range(a.rounds):
                results.append(one_round(a, bootstrap, topic, protocol, label, r, members))
            summary.append(f"{label}: median {sorted(results)[len(results) // 2]:.2f} s over {len(results)} rounds")
        for line in summary:
            print(line)
    finally:
        stop.set()
        for m in members:
            m.stopping = True
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


def one_round(a, bootstrap, topic, protocol, label, r, started):
    """Forms a group of `a.consumers`, adds one member, returns the seconds until all consume
    again. Every member started is appended to `started` (for cleanup)."""
    group = f"bench-{protocol}-{r}-{int(time.time())}"
    members = [Member(bootstrap, group, topic, a.strategy, protocol, a.assignor) for _ in range(a.consumers)]
    started += members
    for m in members:
        m.start()
    deadline = time.time() + 120
    while settled(members, a.partitions) is None:
        if time.time() > deadline:
            raise SystemExit(f"{label}: the group did not form")
        time.sleep(0.05)
    joining = Member(bootstrap, group, topic, a.strategy, protocol, a.assignor)
    started.append(joining)
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
            raise SystemExit(f"{label}: the group did not settle after the new member joined")
        time.sleep(0.02)
    print(f"round {r + 1}: {a.consumers} consumers + 1 joining, {a.partitions} partitions, "
          f"{label}: all consuming again after {done - t0:.2f} s", flush=True)
    for m in members:
        m.stopping = True
    for m in members:
        m.join(30)
    return done - t0


if __name__ == "__main__":
    main()
