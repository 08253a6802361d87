"""Three `tern serve` processes as one cluster: one PostgreSQL database, one bucket (a shared
local directory), real clients. Partitions are spread over the brokers; a broker killed with
kill -9 is failed over by the controller (its WAL fenced and recovered, its partitions opened
elsewhere at a new epoch) with no acked record lost; a broker paused past its lease cannot
ack again.
"""
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

import pg_server
from conftest import TERN
from kafka_wire import Conn, parse_produce_response, produce_request, record_batch

pytestmark = pytest.mark.skipif(not pg_server.available(),
                                reason="PostgreSQL binaries not found (tools/install-deps.sh installs Debian's postgresql)")

SESSION_MS = 3000
SETTINGS = {"broker.session.timeout.ms": SESSION_MS, "broker.heartbeat.interval.ms": 300, "cluster.poll.interval.ms": 100}


@pytest.fixture(scope="module")
def pg():
    server = pg_server.PostgresServer().start()
    yield server
    server.stop()


def start_cluster(pg, make_broker, n=3, settings=None):
    url = pg.create_database()
    objects = tempfile.mkdtemp(prefix="tern-cluster-objects-")
    brokers = []
    for node in range(1, n + 1):
        brokers.append(make_broker(settings={**SETTINGS, **(settings or {})},
                                   extra_args=["--metadata", url, "--node-id", str(node), "--object-store", f"file://{objects}"]))
    return brokers, url.rsplit("/", 1)[1]


def bootstrap(brokers):
    return ",".join(b.bootstrap for b in brokers if b.alive())


def leaders(brokers, topic):
    md = AdminClient({"bootstrap.servers": bootstrap(brokers)}).list_topics(topic, timeout=10)
    t = md.topics[topic]
    return {p.id: p.leader for p in t.partitions.values()}, sorted(md.brokers)


def wait_for_leaders(brokers, topic, partitions, ok=lambda l: True, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = leaders(brokers, topic)
            if len(last[0]) == partitions and all(l >= 0 and ok(l) for l in last[0].values()):
                return last
        except Exception as e:  # a broker going away mid-request
            last = e
        time.sleep(0.1)
    raise AssertionError(f"leaders not settled: {last}")


def create_topic(brokers, topic, partitions):
    a = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
    for f in a.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(15)


def read_all(brokers, topic, partitions, expect, timeout=60):
    c = Consumer({"bootstrap.servers": bootstrap(brokers), "group.id": f"read-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.time() + timeout
    while len(got) < expect and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append((m.partition(), m.offset(), m.value().decode()))
    # Anything beyond what was expected (duplicates) arrives within a little longer.
    end = time.time() + 1
    while time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append((m.partition(), m.offset(), m.value().decode()))
    c.close()
    return got


def assert_acked_read_once(brokers, topic, partitions, acked, errors):
    """No delivery errors, and every acked record is in the topic exactly once."""
    assert errors == [], f"delivery errors: {errors[:5]}"
    got = read_all(brokers, topic, partitions, len(acked))
    values = [v for _, _, v in got]
    assert len(values) == len(set(values)), "no record twice"
    missing = {v for _, v in acked} - set(values)
    assert not missing, f"{len(missing)} acked records lost, e.g. {sorted(missing)[:5]}"


def test_partitions_are_spread_and_a_non_owner_answers_not_leader(pg, make_broker):
    brokers, db = start_cluster(pg, make_broker)
    topic = f"spread-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 6)
    # Every broker learns the placement (within a few poll intervals) and gives the same answer.
    answers = [wait_for_leaders([b], topic, 6, timeout=10) for b in brokers]
    lead, nodes = answers[0]
    assert all(a == answers[0] for a in answers), answers
    assert nodes == [1, 2, 3], "metadata lists every live broker"
    per_node = {n: sorted(p for p, l in lead.items() if l == n) for n in nodes}
    assert all(len(v) == 2 for v in per_node.values()), f"6 partitions spread 2 per broker: {per_node}"

    # A produce sent to a broker that does not own the partition: NOT_LEADER_OR_FOLLOWER (6).
    partition = per_node[1][0]
    other = brokers[1]
    with Conn(other.port) as c:
        resp = parse_produce_response(c.request(0, 7, produce_request([(topic, [(partition, record_batch([b"x"]))])])), 7)
    assert resp[(topic, partition)]["error"] == 6
    with Conn(brokers[0].port) as c:
        resp = parse_produce_response(c.request(0, 7, produce_request([(topic, [(partition, record_batch([b"y"]))])])), 7)
    assert resp[(topic, partition)]["error"] == 0

    # Real clients follow the leaders: everything produced through one bootstrap is read back.
    p = Producer({"bootstrap.servers": brokers[2].bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    for i in range(600):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 6)
    assert p.flush(30) == 0
    got = read_all(brokers, topic, 6, 601)
    assert sorted(v for _, _, v in got if v.startswith("v")) == sorted(f"v{i}" for i in range(600))
    assert len(got) == 601
    assert pg.sql("SELECT COUNT(DISTINCT owner) FROM streams", db) == [["3"]]


def produce_until(brokers, topic, partitions, stop, acked, errors):
    """Produces idempotently until `stop` is set, recording every acked (partition, value)."""
    p = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 60000, "topic.metadata.refresh.interval.ms": 1000})

    def done(err, m):
        if err is None:
            acked.append((m.partition(), m.value().decode()))
        else:
            errors.append(str(err))

    i = 0
    while not stop.is_set():
        try:
            p.produce(topic, value=f"r{i}".encode(), partition=i % partitions, on_delivery=done)
            i += 1
        except BufferError:
            pass
        p.poll(0.002 if i % 20 == 0 else 0)
    p.flush(90)


def consume_group(bootstrap_servers, topic, group, stop, consumed, batch=50):
    """A consumer-group member committing synchronously after each batch it processed, until
    `stop` is set and nothing more arrives."""
    c = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                  "topic.metadata.refresh.interval.ms": 1000})
    c.subscribe([topic])
    idle = 0
    while idle < 20 or not stop.is_set():
        msgs = c.consume(batch, 0.5)
        good = [m for m in msgs if not m.error()]
        if not good:
            idle += 1
            continue
        idle = 0
        consumed.extend((m.partition(), m.offset(), m.value().decode()) for m in good)
        try:
            c.commit(asynchronous=False)
        except Exception:
            pass  # the coordinator moving: the batch may be delivered again (at least once)
    c.close()


def test_kill_9_of_a_broker_fails_it_over_without_losing_acked_records(pg, make_broker):
    brokers, db = start_cluster(pg, make_broker)
    topic = f"failover-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 6)
    before, _ = wait_for_leaders(brokers, topic, 6)
    victim = brokers[1]  # node 2
    assert 2 in before.values()

    stop, acked, errors = threading.Event(), [], []
    t = threading.Thread(target=produce_until, args=(brokers, topic, 6, stop, acked, errors))
    t.start()
    consumed, consuming = [], threading.Event()
    g = threading.Thread(target=consume_group, args=(bootstrap(brokers), topic, "failover-group", consuming, consumed))
    g.start()
    time.sleep(3)
    victim.kill()
    killed = time.time()
    after, nodes = wait_for_leaders(brokers, topic, 6, ok=lambda l: l != 2, timeout=SESSION_MS / 1000 + 20)
    served_again = time.time() - killed
    time.sleep(2)
    stop.set()
    t.join(120)
    assert not t.is_alive()
    consuming.set()
    g.join(120)
    assert not g.is_alive()
    # The group consumed every acked record while a broker died under it; a record seen twice
    # was re-delivered after its batch's commit failed (at most one batch per partition).
    seen = [v for _, _, v in consumed]
    assert not ({v for _, v in acked} - set(seen)), "the group missed acked records"
    assert len(seen) - len(set(seen)) <= 6 * 50

    assert served_again < SESSION_MS / 1000 + 5, f"partitions served again {served_again:.1f} s after the kill"
    assert nodes == [1, 3]
    assert set(after.values()) <= {1, 3}
    log = brokers[0].log() + brokers[2].log()
    assert "broker failed over" in log
    assert len(acked) > 200
    # Idempotence survives the failover: nothing twice.
    assert_acked_read_once(brokers, topic, 6, acked, errors)
    # The dead node's epoch is recorded as recovered; its partitions now have new epochs.
    assert pg.sql("SELECT recovered_epoch FROM brokers WHERE node_id = 2", db) == [["1"]]
    assert pg.sql("SELECT COUNT(*) FROM streams WHERE owner = 2", db) == [["0"]]


def test_a_broker_paused_past_its_lease_cannot_ack_after_it_resumes(pg, make_broker):
    brokers, db = start_cluster(pg, make_broker)
    topic = f"zombie-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 3)
    lead, _ = wait_for_leaders(brokers, topic, 3)
    zombie = brokers[1]
    mine = sorted(p for p, l in lead.items() if l == 2)
    assert mine, lead
    zombie.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for_leaders([brokers[0], brokers[2]], topic, 3, ok=lambda l: l != 2, timeout=SESSION_MS / 1000 + 20)
    finally:
        zombie.proc.send_signal(signal.SIGCONT)
    # The resumed broker still has its connections and, for a moment, its old view: whatever it
    # is sent, it must not ack (it is fenced in the bucket and failed over in the database).
    with Conn(zombie.port) as c:
        resp = parse_produce_response(c.request(0, 7, produce_request([(topic, [(mine[0], record_batch([b"zombie"]))])])), 7)
    assert resp[(topic, mine[0])]["error"] != 0, "a fenced broker acked a produce"
    deadline = time.time() + 10
    while time.time() < deadline and "no longer serves any partition" not in zombie.log():
        time.sleep(0.1)
    assert "no longer serves any partition" in zombie.log()
    # It no longer renews its lease: the others do not list it.
    time.sleep(1)
    assert leaders([brokers[0]], topic)[1] == [1, 3]
    assert pg.sql("SELECT broker_epoch, recovered_epoch FROM brokers WHERE node_id = 2", db) == [["1", "1"]]
    # The live brokers serve that partition; the zombie's write is nowhere.
    p = Producer({"bootstrap.servers": brokers[0].bootstrap, "acks": "all"})
    p.produce(topic, value=b"after", partition=mine[0])
    assert p.flush(30) == 0
    got = read_all([brokers[0], brokers[2]], topic, 3, 1)
    assert [v for _, _, v in got] == ["after"]


def tern_admin(*args):
    r = subprocess.run([TERN, "admin", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_reassign_and_drain_move_partitions_under_load_with_nothing_lost(pg, make_broker):
    brokers, db = start_cluster(pg, make_broker)
    topic = f"moves-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 6)
    before, _ = wait_for_leaders(brokers, topic, 6)
    stop, acked, errors = threading.Event(), [], []
    t = threading.Thread(target=produce_until, args=(brokers, topic, 6, stop, acked, errors))
    t.start()
    try:
        time.sleep(1)
        target = 1 if before[0] != 1 else 2
        out = tern_admin("reassign", "--bootstrap-server", brokers[0].bootstrap, "--topic", topic, "--partition", "0", "--to", str(target))
        assert out.startswith(f"Moved {topic}-0 to broker {target} in "), out
        ms = int(out.split(" in ")[1].split(" ms")[0])
        assert ms < 5000, out
        assert wait_for_leaders([brokers[0]], topic, 6)[0][0] == target
        # The move is not a copy: the new owner opened the same stream at the next epoch.
        assert pg.sql(f"SELECT owner, assigned FROM streams WHERE topic = '{topic}' AND partition = 0", db) == [[str(target)] * 2]

        out = tern_admin("drain", "--bootstrap-server", brokers[0].bootstrap, "3")
        assert "off broker 3" in out or "leads no partition" in out, out
        after, _ = wait_for_leaders(brokers, topic, 6)
        assert 3 not in after.values(), after
        time.sleep(1)
    finally:
        stop.set()
        t.join(120)
    assert_acked_read_once(brokers, topic, 6, acked, errors)
    assert pg.sql(f"SELECT COUNT(*) FROM streams WHERE topic = '{topic}' AND (owner = 3 OR assigned = 3)", db) == [["0"]]
    # No reassignment is left in progress.
    assert pg.sql(f"SELECT COUNT(*) FROM streams WHERE owner IS DISTINCT FROM assigned", db) == [["0"]]

    # A drained broker stays drained: new partitions go elsewhere, and it says so itself.
    assert pg.sql("SELECT draining FROM brokers WHERE node_id = 3", db) == [["1"]]
    fresh = f"fresh-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, fresh, 6)
    assert 3 not in wait_for_leaders(brokers, fresh, 6)[0].values()
    a = AdminClient({"bootstrap.servers": brokers[2].bootstrap})
    res = ConfigResource(ConfigResource.Type.BROKER, "3")
    assert a.describe_configs([res])[res].result(15)["broker.draining"].value == "true"
    # Undone, it takes partitions again.
    out = tern_admin("drain", "--bootstrap-server", brokers[0].bootstrap, "3", "--undo")
    assert "no longer draining" in out, out
    again = f"again-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, again, 6)
    assert 3 in wait_for_leaders(brokers, again, 6)[0].values()


def free_port_run(n):
    """The first of `n` consecutive ports free on 127.0.0.1 right now (below 50000)."""
    import random
    import socket
    for _ in range(200):
        base = random.randrange(20000, 50000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def start_cluster_up(data_dir, port, metrics_port, brokers=3):
    proc = subprocess.Popen([TERN, "cluster", "up", "--brokers", str(brokers), "--data-dir", data_dir,
                             "--port", str(port), "--metrics-port", str(metrics_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.time() + 90
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops the cluster."):
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError("tern cluster up did not get ready:\n" + "".join(lines))


def test_cluster_up_runs_a_local_cluster_and_restarts_it(pg):
    root = tempfile.mkdtemp(prefix="tern-cluster-up-")
    os.chmod(root, 0o755)  # PostgreSQL runs as 'nobody' when the tests run as root
    data = os.path.join(root, "c")
    # Brokers 2 and 3 listen on the ports after broker 1's: take runs of three free ports.
    port, metrics = free_port_run(3), free_port_run(3)
    proc, out = start_cluster_up(data, port, metrics)
    try:
        bootstrap = ",".join(f"127.0.0.1:{port + i}" for i in range(3))
        assert f"bootstrap: {bootstrap}" in out, out
        topic = f"up-{uuid.uuid4().hex[:6]}"
        a = AdminClient({"bootstrap.servers": bootstrap})
        a.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
        md = a.list_topics(timeout=10)
        assert sorted(md.brokers) == [1, 2, 3]
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(30):
            p.produce(topic, value=f"m{i}".encode(), partition=i % 3)
        assert p.flush(30) == 0
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    assert "Stopping the cluster." in rest
    # Everything stopped, PostgreSQL included.
    assert subprocess.run(["pgrep", "-f", f"postgres -D {data}/postgres"], capture_output=True).returncode == 1
    # The same data directory is the same cluster.
    proc, out = start_cluster_up(data, port, metrics)
    try:
        got = read_all([type("B", (), {"bootstrap": f"127.0.0.1:{port + i}", "alive": lambda self: True})() for i in range(3)],
                       topic, 3, 30)
        assert sorted(v for _, _, v in got) == sorted(f"m{i}" for i in range(30))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_a_new_broker_gets_partitions_from_the_balancer(pg, make_broker):
    balancing = {"balancer.interval.ms": 1000, "balancer.min.bytes.per.sec": 1000}
    url = pg.create_database()
    objects = tempfile.mkdtemp(prefix="tern-cluster-objects-")

    def broker(node):
        return make_broker(settings={**SETTINGS, **balancing},
                           extra_args=["--metadata", url, "--node-id", str(node), "--object-store", f"file://{objects}"])

    brokers = [broker(1), broker(2)]
    topic = f"balance-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 6)
    before, _ = wait_for_leaders(brokers, topic, 6)
    assert set(before.values()) == {1, 2}
    stop, acked, errors = threading.Event(), [], []
    t = threading.Thread(target=produce_until, args=(brokers, topic, 6, stop, acked, errors))
    t.start()
    try:
        time.sleep(2)
        brokers.append(broker(3))
        deadline = time.time() + 30
        counts = {}
        while time.time() < deadline:
            lead, _ = leaders(brokers, topic)
            counts = {n: sum(1 for l in lead.values() if l == n) for n in (1, 2, 3)}
            if counts[3] >= 2:
                break
            time.sleep(0.5)
        assert counts.get(3, 0) >= 2, f"broker 3 got {counts} after 30 s"
        log = "".join(b.log() for b in brokers)
        assert "balancing: moving partitions" in log
    finally:
        stop.set()
        t.join(120)
    assert_acked_read_once(brokers, topic, 6, acked, errors)


def test_a_postgres_outage_under_load_loses_nothing_and_fails_no_one_over(make_broker):
    # A server of its own: this test stops it for 20 s (issue 9).
    server = pg_server.PostgresServer().start()
    try:
        brokers, db = start_cluster(server, make_broker)
        topic = f"outage-{uuid.uuid4().hex[:6]}"
        create_topic(brokers, topic, 6)
        wait_for_leaders(brokers, topic, 6)
        stop, acked, errors = threading.Event(), [], []
        # Started before the outage: InitProducerId needs the database.
        t = threading.Thread(target=produce_until, args=(brokers, topic, 6, stop, acked, errors))
        t.start()
        time.sleep(2)
        server.halt()
        halted, acked_at_halt = time.time(), len(acked)
        time.sleep(20)
        acked_during = len(acked) - acked_at_halt
        server.resume()
        time.sleep(SESSION_MS / 1000 + 5)
        acked_at_resume = len(acked)
        time.sleep(3)
        acked_after = len(acked) - acked_at_resume
        stop.set()
        t.join(120)
        assert not t.is_alive()
        assert errors == [], f"delivery errors: {errors[:5]}"
        assert acked_after > 50, "produce continues after PostgreSQL returns"
        assert all(b.alive() for b in brokers)
        # The commits queued during the outage drain: the streams' end offsets cover every ack.
        deadline = time.time() + 60
        committed = lambda: int(server.sql("SELECT COALESCE(SUM(end_offset), 0) FROM streams", db)[0][0])
        while time.time() < deadline and committed() < len(acked):
            time.sleep(0.5)
        print(f"acked {len(acked)}, committed {committed()}")
        got = read_all(brokers, topic, 6, len(acked), timeout=90)
        print(f"read {len(got)}")
        values = [v for _, _, v in got]
        assert len(values) == len(set(values)), "no record twice"
        missing = {v for _, v in acked} - set(values)
        assert not missing, f"{len(missing)} acked records lost, e.g. {sorted(missing)[:5]}"
        log = "".join(b.log() for b in brokers)
        said = [l for l in log.splitlines() if any(w in l for w in ("failing over", "failed over", "reachable again", "round failed"))]
        assert "broker failed over" not in log, "a broker failed over because the database was away:\n" + "\n".join(said)
        assert server.sql("SELECT recovered_epoch FROM brokers ORDER BY node_id", db) == [["0"], ["0"], ["0"]]
        print(f"acked during the 20 s outage: {acked_during}; after: {acked_after}; total {len(acked)}")
    finally:
        server.stop()


def start_file_wal_cluster(pg, make_broker, shared):
    """Three brokers on the file WAL with uploads held back (so acked records are only in
    the WAL segments): one WAL directory shared by all, or one per broker."""
    url = pg.create_database()
    objects = tempfile.mkdtemp(prefix="tern-cluster-objects-")
    wal = tempfile.mkdtemp(prefix="tern-cluster-wal-")
    held = {"wal.upload.interval.ms": 60000, "wal.upload.bytes": 1 << 30}
    brokers = []
    for node in range(1, 4):
        d = wal if shared else os.path.join(wal, f"broker-{node}")
        brokers.append(make_broker(settings={**SETTINGS, **held},
                                   extra_args=["--metadata", url, "--node-id", str(node), "--object-store", f"file://{objects}",
                                               "--wal", f"file://{d}"]))
        brokers[-1].wal_dir = d
    return brokers


def produce_acked(brokers, topic, partitions, n):
    p = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    acked, errors = [], []
    for i in range(n):
        p.produce(topic, value=f"w{i}".encode(), partition=i % partitions,
                  on_delivery=lambda err, m: acked.append((m.partition(), m.value().decode())) if err is None else errors.append(str(err)))
    assert p.flush(30) == 0
    return acked, errors


def test_a_broker_on_a_shared_file_wal_is_failed_over_from_its_segments(pg, make_broker):
    brokers = start_file_wal_cluster(pg, make_broker, shared=True)
    topic = f"fwal-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 6)
    before, _ = wait_for_leaders(brokers, topic, 6)
    assert 2 in before.values()
    acked, errors = produce_acked(brokers, topic, 6, 1200)
    assert len(acked) == 1200
    brokers[1].kill()  # node 2's acked records are only in its segments
    wait_for_leaders(brokers, topic, 6, ok=lambda l: l != 2, timeout=SESSION_MS / 1000 + 20)
    log = brokers[0].log() + brokers[2].log()
    assert "recovered uncommitted WAL object" in log, log[-3000:]
    assert_acked_read_once(brokers, topic, 6, acked, errors)


def test_a_file_wal_the_controller_cannot_read_keeps_its_partitions_until_the_broker_returns(pg, make_broker):
    brokers = start_file_wal_cluster(pg, make_broker, shared=False)
    topic = f"fwal-own-{uuid.uuid4().hex[:6]}"
    create_topic(brokers, topic, 6)
    before, _ = wait_for_leaders(brokers, topic, 6)
    acked, errors = produce_acked(brokers, topic, 6, 600)
    victim = brokers[1]
    victim.kill()
    os.rename(victim.wal_dir, victim.wal_dir + "-elsewhere")  # as if on another machine's disk
    time.sleep(SESSION_MS / 1000 + 3)
    log = brokers[0].log() + brokers[2].log()
    assert "which this broker cannot read" in log, log[-3000:]
    assert "broker failed over" not in log, "a broker was failed over without its WAL"
    os.rename(victim.wal_dir + "-elsewhere", victim.wal_dir)
    victim.start()  # its own start replays its segments
    wait_for_leaders(brokers, topic, 6)
    assert_acked_read_once(brokers, topic, 6, acked, errors)
