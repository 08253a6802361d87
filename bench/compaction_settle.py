#!/usr/bin/env python3
"""Objects and metadata rows after producing `--gb` GB across `--partitions` partitions and
letting compaction settle (issue 5: at most partitions + 20 objects in the bucket, and
metadata rows at most 3 x objects + partitions).

Runs `tern serve` on the embedded default (local directory bucket, SQLite), produces with
`tern perf produce` (1 KiB records, keyed at random so that every partition gets data),
then lets compaction and collection run until neither the object count nor the metadata
rows change for `--quiet` seconds, and counts the bucket's objects and the metadata store's
rows (`stream_ranges`, `objects`, `streams`), and the broker's peak RSS against its memory
bound (log.cache.bytes + block.cache.bytes + 256 MiB). Compaction is given a generous
bandwidth, and its final gather (`compaction.gather.quiet.ms`) 10 s instead of 5 min of
quiet, so that it settles within the run; the object and row counts do not depend on either.

    python3 bench/compaction_settle.py [--gb 5] [--partitions 1000] [--quiet 30]
"""
import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import DEFAULTS, Sampler, rss_kib  # noqa: E402
from throughput import BINARY, start_tern  # noqa: E402


def bucket_objects(data_dir):
    n = 0
    for root, _, files in os.walk(os.path.join(data_dir, "objects")):
        if "/meta/" in root + "/":
            continue
        n += sum(1 for f in files if not f.startswith(".") and f != "file-wal")
    return n


def rows(data_dir):
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'metadata.sqlite')}?mode=ro", uri=True, timeout=30)
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ["stream_ranges", "objects", "streams", "stream_epochs", "producer_states"]}
    finally:
        db.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gb", type=float, default=5)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--quiet", type=float, default=30, help="seconds without a change in objects or rows that count as settled")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tern-settle-")
    settings = ["compaction.interval.ms=1000", "compaction.max.bytes.per.sec=1073741824",
                "compaction.gather.quiet.ms=10000", "object.gc.grace.ms=0", "object.gc.interval.ms=1000"]
    extra = [a for s in settings for a in ("--set", s)]
    proc, bootstrap, _ = start_tern(work, extra)
    sampler = Sampler(proc.pid)
    sampler.start()
    try:
        sampler.phase = "produce"
        records = int(args.gb * 1e9 / 1024)
        start = time.monotonic()
        r = subprocess.run([BINARY, "perf", "produce", "--bootstrap-server", bootstrap, "--topic", "settle",
                            "--partitions", str(args.partitions), "--num-records", str(records), "--record-size", "1024",
                            "--keys", "random", "--key-count", str(args.partitions * 10), "--batch-bytes", "65536",
                            "--max-request-bytes", "4194304", "--producers", "2", "--interval", "30"],
                           capture_output=True, text=True, timeout=args.timeout)
        if r.returncode != 0:
            raise SystemExit(f"tern perf produce failed: {r.stderr[-2000:]}")
        print(f"produced {records} records ({args.gb} GB) to {args.partitions} partitions in {time.monotonic() - start:.0f}s;"
              f" {bucket_objects(work)} objects right after")
        sampler.phase = "compaction"

        def state():
            c = rows(work)
            return bucket_objects(work), c["stream_ranges"] + c["objects"]
        last, since, deadline = state(), time.monotonic(), time.monotonic() + args.timeout
        while time.monotonic() - since < args.quiet and time.monotonic() < deadline:
            time.sleep(2)
            now = state()
            if now != last:
                last, since = now, time.monotonic()
        objects = bucket_objects(work)
        counts = rows(work)
        metadata_rows = counts["stream_ranges"] + counts["objects"]
        print(f"settled after {time.monotonic() - start:.0f}s")
        print(f"objects in the bucket: {objects} (target <= partitions + 20 = {args.partitions + 20}):"
              f" {'PASS' if objects <= args.partitions + 20 else 'FAIL'}")
        print(f"metadata rows (stream_ranges + objects): {metadata_rows} = {counts['stream_ranges']} + {counts['objects']}"
              f" (target <= 3 x objects + partitions = {3 * objects + args.partitions}):"
              f" {'PASS' if metadata_rows <= 3 * objects + args.partitions else 'FAIL'}")
        print(f"other rows: {counts}")
        bound = (DEFAULTS["log.cache.bytes"] + DEFAULTS["block.cache.bytes"]) / 2**20 + 256
        hwm = rss_kib(proc.pid, "VmHWM") / 1024
        peaks = ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in sampler.peaks.items())
        print(f"peak RSS (VmHWM) of the broker: {hwm:.0f} MiB ({peaks}; target <= log.cache.bytes + block.cache.bytes"
              f" + 256 MiB = {bound:.0f} MiB): {'PASS' if hwm <= bound else 'FAIL'}")
    finally:
        sampler.stop.set()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept", work)


if __name__ == "__main__":
    main()
