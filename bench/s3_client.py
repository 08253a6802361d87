#!/usr/bin/env python3
"""The Swift S3 client's PUT and GET throughput next to boto3's, on the same SeaweedFS.

Starts SeaweedFS (tests/integration/s3_servers.py), then for objects of 1, 8 and 32 MiB,
sequentially and 4-way parallel, PUT then GET: the Swift client (`s3-check bench-serve`, the
store's own code, one process and store for the whole run, as boto3 keeps its client) and
boto3 (`put_object` / `get_object`, no multipart) take turns, five rounds each, in one run.
Prints MB/s of each and the median ratio Swift/boto3; exits 1 when a median ratio is below
--min-ratio (default 0.95). Run after
`swift build -c release --product s3-check`:

    python3 bench/s3_client.py [--rounds 5] [--min-ratio 0.95]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from s3_servers import ACCESS_KEY, SECRET_KEY, SeaweedFS  # noqa: E402

S3_CHECK = os.environ.get("S3_CHECK_BIN", os.path.join(ROOT, ".build", "release", "s3-check"))
MiB = 1 << 20


class SwiftClient:
    """One `s3-check bench-serve` process for the whole run: its store (connection pool, body
    memory) lives as long as boto3's client does, so neither side pays a cold start in the
    timed part. Each run is one stdin line; it answers with the seconds its requests took."""

    def __init__(self, server, bucket):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   S3_ENDPOINT=server.endpoint, S3_BUCKET=bucket)
        self.proc = subprocess.Popen([S3_CHECK, "bench-serve"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, op, size, count, concurrency):
        self.proc.stdin.write(f"{op} {size} {count} {concurrency}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"s3-check bench-serve exited with {self.proc.wait()}")
        r = json.loads(line)
        return r["bytes"] / r["seconds"] / 1e6

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(60)


def boto_client(server, concurrency):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=max(10, concurrency),
                                      retries={"max_attempts": 3}))


def boto_run(client, bucket, op, size, count, concurrency, body):
    def one(i):
        key = f"bench/{size}/{i}"
        if op == "put":
            client.put_object(Bucket=bucket, Key=key, Body=body)
            return size
        return len(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    # Warm the pool as the Swift side does: one connection per concurrent request.
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(lambda i: client.list_objects_v2(Bucket=bucket, Prefix=f"bench/warm/{i}", MaxKeys=1), range(concurrency)))
    start = time.perf_counter()
    if concurrency == 1:
        total = sum(one(i) for i in range(count))
    else:
        with ThreadPoolExecutor(concurrency) as ex:
            total = sum(ex.map(one, range(count)))
    elapsed = time.perf_counter() - start
    assert total == size * count
    return total / elapsed / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="1,8,32", help="object sizes in MiB")
    ap.add_argument("--bytes-per-run", type=int, default=256, help="MiB moved by one client in one run")
    ap.add_argument("--min-ratio", type=float, default=0.95)
    args = ap.parse_args()
    if not os.path.exists(S3_CHECK):
        sys.exit(f"{S3_CHECK} missing: swift build -c release --product s3-check")
    server = SeaweedFS().start()
    failed = []
    swift_client = None
    try:
        bucket = server.create_bucket("bench")
        swift_client = SwiftClient(server, bucket)
        print(f"SeaweedFS at {server.endpoint}; {args.rounds} rounds, Swift and boto3 alternating\n")
        print(f"{'op':4} {'size':>6} {'conc':>4} {'swift MB/s':>11} {'boto3 MB/s':>11} {'ratio':>6}  (medians)")
        for size_mib in [int(s) for s in args.sizes.split(",")]:
            size = size_mib * MiB
            body = bytes((i * 31 + 7) & 0xFF for i in range(size))
            for concurrency in (1, 4):
                count = max(concurrency, args.bytes_per_run // size_mib)
                client = boto_client(server, concurrency)
                for op in ("put", "get"):
                    swift, boto, ratios = [], [], []
                    for r in range(args.rounds):
                        # alternate who goes first, so neither always meets a warmer server
                        order = ("swift", "boto") if r % 2 == 0 else ("boto", "swift")
                        got = {}
                        for who in order:
                            if who == "swift":
                                got[who] = swift_client.run(op, size, count, concurrency)
                            else:
                                got[who] = boto_run(client, bucket, op, size, count, concurrency, body)
                        swift.append(got["swift"])
                        boto.append(got["boto"])
                        ratios.append(got["swift"] / got["boto"])
                    ratio = statistics.median(ratios)
                    mark = "" if ratio >= args.min_ratio else "  < min"
                    print(f"{op.upper():4} {size_mib:>4}Mi {concurrency:>4} {statistics.median(swift):>11.1f} "
                          f"{statistics.median(boto):>11.1f} {ratio:>6.2f}{mark}", flush=True)
                    if ratio < args.min_ratio:
                        failed.append((op, size_mib, concurrency, ratio))
    finally:
        if swift_client:
            swift_client.close()
        server.stop()
    if failed:
        print(f"\nmedian ratio below {args.min_ratio}: {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
