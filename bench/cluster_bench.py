"""A three-broker Tern cluster on SeaweedFS and PostgreSQL for the cluster benchmarks."""
import contextlib
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("TERN_BIN", os.path.join(ROOT, ".build", "release", "tern"))

import pg_server  # noqa: E402
from conftest import Broker  # noqa: E402
from s3_servers import SeaweedFS  # noqa: E402


@contextlib.contextmanager
def cluster(name, settings=None, nodes=(1, 2, 3)):
    """Starts SeaweedFS, PostgreSQL (the system's binaries) and one `tern serve` per node on a
    fresh bucket and database; yields (brokers by node id, the PostgreSQL server, the database
    name); kills and stops everything on the way out."""
    s3 = SeaweedFS().start()
    pg = pg_server.PostgresServer().start()
    for k, v in s3.env().items():
        os.environ[k] = v
    brokers = {}
    try:
        bucket = s3.create_bucket(name)
        url = pg.create_database()
        for node in nodes:
            brokers[node] = Broker(tempfile.mkdtemp(prefix=f"tern-{name}-"), settings or {},
                                   ["--node-id", str(node), "--metadata", url, "--object-store", f"s3://{bucket}/c",
                                    "--s3-endpoint", s3.endpoint, "--s3-path-style"]).start()
        yield brokers, pg, url.rsplit("/", 1)[1]
    finally:
        for b in brokers.values():
            b.kill()
        pg.stop()
        s3.stop()
