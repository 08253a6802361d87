#!/usr/bin/env python3
"""Transactional produce throughput on `tern serve`, as a ratio to non-transactional
(idempotent) produce in the same run.

Starts the release binary on a fresh data directory, then with confluent-kafka writes the same
number of records twice to one partition: once with an idempotent producer (acks=all), once
with a transactional producer committing every `--per-txn` records (100 by default, as issue 8
asks). Each transaction costs AddPartitionsToTxn, EndTxn and a marker write that waits for a
WAL flush, so the ratio mostly measures `wal.upload.interval.ms` against the records per
transaction. Run after `swift build -c release`:

    python3 bench/transactions.py [--records 20000] [--per-txn 100] [--size 100] [--rounds 3]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import start_tern  # noqa: E402


def plain(bootstrap, topic, records, payload):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    start = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                p.produce(topic, payload, partition=0)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)
    return records / (time.perf_counter() - start)


def transactional(bootstrap, topic, records, payload, per_txn, tid):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, "linger.ms": 5})
    p.init_transactions(30)
    start = time.perf_counter()
    sent = 0
    while sent < records:
        p.begin_transaction()
        for _ in range(min(per_txn, records - sent)):
            p.produce(topic, payload, partition=0)
            sent += 1
        p.commit_transaction(60)
    return records / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--per-txn", type=int, default=100)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="tern-bench-txn-")
    proc, bootstrap, _ = start_tern(data)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic("bench-plain", 1, 1), NewTopic("bench-txn", 1, 1)]).values():
            f.result(30)
        time.sleep(0.5)
        payload = os.urandom(a.size)
        ratios = []
        for r in range(a.rounds):
            base = plain(bootstrap, "bench-plain", a.records, payload)
            txn = transactional(bootstrap, "bench-txn", a.records, payload, a.per_txn, f"bench-{r}")
            ratios.append(txn / base)
            print(f"round {r + 1}: non-transactional {base:,.0f} rec/s, transactional ({a.per_txn}/txn) {txn:,.0f} rec/s, ratio {txn / base:.3f}")
        print(f"median ratio transactional/non-transactional: {statistics.median(ratios):.3f}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
