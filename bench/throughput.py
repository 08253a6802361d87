#!/usr/bin/env python3
"""Produce and consume throughput of `tern serve` on the embedded default.

Starts the release binary on a fresh data directory, creates a topic, produces N records of
SIZE bytes with acks=all through librdkafka (confluent-kafka), then reads them all back with
assign(), and prints records/s and MB/s for both. With `--client tern` the load comes from
`tern perf produce` / `tern perf consume` (1 MiB batches, 5 ms linger and, as librdkafka
without idempotence, no practical in-flight limit) instead. Run after `swift build -c release`:

    python3 bench/throughput.py [--records 200000] [--size 1024] [--partitions 8] [--client confluent|tern]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BINARY = os.environ.get("TERN_BIN", os.path.join(ROOT, ".build", "release", "tern"))


def start_tern(data_dir, extra=()):
    port, mport = free_port(), free_port()
    binary = BINARY
    proc = subprocess.Popen([binary, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}",
                             "--advertise", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{mport}", *extra],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(data_dir, "broker.log"), "w"))
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}/readyz", timeout=1):
                return proc, f"127.0.0.1:{port}", mport
        except OSError:
            time.sleep(0.05)
    raise SystemExit("tern did not start")


def metric(mport, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics") as r:
        return sum(float(l.rsplit(" ", 1)[1]) for l in r.read().decode().splitlines() if l.startswith(name))


def produce(bootstrap, topic, records, size, partitions):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
                  "queue.buffering.max.kbytes": 1 << 20, "queue.buffering.max.messages": 1_000_000,
                  "compression.type": "none"})
    payload = os.urandom(size)
    failures = []

    def report(err, _msg):
        if err:
            failures.append(err)

    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                p.produce(topic, payload, key=str(i).encode(), partition=i % partitions, on_delivery=report)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(120)
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} produce failures, first: {failures[0]}")
    return elapsed


def consume(bootstrap, topic, records, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 8 << 20})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = 0
    start = time.perf_counter()
    while got < records:
        for m in c.consume(10000, timeout=5):
            if m.error():
                raise SystemExit(f"consume error: {m.error()}")
            got += 1
        if time.perf_counter() - start > 300:
            raise SystemExit(f"consumed only {got} of {records}")
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed


def tern_perf(bootstrap, *args):
    """Runs `tern perf ARGS --json` and returns its summary."""
    p = subprocess.run([BINARY, "perf", *args, "--bootstrap-server", bootstrap, "--json"],
                       capture_output=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"tern perf {args[0]} failed: {p.stderr.decode()[-2000:]}")
    return json.loads(p.stdout)


def tern_produce(bootstrap, topic, records, size, partitions):
    s = tern_perf(bootstrap, "produce", "--topic", topic, "--num-records", str(records), "--record-size", str(size),
                  "--acks", "-1", "--batch-bytes", str(1 << 20), "--linger-ms", "5", "--max-request-bytes", str(64 << 20),
                  "--max-in-flight", "1000")
    return s["seconds"]


def tern_consume(bootstrap, topic, records, partitions):
    return tern_perf(bootstrap, "consume", "--topic", topic, "--num-records", str(records),
                     "--partition-max-bytes", str(8 << 20))["seconds"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--client", choices=["confluent", "tern"], default="confluent",
                    help="load generator: librdkafka (confluent-kafka) or `tern perf`")
    args = ap.parse_args()
    run_produce, run_consume = (tern_produce, tern_consume) if args.client == "tern" else (produce, consume)
    data_dir = tempfile.mkdtemp(prefix="tern-bench-")
    proc, bootstrap, mport = start_tern(data_dir)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("bench", args.partitions, 1)])["bench"].result()
        p = run_produce(bootstrap, "bench", args.records, args.size, args.partitions)
        puts = metric(mport, 'tern_object_store_requests_total{type="PUT"}')
        c = run_consume(bootstrap, "bench", args.records, args.partitions)
        mb = args.records * args.size / 1e6
        result = {
            "broker": "tern (embedded default: local directory bucket, SQLite)",
            "client": "tern perf" if args.client == "tern" else "confluent-kafka (librdkafka)",
            "records": args.records, "record_bytes": args.size, "partitions": args.partitions, "acks": "all",
            "produce_records_per_s": round(args.records / p), "produce_MB_per_s": round(mb / p, 1),
            "consume_records_per_s": round(args.records / c), "consume_MB_per_s": round(mb / c, 1),
            "object_puts": int(puts), "object_puts_per_GB": round(puts / (mb / 1000), 1),
        }
        print(f"produce: {result['produce_records_per_s']} records/s, {result['produce_MB_per_s']} MB/s "
              f"({args.records} x {args.size} B, acks=all, {args.partitions} partitions)")
        print(f"consume: {result['consume_records_per_s']} records/s, {result['consume_MB_per_s']} MB/s")
        print(f"object PUTs: {result['object_puts']} ({result['object_puts_per_GB']} per GB)")
        print(json.dumps(result))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
