#!/usr/bin/env python3
"""Produce latency with the file WAL (`--wal file://DIR`) on local disk, against the S3 WAL
(one object per flush) of the same broker build on the same disk.

For each WAL mode the script starts `tern serve` on a fresh data directory, finds the mode's
maximum produce throughput with `tern perf produce` (1 KiB records, acks=all, 16 partitions),
then produces at 50% of that rate (on a fresh broker) and prints produce latency
p50/p99/p99.9. The issue's
target: file WAL produce p99 under 10 ms at 50% of max throughput. Run after
`swift build -c release`:

    python3 bench/file_wal.py [--seconds 20] [--dir DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import BINARY, start_tern  # noqa: E402

RECORD_SIZE = 1024
PARTITIONS = 16
TARGET_P99_MS = 10.0
FLAGS = ["--record-size", str(RECORD_SIZE), "--partitions", str(PARTITIONS), "--acks", "-1",
         "--producers", "4", "--batch-bytes", "262144", "--linger-ms", "1",
         "--max-in-flight", "5", "--max-request-bytes", "4194304"]


def perf(bootstrap, topic, seconds, rate=None):
    args = [BINARY, "perf", "produce", "--bootstrap-server", bootstrap, "--topic", topic,
            "--duration", str(seconds), "--json", "--interval", "5"] + FLAGS
    if rate:
        args += ["--throughput", str(int(rate))]
    r = subprocess.run(args, capture_output=True, text=True, timeout=seconds * 4 + 120)
    if r.returncode != 0:
        raise SystemExit(f"tern perf produce exited {r.returncode}: {r.stderr[-1500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def phase(mode, base, seconds, rate=None):
    """One `tern perf produce` run against a broker on a fresh data directory."""
    data = tempfile.mkdtemp(prefix=f"tern-{mode}-", dir=base)
    extra = ["--wal", f"file://{data}/wal"] if mode == "file" else []
    proc, bootstrap, _ = start_tern(data, extra)
    try:
        return perf(bootstrap, "t", seconds, rate=rate)
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(data, ignore_errors=True)


def run(mode, base, seconds):
    """Max throughput, then 50% of it on a fresh broker: a broker that has just taken a
    minute of full load is still compacting that backlog, which is not the steady state
    that a 50% load makes."""
    full = phase(mode, base, seconds)
    return full, phase(mode, base, seconds, rate=full["records_per_sec"] * 0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--dir", default=None, help="where the data directories go (a local disk; default: the temp dir)")
    a = ap.parse_args()
    rows = {}
    for mode in ("file", "object"):
        full, half = run(mode, a.dir, a.seconds)
        rows[mode] = (full, half)
        lat = half["latency_ms"]
        print(f"{mode:>6} WAL: max {full['mb_per_sec']:.1f} MB/s (p99 {full['latency_ms']['p99']:.1f} ms); "
              f"at 50% ({half['mb_per_sec']:.1f} MB/s): p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
              f"p99.9 {lat['p999']:.2f} ms", flush=True)
    p99 = rows["file"][1]["latency_ms"]["p99"]
    print(f"\nfile WAL p99 at 50% of max: {p99:.2f} ms (target < {TARGET_P99_MS:.0f} ms): "
          f"{'PASS' if p99 < TARGET_P99_MS else 'FAIL'}")
    print(f"file WAL / S3 WAL p99 at 50%: {p99 / rows['object'][1]['latency_ms']['p99']:.3f}x; "
          f"max throughput {rows['file'][0]['mb_per_sec'] / rows['object'][0]['mb_per_sec']:.2f}x")
    if p99 >= TARGET_P99_MS:
        sys.exit(1)


if __name__ == "__main__":
    main()
