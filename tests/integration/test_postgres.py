"""`tern serve --metadata postgres://…`: the metadata store in a real PostgreSQL (started by
pg_server.py from the system's binaries), driven end to end with confluent-kafka.

Each test gets a database of its own on one server for the module. Every test also checks
that the broker really used PostgreSQL (rows in its tables, no SQLite file written), so none
can pass on the embedded default.
"""
import os
import re
import subprocess
import tempfile
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import pg_server
from conftest import TERN, free_port

pytestmark = pytest.mark.skipif(not pg_server.available(),
                                reason="PostgreSQL binaries not found (tools/install-deps.sh installs Debian's postgresql)")


@pytest.fixture(scope="module")
def pg():
    server = pg_server.PostgresServer().start()
    yield server
    server.stop()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def pg_broker(make_broker, url, node_id=1, objects=None, **settings):
    args = ["--metadata", url, "--node-id", str(node_id)]
    if objects:
        args += ["--object-store", f"file://{objects}"]
    return make_broker(settings=settings or None, extra_args=args)


def create_topics(broker, partitions, *names):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in a.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        f.result(15)


def produce(broker, topic, values, partitions, idempotent=True):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5, "enable.idempotence": idempotent})
    for i, v in enumerate(values):
        p.produce(topic, value=v.encode(), partition=i % partitions)
    assert p.flush(30) == 0


def consume(broker, topic, group, count, commit=False, timeout=30):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m.value().decode())
    if commit:
        c.commit(asynchronous=False)
    c.close()
    return got


def read_partition(broker, topic, count, timeout=20):
    """Reads partition 0 from the beginning without a group (no coordinator, no offsets)."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    return got


def committed(broker, group, topic, partitions):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)}
    finally:
        c.close()


def latest_migration():
    """The highest `Migration(version: N` in the schema source, so the test follows new migrations."""
    schema = os.path.join(os.path.dirname(__file__), "..", "..", "Sources", "Metadata", "MetadataSchema.swift")
    versions = [int(v) for v in re.findall(r"Migration\(version: (\d+)", open(schema).read())]
    assert versions, "no migrations found in MetadataSchema.swift"
    return max(versions)


def test_topics_records_and_group_offsets_survive_a_restart(pg, make_broker):
    url = pg.create_database()
    db = url.rsplit("/", 1)[1]
    broker = pg_broker(make_broker, url)
    topic = unique("pg")
    create_topics(broker, 3, topic)
    values = [f"v{i}" for i in range(30)]
    produce(broker, topic, values, 3)
    assert sorted(consume(broker, topic, "g1", 30, commit=True)) == sorted(values)
    assert committed(broker, "g1", topic, 3) == {0: 10, 1: 10, 2: 10}

    # It is all in PostgreSQL, and nothing went to the embedded default.
    assert not os.path.exists(os.path.join(broker.data_dir, "metadata.sqlite"))
    assert pg.sql(f"SELECT partitions FROM topics WHERE name = '{topic}'", db) == [["3"]]
    assert pg.sql(f"SELECT partition, committed_offset FROM group_offsets WHERE group_id = 'g1' ORDER BY partition", db) == \
        [["0", "10"], ["1", "10"], ["2", "10"]]
    # Every migration of MetadataSchema.swift applied.
    assert pg.sql("SELECT max(version) FROM schema_migrations", db) == [[str(latest_migration())]]
    assert pg.sql("SELECT node_id, broker_epoch FROM brokers", db) == [["1", "1"]]

    broker.restart()
    assert pg.sql("SELECT node_id, broker_epoch FROM brokers", db) == [["1", "2"]], "a new broker epoch per start"
    assert committed(broker, "g1", topic, 3) == {0: 10, 1: 10, 2: 10}
    assert sorted(consume(broker, topic, "g2", 30)) == sorted(values), "every record read back after the restart"
    more = [f"w{i}" for i in range(6)]
    produce(broker, topic, more, 3)
    # g1 resumes where it committed: only the new records.
    assert sorted(consume(broker, topic, "g1", 6, commit=True)) == sorted(more)
    assert committed(broker, "g1", topic, 3) == {0: 12, 1: 12, 2: 12}


def test_two_brokers_on_one_database_and_bucket_see_the_same_topics(pg, make_broker):
    url = pg.create_database()
    db = url.rsplit("/", 1)[1]
    objects = tempfile.mkdtemp(prefix="tern-shared-objects-")
    first = pg_broker(make_broker, url, node_id=1, objects=objects)
    a, b = unique("a"), unique("b")
    create_topics(first, 2, a)
    create_topics(first, 1, b)
    values = [f"x{i}" for i in range(10)]
    produce(first, a, values, 2)
    # The objects' metadata is committed right after the acks; wait for it.
    deadline = time.time() + 10
    while time.time() < deadline and pg.sql("SELECT COALESCE(SUM(end_offset), 0) FROM streams", db) != [["10"]]:
        time.sleep(0.1)

    second = pg_broker(make_broker, url, node_id=2, objects=objects)
    seen = []
    for br in (first, second):
        md = AdminClient({"bootstrap.servers": br.bootstrap}).list_topics(timeout=10)
        seen.append((md.cluster_id, {n: len(t.partitions) for n, t in md.topics.items() if n in (a, b)}))
    assert seen[0] == seen[1], "both brokers report one cluster with the same topics"
    assert seen[0][1] == {a: 2, b: 1}
    assert pg.sql("SELECT node_id, broker_epoch FROM brokers ORDER BY node_id", db) == [["1", "1"], ["2", "1"]]
    # The second broker serves what the first one wrote: same bucket, same metadata.
    assert sorted(consume(second, a, "g", 10)) == sorted(values)
    assert not os.path.exists(os.path.join(first.data_dir, "metadata.sqlite"))
    assert not os.path.exists(os.path.join(second.data_dir, "metadata.sqlite"))


def test_produce_is_acked_through_a_database_outage_and_committed_after_it(make_broker):
    # A server of its own: this test stops it.
    server = pg_server.PostgresServer().start()
    try:
        url = server.create_database()
        db = url.rsplit("/", 1)[1]
        broker = pg_broker(make_broker, url)
        topic = unique("outage")
        create_topics(broker, 1, topic)
        produce(broker, topic, ["before"], 1)
        server.halt()
        # Acks wait for the object write only; the metadata commit waits for the database.
        # (Not idempotent: InitProducerId allocates the id in the database, so an idempotent
        # producer cannot start during an outage yet.)
        produce(broker, topic, ["during-1", "during-2"], 1, idempotent=False)
        # Read back without a group (group offsets live in the database too).
        assert read_partition(broker, topic, 3) == ["before", "during-1", "during-2"]
        server.resume()
        deadline = time.time() + 30
        while time.time() < deadline and server.sql("SELECT end_offset FROM streams", db) != [["3"]]:
            time.sleep(0.2)
        assert server.sql("SELECT end_offset FROM streams", db) == [["3"]], \
            "the commits queued during the outage landed; broker log tail:\n" + broker.log()[-3000:]
        broker.restart()
        assert consume(broker, topic, "g-after", 3) == ["before", "during-1", "during-2"]
    finally:
        server.stop()


def run_serve(metadata, timeout=60):
    d = tempfile.mkdtemp(prefix="tern-pg-bad-")
    start = time.time()
    r = subprocess.run([TERN, "serve", "--data-dir", d, "--listen", f"127.0.0.1:{free_port()}",
                        "--metrics-listen", f"127.0.0.1:{free_port()}", "--metadata", metadata],
                       capture_output=True, text=True, timeout=timeout)
    return r, time.time() - start


def error_lines(r):
    return [l for l in r.stderr.splitlines() if l.startswith("Error:")]


def test_unreachable_database_is_one_clear_error(pg):
    port = free_port()  # nothing listens there
    r, took = run_serve(pg.url(port=port))
    assert r.returncode != 0
    lines = error_lines(r)
    assert len(lines) == 1, r.stderr
    assert "metadata" in lines[0] and f"127.0.0.1:{port}" in lines[0] and "refused" in lines[0].lower(), lines[0]
    assert pg_server.PASSWORD not in r.stderr, "the password is never printed"
    assert took < 30


def test_wrong_password_and_unknown_database_are_named(pg):
    r, _ = run_serve(pg.url(password="not-the-password"))
    assert r.returncode != 0
    lines = error_lines(r)
    assert len(lines) == 1 and "password authentication failed" in lines[0], r.stderr
    assert "not-the-password" not in r.stderr

    r, _ = run_serve(pg.url(database="no_such_db"))
    assert r.returncode != 0
    lines = error_lines(r)
    assert len(lines) == 1 and 'database "no_such_db" does not exist' in lines[0], r.stderr


@pytest.mark.parametrize("url", ["postgres://127.0.0.1:5432/db", "postgres://u:p@127.0.0.1:5432/", "mysql://u:p@h/db"])
def test_malformed_metadata_urls_are_refused_by_name(url):
    r, _ = run_serve(url, timeout=15)
    assert r.returncode != 0
    assert "metadata" in r.stderr, r.stderr
    assert ":p@" not in r.stderr, "the password is never printed"
