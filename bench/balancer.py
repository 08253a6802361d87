#!/usr/bin/env python3
"""The auto-balancer under a skewed load, in a three-broker cluster on SeaweedFS and PostgreSQL.

Starts SeaweedFS, PostgreSQL (the system's binaries) and three `tern serve` with the default
balancer settings (`balancer.interval.ms` 30000, `balancer.tolerance.percent` 10,
`balancer.max.moves` 5, `balancer.min.bytes.per.sec` 1 MiB/s). A topic of --partitions
partitions is spread evenly by the controller; then a producer (confluent-kafka, 1 KiB
records, acks=all) sends --skew times as much to each partition of broker 1 as to each
partition of the others, so the brokers' loads start at skew:1:1. Every second it reads the
leaders and prints each broker's share of the load (the partitions it serves times their
rates) against the mean, until every broker is within ±20% of it (target: within 3 minutes
of the load starting) or --timeout passes. It also prints the rates the brokers reported
themselves (`broker_loads`), which the controller balances on.

Exits 1 when the target is missed. Run after `swift build -c release --product tern`:

    python3 bench/balancer.py [--partitions 24] [--base-rate 80] [--skew 5] [--timeout 300]
"""
import argparse
import sys
import threading
import time

from cluster_bench import cluster
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

TOPIC = "skewed"


def leaders(admin):
    try:
        md = admin.list_topics(TOPIC, timeout=10)
        return {p.id: p.leader for p in md.topics[TOPIC].partitions.values()}
    except Exception:
        return {}


def produce(bootstrap, rates, stop, stats):
    """Each partition at its own records/s, 1 KiB each."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20, "message.timeout.ms": 120000,
                  "topic.metadata.refresh.interval.ms": 1000, "queue.buffering.max.kbytes": 262144, "log_level": 2})
    value = b"x" * 1024
    sent = {i: 0 for i in rates}

    def done(err, m):
        stats["acked" if err is None else "failed"] += 1

    start = time.monotonic()
    while not stop.is_set():
        elapsed = time.monotonic() - start
        for i, r in rates.items():
            due = int(elapsed * r)
            while sent[i] < due:
                try:
                    p.produce(TOPIC, value=value, partition=i, on_delivery=done)
                    sent[i] += 1
                except BufferError:
                    p.poll(0.01)
                    break
        p.poll(0.005)
    p.flush(30)


def shares(lead, rates):
    load = {1: 0.0, 2: 0.0, 3: 0.0}
    for p, node in lead.items():
        if node in load:
            load[node] += rates[p] * 1024
    return load


def reported(pg, db):
    """Bytes in/s per broker as the brokers last reported them (broker_loads)."""
    out = {}
    for node, loads in pg.sql("SELECT node_id, loads FROM broker_loads", db):
        total = 0.0
        for entry in filter(None, loads.split(";")):
            parts = entry.split(":")
            total += float(parts[1])
        out[int(node)] = total
    return out


def measure(args, brokers, pg, db, stop, stats):
    """Seconds of skewed load until every broker is within ±20% of the mean; None if never."""
    bootstrap = ",".join(b.bootstrap for b in brokers.values())
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
    admin.create_topics([NewTopic(TOPIC, args.partitions, 1)])[TOPIC].result(60)
    deadline = time.time() + 60
    lead = {}
    while time.time() < deadline:
        lead = leaders(admin)
        if len(lead) == args.partitions and all(v > 0 for v in lead.values()):
            break
        time.sleep(0.2)
    rates = {p: args.base_rate * (args.skew if node == 1 else 1) for p, node in lead.items()}
    start_load = shares(lead, rates)
    total = sum(start_load.values())
    print(f"3 brokers, SeaweedFS + PostgreSQL, default balancer settings; {args.partitions} partitions, "
          f"{total / 1e6:.2f} MB/s of 1 KiB acks=all records, each partition of broker 1 at {args.skew:g}x the others")
    print("starting load per broker (MB/s): " + ", ".join(f"{n}: {v / 1e6:.2f}" for n, v in sorted(start_load.items())))
    loader = threading.Thread(target=produce, args=(bootstrap, rates, stop, stats))
    loader.start()
    try:
        t0 = time.monotonic()
        mean = total / 3
        last_line = ""
        while time.monotonic() - t0 < args.timeout:
            time.sleep(1)
            lead = leaders(admin)
            if len(lead) != args.partitions or any(v < 0 for v in lead.values()):
                continue  # a move in progress
            load = shares(lead, rates)
            line = ", ".join(f"{n}: {v / 1e6:.2f} ({(v - mean) / mean * 100:+.0f}%)" for n, v in sorted(load.items()))
            if line != last_line:
                rep = reported(pg, db)
                print(f"{time.monotonic() - t0:6.1f} s  load per broker (MB/s, vs mean): {line}; "
                      f"reported in: " + ", ".join(f"{n}: {v / 1e6:.2f}" for n, v in sorted(rep.items())))
                last_line = line
            if max(abs(v - mean) / mean for v in load.values()) <= 0.20:
                return time.monotonic() - t0
        return None
    finally:
        stop.set()
        loader.join(60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", type=int, default=24)
    ap.add_argument("--base-rate", type=int, default=80, help="records/s to each partition not on broker 1")
    ap.add_argument("--skew", type=float, default=5, help="how many times more each partition of broker 1 gets")
    ap.add_argument("--timeout", type=int, default=300, help="give up after this many seconds of load")
    ap.add_argument("--target", type=float, default=180, help="seconds allowed to bring every broker within ±20%%")
    args = ap.parse_args()
    stop = threading.Event()
    stats = {"acked": 0, "failed": 0}
    with cluster("balancer-bench") as (brokers, pg, db):
        balanced_at = measure(args, brokers, pg, db, stop, stats)
    if balanced_at is None:
        print(f"not within ±20% of the mean after {args.timeout} s")
    else:
        print(f"every broker within ±20% of the mean after {balanced_at:.1f} s of load (target < {args.target:.0f} s)")
    ok = balanced_at is not None and balanced_at < args.target
    print(f"produce: {stats['acked']} acked, {stats['failed']} failed")
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
