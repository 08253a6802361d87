#!/usr/bin/env python3
"""Object PUTs per second at a fixed produce rate with 1, 100 and 1000 partitions.

The S3 WAL writes one object per flush, whatever the partition count, so the PUT rate (the
S3 bill) must stay flat as partitions grow. Starts SeaweedFS and `tern serve` on it, then
for each partition count produces --rate records/s of --size bytes round-robin over the
partitions for --seconds, and reads the broker's PUT counter before and after. Prints PUTs/s
per partition count and the ratio 1000/1 (must be at most 1.2; exits 1 otherwise). Run
after `swift build -c release --product tern`:

    python3 bench/s3_puts_per_partition.py [--rate 2000] [--size 512] [--seconds 20]
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("TERN_BIN", os.path.join(ROOT, ".build", "release", "tern"))
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from conftest import Broker  # noqa: E402
from s3_servers import SeaweedFS  # noqa: E402

PUTS = 'tern_object_store_requests_total{type="PUT"}'


def run(broker, partitions, rate, size, seconds):
    topic = f"p{partitions}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(60)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    value = b"x" * size
    # warm up: metadata for every partition, connections
    for i in range(partitions):
        p.produce(topic, value=value, partition=i)
    p.flush(60)
    before, start = broker.metric(PUTS), time.monotonic()
    sent = 0
    while (now := time.monotonic()) < start + seconds:
        due = int((now - start) * rate)
        while sent < due:
            try:
                p.produce(topic, value=value, partition=sent % partitions)
                sent += 1
            except BufferError:
                p.poll(0.01)
        p.poll(0.001)
    p.flush(60)
    elapsed = time.monotonic() - start
    puts = broker.metric(PUTS) - before
    return puts / elapsed, sent / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=int, default=2000, help="records per second")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--partitions", default="1,100,1000")
    args = ap.parse_args()
    server = SeaweedFS().start()
    for k, v in server.env().items():
        os.environ[k] = v
    broker = None
    try:
        bucket = server.create_bucket("puts-bench")
        broker = Broker(tempfile.mkdtemp(prefix="tern-bench-"), {"num.partitions": "1"},
                        ["--object-store", f"s3://{bucket}/bench", "--s3-endpoint", server.endpoint, "--s3-path-style"]).start()
        print(f"{args.rate} records/s of {args.size} bytes for {args.seconds:.0f}s each, "
              f"wal.upload.interval.ms=250 (the default)\n")
        print(f"{'partitions':>10} {'records/s':>10} {'PUTs/s':>8}")
        rates = {}
        for n in [int(x) for x in args.partitions.split(",")]:
            puts, records = run(broker, n, args.rate, args.size, args.seconds)
            rates[n] = puts
            print(f"{n:>10} {records:>10.0f} {puts:>8.2f}", flush=True)
    finally:
        if broker:
            broker.stop()
        server.stop()
    ns = sorted(rates)
    ratio = rates[ns[-1]] / rates[ns[0]]
    print(f"\nPUTs/s with {ns[-1]} partitions / with {ns[0]}: {ratio:.2f} (at most 1.2)")
    sys.exit(0 if ratio <= 1.2 else 1)


if __name__ == "__main__":
    main()
