#!/usr/bin/env python3
"""Peak RSS of `tern serve` against its memory budget (issue 5): log.cache.bytes +
block.cache.bytes + 256 MiB.

Starts the release binary on the embedded default (fresh data directory) and samples the
broker's VmRSS every 50 ms (and VmHWM at the end) through three phases:

  produce   `tern perf produce` unthrottled: 1 KiB records, acks=all, 16 partitions,
            4 producers, 256 KiB batches, 4 MiB requests (bench/peers' load);
  catch-up  `tern perf consume` from the beginning (block cache, readahead) while a
            second `tern perf produce` runs at a fixed rate;
  settle    idle, while compaction rewrites what was produced.

Prints each phase's peak next to the bound, PASS/FAIL, exit status 1 on FAIL. Extra broker
settings go through --set (e.g. --set log.cache.bytes=67108864); the bound follows them.

    python3 bench/memory.py [--seconds 30] [--set KEY=VALUE ...]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import BINARY, start_tern  # noqa: E402

MiB = 1 << 20
DEFAULTS = {"log.cache.bytes": 256 * MiB, "block.cache.bytes": 256 * MiB}


def rss_kib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """Peak VmRSS per phase, sampled every 50 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.phase, self.peaks, self.stop = pid, None, {}, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                kib = rss_kib(self.pid)
            except OSError:
                return
            if self.phase:
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), kib)
            time.sleep(0.05)


def perf(*args):
    return subprocess.Popen([BINARY, "perf", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def last_line(proc):
    out = proc.communicate()[0].strip().splitlines()
    if proc.returncode != 0:
        raise SystemExit("tern perf failed:\n" + "\n".join(out[-5:]))
    return out[-1] if out else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=30, help="length of the produce and catch-up phases")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a broker setting")
    args = ap.parse_args()
    settings = dict(DEFAULTS)
    for kv in args.set:
        k, v = kv.split("=", 1)
        if k in settings:
            settings[k] = int(v)
    bound_kib = (settings["log.cache.bytes"] + settings["block.cache.bytes"] + 256 * MiB) // 1024

    work = tempfile.mkdtemp(prefix="tern-memory-")
    proc, bootstrap, _ = start_tern(work, extra=[a for kv in args.set for a in ("--set", kv)])
    sampler = Sampler(proc.pid)
    sampler.start()
    load = ["--bootstrap-server", bootstrap, "--topic", "mem", "--partitions", "16", "--acks", "-1",
            "--producers", "4", "--batch-bytes", "262144", "--linger-ms", "5", "--max-in-flight", "5",
            "--max-request-bytes", "4194304"]
    try:
        sampler.phase = "produce"
        produced = last_line(perf("produce", *load, "--duration", str(args.seconds)))
        print(f"produce:  {produced}")

        sampler.phase = "catch-up"
        writer = perf("produce", *load, "--duration", str(args.seconds), "--throughput", "50000")
        reader = perf("consume", "--bootstrap-server", bootstrap, "--topic", "mem", "--from-beginning",
                      "--duration", str(args.seconds))
        print(f"catch-up: read  {last_line(reader)}")
        print(f"catch-up: write {last_line(writer)}")

        sampler.phase = "settle"
        time.sleep(40)  # past one compaction interval (30 s)
        hwm = rss_kib(proc.pid, "VmHWM")
    finally:
        sampler.stop.set()
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nbound: log.cache.bytes {settings['log.cache.bytes'] // MiB} MiB + block.cache.bytes "
          f"{settings['block.cache.bytes'] // MiB} MiB + 256 MiB = {bound_kib // 1024} MiB")
    if max(sampler.peaks.values(), default=0) < 64 * 1024:
        raise SystemExit("the broker's RSS was not sampled (is TERN_BIN a wrapper process?)")
    failed = False
    for phase in ("produce", "catch-up", "settle"):
        peak = sampler.peaks.get(phase, 0)
        ok = peak <= bound_kib
        failed |= not ok
        print(f"  {'PASS' if ok else 'FAIL'}  peak RSS during {phase:8s} {peak / 1024:7.1f} MiB")
    ok = hwm <= bound_kib
    failed |= not ok
    print(f"  {'PASS' if ok else 'FAIL'}  VmHWM at the end         {hwm / 1024:7.1f} MiB")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
