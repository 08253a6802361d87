#!/usr/bin/env python3
"""RSS growth of `tern serve` holding 10,000 idle Kafka client connections (issue 6: < 200 MiB).

Starts `tern serve` on the embedded default (fresh data directory), reads its VmRSS, then opens
--connections TCP connections, each of which sends an ApiVersions v0 request and reads the
answer (so each is a connection the broker has served, not a bare TCP accept), and keeps them
all open and idle. After --settle seconds it reads VmRSS again and prints the growth, per
connection too. RLIMIT_NOFILE is raised to its hard limit here and in the broker (inherited).
Exits 1 when the growth is --max-mib (200) or more, or when a connection fails. Run after
`swift build -c release --product tern`:

    python3 bench/idle_connections.py [--connections 10000] [--max-mib 200]
"""
import argparse
import os
import resource
import shutil
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import Tern, proc_status_kib  # noqa: E402


def api_versions_request(correlation_id):
    client_id = b"idle-bench"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def read_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed by the broker")
        buf += chunk
    return bytes(buf)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--max-mib", type=float, default=200)
    ap.add_argument("--settle", type=float, default=3)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.connections + 200:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is below {args.connections + 200}: raise it (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    broker = Tern("idle", tempfile.gettempdir()).start()
    pid = broker.proc.pid
    socks = []
    try:
        # one served connection first, so that what every connection shares is in the baseline
        s = socket.create_connection(("127.0.0.1", broker.port))
        s.sendall(api_versions_request(0))
        size, = struct.unpack(">i", read_exact(s, 4))
        read_exact(s, size)
        s.close()
        time.sleep(1)
        base = proc_status_kib(pid, "VmRSS")
        start = time.monotonic()
        for i in range(args.connections):
            s = socket.create_connection(("127.0.0.1", broker.port), timeout=30)
            s.sendall(api_versions_request(i + 1))
            size, = struct.unpack(">i", read_exact(s, 4))
            answer = read_exact(s, size)
            corr, error = struct.unpack(">ih", answer[:6])
            if corr != i + 1 or error != 0:
                raise RuntimeError(f"connection {i}: correlation id {corr}, error code {error}")
            socks.append(s)
        opened = time.monotonic() - start
        time.sleep(args.settle)
        if broker.proc.poll() is not None:
            raise RuntimeError(f"broker exited with {broker.proc.returncode}")
        now = proc_status_kib(pid, "VmRSS")
        # all still open? a broker closing idle connections would make this a different test
        alive = 0
        for s in socks:
            s.setblocking(False)
            try:
                alive += s.recv(1) != b""
            except BlockingIOError:
                alive += 1
        growth = (now - base) / 1024
        print(f"{args.connections} idle connections (ApiVersions answered on each) opened in {opened:.1f} s; "
              f"{alive} still open after {args.settle:g} s")
        print(f"tern RSS {base / 1024:.1f} MiB before, {now / 1024:.1f} MiB after: growth {growth:.1f} MiB "
              f"({(now - base) / args.connections:.1f} KiB per connection); target < {args.max_mib:g} MiB: "
              f"{'PASS' if growth < args.max_mib and alive == args.connections else 'FAIL'}")
        ok = growth < args.max_mib and alive == args.connections
    finally:
        for s in socks:
            s.close()
        broker.stop()
        shutil.rmtree(broker.dir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
