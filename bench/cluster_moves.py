#!/usr/bin/env python3
"""Partition moves and failover in a three-broker cluster on SeaweedFS and PostgreSQL.

Starts SeaweedFS, PostgreSQL (the system's binaries) and three `tern serve` on them, keeps a
produce load running (--rate records/s of 1 KiB, acks=all, over every partition), and times:

- single moves: AlterPartitionReassignments of one partition to another broker, from the
  request to the first produce acked by the new owner (a raw Produce sent straight to it,
  retried every 5 ms); --moves of them, p50 and p99 (targets: < 1 s and < 2 s);
- a bulk move: 100 partitions reassigned in one request, until each accepts a produce on its
  new owner (target: < 10 s);
- failover: kill -9 of a broker owning 100 partitions, until each of them accepts a produce
  on a live broker (target: within broker.session.timeout.ms + 5 s).

Exits 1 when a target is missed. Run after `swift build -c release --product tern`:

    python3 bench/cluster_moves.py [--moves 20] [--rate 1000] [--session-ms 6000]
"""
import argparse
import statistics
import sys
import threading
import time

from cluster_bench import cluster
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka_wire import Conn, Enc, parse_produce_response, produce_request, record_batch, versioned_request


def leaders(admin, topic):
    md = admin.list_topics(topic, timeout=10)
    return {p.id: p.leader for p in md.topics[topic].partitions.values()}


def wait_settled(admin, topic, n, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            lead = leaders(admin, topic)
            if len(lead) == n and all(v >= 0 for v in lead.values()):
                return lead
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{topic}: leaders did not settle")


def reassign(conn, moves, topic):
    """AlterPartitionReassignments v0 (flexible): each partition of `moves` to its broker."""
    def part(e, pn):
        e.i32(pn[0]).array([pn[1]], lambda e, r: e.i32(r)).tags()

    e = Enc(True).i32(30000).array([(topic, sorted(moves.items()))], lambda e, t: e.str(t[0]).array(t[1], part).tags()).tags()
    d = versioned_request(conn, 45, 0, e, True)
    d.i32()
    error, message = d.i16(), d.nstring()
    assert error == 0, (error, message)
    for _, parts, _ in d.array(lambda d: (d.nstring(), d.array(lambda d: (d.i32(), d.i16(), d.nstring(), d.tags())), d.tags())):
        for p, code, msg, _ in parts:
            assert code == 0, (p, code, msg)


class Prober:
    """Raw Produce requests straight to a broker, one request per broker holding a record for
    every partition asked about (so a batch of partitions costs one WAL flush, not one each)."""

    def __init__(self, brokers):
        self.conns = {node: Conn(b.port, timeout=30) for node, b in brokers.items()}

    def acked(self, node, topic, partitions):
        """The partitions for which `node` acked the record."""
        body = produce_request([(topic, [(p, record_batch([b"probe"])) for p in partitions])], acks=-1, timeout_ms=10000)
        try:
            resp = parse_produce_response(self.conns[node].request(0, 7, body), 7)
        except OSError:
            return set()
        return {p for p in partitions if resp[(topic, p)]["error"] == 0}

    def wait(self, moves, topic, start, timeout, where=None):
        """Seconds from `start` until each partition of `moves` (partition -> node) acks a
        produce on its node; `where()`, when given, says where each partition is now instead."""
        done = {}
        deadline = time.monotonic() + timeout
        while len(done) < len(moves) and time.monotonic() < deadline:
            now = where() if where else moves
            by_node = {}
            for p in moves:
                if p not in done and now.get(p, -1) in self.conns:
                    by_node.setdefault(now[p], []).append(p)
            for node, parts in by_node.items():
                for p in self.acked(node, topic, parts):
                    done[p] = time.monotonic() - start
            time.sleep(0.005)
        return done


def load(brokers, topics, rate, stop, stats):
    p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in brokers.values()), "acks": "all",
                  "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 120000,
                  "topic.metadata.refresh.interval.ms": 1000, "log_level": 2})
    value = b"x" * 1024
    parts = [(t, i) for t, n in topics for i in range(n)]

    def done(err, m):
        stats["acked" if err is None else "failed"] += 1

    sent, start = 0, time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            t, i = parts[sent % len(parts)]
            try:
                p.produce(t, value=value, partition=i, on_delivery=done)
                sent += 1
            except BufferError:
                break
        p.poll(0.002)
    p.flush(10)


def measure(args, brokers, stop, stats):
    """Runs the three measurements; True when every target is met."""
    ok = True
    admin = AdminClient({"bootstrap.servers": brokers[1].bootstrap})
    for t, n in (("moves", 30), ("bulk", 150), ("failover", 300)):
        admin.create_topics([NewTopic(t, n, 1)])[t].result(60)
        wait_settled(admin, t, n)
    loader = threading.Thread(target=load, args=(brokers, [("moves", 30)], args.rate, stop, stats))
    loader.start()
    prober = Prober(brokers)
    control = Conn(brokers[1].port, timeout=30)
    time.sleep(2)

    print(f"3 brokers, SeaweedFS + PostgreSQL, {args.rate} records/s of 1 KiB acks=all in the background, "
          f"broker.session.timeout.ms={args.session_ms}\n")
    times = []
    for i in range(args.moves):
        lead = leaders(admin, "moves")
        p = i % 30
        target = lead[p] % 3 + 1
        start = time.monotonic()
        reassign(control, {p: target}, "moves")
        got = prober.wait({p: target}, "moves", start, 30)
        if p not in got:
            print(f"move {i}: partition {p} not served by {target} within 30 s")
            ok = False
            continue
        times.append(got[p])
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    print(f"single moves ({len(times)}): p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms "
          f"(targets < 1000 / < 2000 ms)")
    ok &= p50 < 1 and p99 < 2

    lead = leaders(admin, "bulk")
    moves = dict(list({p: l % 3 + 1 for p, l in sorted(lead.items())}.items())[:100])
    start = time.monotonic()
    reassign(control, moves, "bulk")
    got = prober.wait(moves, "bulk", start, 60)
    bulk = max(got.values()) if len(got) == len(moves) else float("inf")
    print(f"100 partitions moved in one request: all served by their new owners after {bulk:.2f} s (target < 10 s)")
    ok &= bulk < 10

    lead = leaders(admin, "failover")
    owned = [p for p, l in lead.items() if l == 2]
    victim = brokers[2]
    victim.kill()
    start = time.monotonic()
    del prober.conns[2]
    def where():
        try:
            return leaders(admin, "failover")
        except Exception:
            return {}

    served = prober.wait({p: None for p in owned}, "failover", start, args.session_ms / 1000 + 30, where)
    failover = max(served.values()) if len(served) == len(owned) else float("inf")
    limit = args.session_ms / 1000 + 5
    print(f"kill -9 of a broker owning {len(owned)} partitions: all served again after {failover:.2f} s "
          f"(target < {limit:.0f} s = session timeout + 5 s)")
    ok &= failover < limit
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--rate", type=int, default=1000, help="background produce, records/s")
    ap.add_argument("--session-ms", type=int, default=6000, help="broker.session.timeout.ms")
    args = ap.parse_args()
    stop = threading.Event()
    stats = {"acked": 0, "failed": 0}
    settings = {"broker.session.timeout.ms": args.session_ms, "broker.heartbeat.interval.ms": max(100, args.session_ms // 10)}
    with cluster("moves-bench", settings) as (brokers, _, _):
        try:
            ok = measure(args, brokers, stop, stats)
        finally:
            stop.set()
    print(f"\nbackground produce: {stats['acked']} acked, {stats['failed']} failed")
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
