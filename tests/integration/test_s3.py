"""The S3 object store (Sources/ObjectStore/S3) on real S3 servers: SeaweedFS and moto,
started and stopped here (s3_servers.py).

1. The client alone (`s3-check store`, the test-only driver of S3ObjectStore), checked with
   boto3: conditional PUT, ranged GET, HEAD, paginated LIST, batched DELETE, multipart.
2. Faults, through a proxy that answers errors, resets connections or drops answers after the
   server acted: retries with backoff on 5xx/SlowDown/resets, none on hopeless 4xx, a
   conditional PUT whose answer was lost is checked with HEAD and not sent again, a failed
   multipart upload is aborted.
3. The broker on each server with real clients: produce/consume, restart, kill -9 recovery,
   objects only under the prefix, multipart WAL objects; and the startup check's messages
   for bad credentials, a missing bucket, a wrong region and an unreachable endpoint.
"""
import http.server
import json
import os
import random
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import TERN
from s3_servers import ACCESS_KEY, SECRET_KEY, SERVERS, FaultProxy

S3_CHECK = os.environ.get("S3_CHECK_BIN", os.path.join(os.path.dirname(TERN), "s3-check"))


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request):
    s = SERVERS[request.param]()
    try:
        s.start()
    except RuntimeError as e:
        s.stop()
        pytest.fail(str(e))
    yield s
    s.stop()


def new_bucket(server):
    return server.create_bucket(f"tern-{uuid.uuid4().hex[:12]}")


class Store:
    """`s3-check store` as a line-oriented subprocess."""

    def __init__(self, endpoint, bucket, prefix="", env=None):
        e = dict(os.environ)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "KAFKA_S3_ACCESS_KEY", "KAFKA_S3_SECRET_KEY"):
            e.pop(k, None)
        e.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, S3_ENDPOINT=endpoint, S3_BUCKET=bucket,
                 S3_PREFIX=prefix, S3_RETRY_BASE_MS="10")
        e.update(env or {})
        if not os.path.exists(S3_CHECK):
            pytest.fail(f"{S3_CHECK} missing: swift build -c release --product s3-check")
        self.proc = subprocess.Popen([S3_CHECK, "store"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=e)

    def __call__(self, op, **kw):
        self.proc.stdin.write((json.dumps(dict(op=op, **kw)) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "s3-check exited"
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0


@pytest.fixture
def store_factory():
    made = []

    def make(*a, **kw):
        s = Store(*a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


# ---------------------------------------------------------------------------------------------
# 1. The client against each server
# ---------------------------------------------------------------------------------------------


def test_put_get_head_with_prefix_and_odd_keys(server, store_factory):
    bucket = new_bucket(server)
    store = store_factory(server.endpoint, bucket, prefix="pre/fix")
    s3 = server.client()
    keys = ["a", "dir/sub/obj", "sp ace/plus+eq=amp&q?h#", "ünï/中文/🦉", "x~y_z-w.v", "(paren)[br]{c}*'!$,;:@"]
    for i, key in enumerate(keys):
        body = bytes((i * 7 + j) % 256 for j in range(1000 + i))
        assert store("put", key=key, body_hex=body.hex(), if_none_match=True) == {"ok": True}
        # boto3 sees it under the prefix, byte for byte
        assert s3.get_object(Bucket=bucket, Key="pre/fix/" + key)["Body"].read() == body
        assert store("head", key=key) == {"ok": True, "size": len(body)}
        assert bytes.fromhex(store("get", key=key)["body_hex"]) == body
        assert bytes.fromhex(store("get", key=key, range=[10, 20])["body_hex"]) == body[10:20]
        assert bytes.fromhex(store("get", key=key, range=[990, 5000])["body_hex"]) == body[990:]  # clipped like S3
    assert store("head", key="nope") == {"ok": True, "missing": True}
    assert store("get", key="nope")["error"] == "notFound"
    assert store("get", key="a", range=[5000, 6000])["error"] == "invalidRange"
    listed = store("list", prefix="")["objects"]
    assert sorted(k for k, _ in listed) == sorted(keys)
    assert [k for k, _ in store("list", prefix="dir/")["objects"]] == ["dir/sub/obj"]


def test_get_read_straight_into_pieces(server, store_factory):
    """The block cache's GETs: the body read into buffers of the asked size as it arrives,
    the last one shorter where the bytes end, byte for byte, whole or ranged or clipped."""
    bucket = new_bucket(server)
    store = store_factory(server.endpoint, bucket)
    piece = 64 << 10
    body = bytes((j * 13 + j // 251) % 256 for j in range(3 * piece + 1000))
    assert store("put", key="o", body_hex=body.hex())["ok"]
    for rng in [None, [piece, 3 * piece], [2 * piece, 5 * piece], [3 * piece, 3 * piece + 10]]:
        want = body if rng is None else body[rng[0]:rng[1]]
        r = store("get", key="o", piece_bytes=piece, **({} if rng is None else {"range": rng}))
        assert bytes.fromhex(r["body_hex"]) == want, rng
        assert r["pieces"] == [piece] * (len(want) // piece) + ([len(want) % piece] if len(want) % piece else []), rng
    assert store("get", key="o", piece_bytes=piece, range=[len(body) + 5, len(body) + 9])["error"] == "invalidRange"


def test_conditional_put_refuses_an_existing_key(server, store_factory):
    bucket = new_bucket(server)
    store = store_factory(server.endpoint, bucket)
    assert store("put", key="wal/1", body_hex="01", if_none_match=True)["ok"]
    r = store("put", key="wal/1", body_hex="02", if_none_match=True)
    assert r["error"] == "alreadyExists", r
    assert server.client().get_object(Bucket=bucket, Key="wal/1")["Body"].read() == b"\x01"
    # unconditional overwrite works
    assert store("put", key="wal/1", body_hex="03", if_none_match=False)["ok"]
    assert server.client().get_object(Bucket=bucket, Key="wal/1")["Body"].read() == b"\x03"


def test_concurrent_conditional_puts_have_exactly_one_winner(server, store_factory):
    """The WAL's fencing rests on If-None-Match: of writers racing for one key, exactly one
    wins and the key holds its bytes (TRAPS.md: SeaweedFS's conditional PUT is recent)."""
    bucket = new_bucket(server)
    writers = [store_factory(server.endpoint, bucket) for _ in range(6)]
    for trial in range(15):
        key = f"wal/1/race-{trial}"
        results = [None] * len(writers)
        barrier = threading.Barrier(len(writers))

        def put(i):
            barrier.wait()
            results[i] = writers[i]("put", key=key, body_hex=(f"writer-{i}-".encode() * 500).hex(), if_none_match=True)
        threads = [threading.Thread(target=put, args=(i,)) for i in range(len(writers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, r in enumerate(results) if r.get("ok")]
        assert len(winners) == 1, (trial, results)
        assert all(r.get("error") == "alreadyExists" for i, r in enumerate(results) if i not in winners), results
        body = server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == f"writer-{winners[0]}-".encode() * 500


def test_list_paginates_and_delete_batches_past_1000(server, store_factory):
    bucket = new_bucket(server)
    s3 = server.client()
    from concurrent.futures import ThreadPoolExecutor
    keys = [f"p/{i:05d}" for i in range(2345)]
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))
    s3.put_object(Bucket=bucket, Key="q/outside", Body=b"x")
    store = store_factory(server.endpoint, bucket)
    listed = store("list", prefix="p/")["objects"]
    assert [k for k, _ in listed] == keys  # three pages, in key order, nothing lost or repeated
    assert all(size == 7 for _, size in listed)
    assert store("delete", keys=keys + ["p/never-existed"]) == {"ok": True}
    left = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in left.get("Contents", [])] == ["q/outside"]


def test_multipart_above_part_size(server, store_factory):
    bucket = new_bucket(server)
    store = store_factory(server.endpoint, bucket, env={"S3_PART_SIZE": str(5 << 20)})
    size = (5 << 20) * 2 + 12345
    assert store("put", key="big", fill=[7, size], if_none_match=True) == {"ok": True}
    head = server.client().head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-3")  # three parts
    assert store("get", key="big", range=[size - 3, size])["body_hex"] == "070707"
    # conditional: a second multipart PUT of the key is refused
    assert store("put", key="big", fill=[8, size], if_none_match=True)["error"] == "alreadyExists"
    assert server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_the_store_asks_the_limiter_for_each_part(server, store_factory):
    """The throughput limiter paces compaction's uploads part by part: the store asks
    `TransferPacing` for each multipart part's bytes, and for a single PUT's whole body. (That
    it asks before sending is checked on ThrottledObjectStore's side, in ThroughputTests.)"""
    bucket = new_bucket(server)
    store = store_factory(server.endpoint, bucket, env={"S3_PART_SIZE": str(5 << 20)})
    size = (5 << 20) * 2 + 12345
    assert store("put", key="parts", fill=[3, size], paced=True, **{"class": "compaction"}) == \
        {"ok": True, "paced": [5 << 20, 5 << 20, 12345]}
    assert store("put", key="one", fill=[4, 1000], paced=True) == {"ok": True, "paced": [1000]}
    assert server.client().head_object(Bucket=bucket, Key="parts")["ContentLength"] == size


def test_a_paced_get_reads_each_part_only_once_the_limiter_let_the_one_before_through(server, store_factory):
    """A catch-up read at its class limit is paced as it arrives: the store asks
    `TransferPacing` for each part of the body it receives and reads the next only once the
    answer came, so the bytes come at the limiter's pace, not in a burst at the server's."""
    bucket = new_bucket(server)
    store = store_factory(server.endpoint, bucket)
    size = 3 << 20
    assert store("put", key="o", fill=[6, size]) == {"ok": True}
    for ask in [{"range": [1000, size]}, {"range": [0, size], "piece_bytes": 512 << 10}, {}]:
        got = store("get", key="o", pace_ms=20, **ask)
        want = size - ask.get("range", [0])[0]
        assert got["size"] == want and got["body_hex"] == "06" * want
        # Every byte received was asked for, in parts (the socket's reads), one after another:
        # the GET took at least a pause per part.
        assert sum(got["paced"]) == want and len(got["paced"]) >= 4, got["paced"]
        assert got["ms"] >= 20 * len(got["paced"]), (got["ms"], len(got["paced"]))
    # Not paced: nothing asked.
    assert "paced" not in store("get", key="o", range=[0, 10])


def test_objects_are_typed_so_the_server_stores_them_as_sent(server, store_factory):
    """Our objects say what they are (binary/octet-stream, S3's own default). Without a type,
    SeaweedFS gzips each 4 MiB chunk whose first 128 bytes compress, record batches of text
    included, and un-gzips it on every GET: twice its CPU per GB read."""
    bucket = new_bucket(server)
    store = store_factory(server.endpoint, bucket, env={"S3_PART_SIZE": str(16 << 20)})
    data = os.path.join(server.dir, "data")

    def stored():
        return int(subprocess.run(["du", "-sb", data], capture_output=True, text=True, check=True).stdout.split()[0])
    # Like record batches of text: a binary header, then letters.
    rng = random.Random(7)
    pattern = bytes(rng.randrange(256) for _ in range(61)) + bytes(rng.randrange(65, 91) for _ in range(963))
    for key, size, body in [("single", 9 << 20, {"body_hex": (pattern * (9 << 10)).hex()}),
                            ("multi", (16 << 20) * 2 + 12345, {"fill": [7, (16 << 20) * 2 + 12345]})]:
        before = stored() if server.name == "seaweedfs" else 0
        assert store("put", key=key, if_none_match=True, **body) == {"ok": True}
        assert server.client().head_object(Bucket=bucket, Key=key)["ContentType"] == "binary/octet-stream"
        if server.name == "seaweedfs":
            grew = stored() - before
            assert grew >= size, f"{key}: {size} bytes sent, {grew} stored: the server compressed them"


# ---------------------------------------------------------------------------------------------
# 2. Faults
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def proxy(server):
    p = FaultProxy(server.port)
    yield p
    p.close()


def is_put(method, path, query):
    return method == "PUT" and "uploadId" not in query


def test_conditional_put_whose_answer_was_lost_is_checked_not_repeated(server, proxy, store_factory):
    bucket = new_bucket(server)
    store = store_factory(proxy.endpoint, bucket)
    proxy.plan(is_put, "lose")  # the server writes it; the client never hears
    assert store("put", key="wal/7", body_hex="abcdef", if_none_match=True) == {"ok": True}
    methods = [m for m, _, _, _ in proxy.requests()]
    assert methods == ["PUT", "HEAD"], proxy.requests()  # checked, not sent again
    assert server.client().get_object(Bucket=bucket, Key="wal/7")["Body"].read() == bytes.fromhex("abcdef")


def test_conditional_put_after_a_reset_is_retried(server, proxy, store_factory):
    bucket = new_bucket(server)
    store = store_factory(proxy.endpoint, bucket)
    proxy.plan(is_put, "reset")  # never reached the server
    assert store("put", key="wal/8", body_hex="01", if_none_match=True) == {"ok": True}
    assert [m for m, _, _, _ in proxy.requests()] == ["PUT", "HEAD", "PUT"], proxy.requests()


def test_lost_answer_and_another_writer_is_already_exists(server, proxy, store_factory):
    """The lost PUT did not land (reset), and meanwhile another writer took the key: the
    check must say alreadyExists, not claim the other object as ours."""
    bucket = new_bucket(server)
    store = store_factory(proxy.endpoint, bucket)
    other = server.client()

    def reset_then_other_writes(method, path, query):
        if is_put(method, path, query):
            other.put_object(Bucket=bucket, Key="wal/9", Body=b"someone else")
            return True
        return False
    proxy.plan(reset_then_other_writes, "reset")
    r = store("put", key="wal/9", body_hex="01", if_none_match=True)
    assert r["error"] == "alreadyExists", r
    assert other.get_object(Bucket=bucket, Key="wal/9")["Body"].read() == b"someone else"


def test_same_size_other_bytes_is_not_taken_for_ours(server, proxy, store_factory):
    """ETag, not only size: an object of the same length with other bytes is not ours."""
    bucket = new_bucket(server)
    store = store_factory(proxy.endpoint, bucket)
    other = server.client()

    def reset_then_other_writes(method, path, query):
        if is_put(method, path, query):
            other.put_object(Bucket=bucket, Key="wal/10", Body=b"\x02")
            return True
        return False
    proxy.plan(reset_then_other_writes, "reset")
    assert store("put", key="wal/10", body_hex="01", if_none_match=True)["error"] == "alreadyExists"


@pytest.mark.parametrize("fault", ["status:503:SlowDown", "status:500:InternalError", "status:503:ServiceUnavailable",
                                   "status:400:RequestTimeout", "reset"])
def test_transient_failures_are_retried(server, proxy, store_factory, fault):
    bucket = new_bucket(server)
    server.client().put_object(Bucket=bucket, Key="obj", Body=b"payload")
    store = store_factory(proxy.endpoint, bucket)
    proxy.plan(lambda m, p, q: m == "GET", fault, times=3)
    r = store("get", key="obj")
    assert r.get("body_hex") == b"payload".hex(), r
    assert len(proxy.requests("GET")) == 4


def test_hopeless_4xx_is_not_retried(server, proxy, store_factory):
    bucket = new_bucket(server)
    store = store_factory(proxy.endpoint, bucket)
    assert store("get", key="missing")["error"] == "notFound"
    assert len(proxy.requests("GET")) == 1
    proxy.plan(lambda m, p, q: m == "PUT", "status:403:AccessDenied")
    assert store("put", key="k", body_hex="01")["error"] == "failed"
    assert len(proxy.requests("PUT")) == 1


def test_retries_are_bounded(server, proxy, store_factory):
    bucket = new_bucket(server)
    store = store_factory(proxy.endpoint, bucket, env={"S3_MAX_ATTEMPTS": "4"})
    proxy.plan(lambda m, p, q: m == "GET", "status:503:SlowDown", times=100)
    started = time.monotonic()
    r = store("get", key="obj")
    assert r["error"] == "unavailable", r
    assert len(proxy.requests("GET")) == 4
    # backoff: base 10 ms doubling, half jittered: at least 5+10+20 ms in all
    assert time.monotonic() - started >= 0.035


def test_request_timeout_is_retried(server, proxy, store_factory):
    bucket = new_bucket(server)
    server.client().put_object(Bucket=bucket, Key="obj", Body=b"slow")
    store = store_factory(proxy.endpoint, bucket, env={"S3_TIMEOUT_MS": "300"})
    proxy.plan(lambda m, p, q: m == "GET", "delay:1500")
    started = time.monotonic()
    r = store("get", key="obj")
    assert r.get("body_hex") == b"slow".hex(), r
    assert len(proxy.requests("GET")) >= 2  # the first timed out (a loaded machine may time out more)
    assert time.monotonic() - started < 1.4, "the client waited for the slow answer instead of timing out"


def test_failed_multipart_upload_is_aborted(server, proxy, store_factory):
    bucket = new_bucket(server)
    store = store_factory(proxy.endpoint, bucket, env={"S3_PART_SIZE": str(5 << 20)})
    proxy.plan(lambda m, p, q: m == "PUT" and "partNumber=2" in q, "status:400:InvalidArgument")
    r = store("put", key="big", fill=[1, (5 << 20) + 10])
    assert r["error"] == "failed", r
    aborts = [r for r in proxy.requests("DELETE") if "uploadId" in r[2]]
    assert len(aborts) == 1
    assert server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in server.client().list_objects_v2(Bucket=bucket)


def test_compaction_sends_its_parts_one_at_a_time(server, proxy, store_factory):
    """A multipart upload of the compaction class sends one part after another; a WAL upload
    (the default class) sends them in parallel. Each part is held 1 s by the proxy."""
    bucket = new_bucket(server)
    store = store_factory(proxy.endpoint, bucket, env={"S3_PART_SIZE": str(5 << 20)})
    assert store("put", key="warm-up", fill=[0, 5 << 20]) == {"ok": True}  # SeaweedFS's first write grows volumes
    proxy.plan(lambda m, p, q: m == "PUT" and "partNumber=" in q, "delay:1000", times=8)
    timings = {}
    for cls in ("produce", "compaction"):
        started = time.monotonic()
        assert store("put", key=f"four-parts-{cls}", fill=[1, 4 * (5 << 20)], **{"class": cls}) == {"ok": True}
        timings[cls] = time.monotonic() - started
    assert timings["compaction"] >= 4.0, timings  # four parts of 1 s each, in turn
    assert timings["produce"] < 3.0, timings  # the four at once
    assert server.client().head_object(Bucket=bucket, Key="four-parts-compaction")["ETag"].strip('"').endswith("-4")


# ---------------------------------------------------------------------------------------------
# 3. The broker on S3
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def s3_env(server, monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "KAFKA_S3_ACCESS_KEY", "KAFKA_S3_SECRET_KEY"):
        monkeypatch.delenv(k, raising=False)
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    return monkeypatch


def s3_args(server, bucket, prefix="cluster-a", endpoint=None):
    return ["--object-store", f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}",
            "--s3-endpoint", endpoint or server.endpoint, "--s3-region", "us-east-1", "--s3-path-style"]


def produce(bootstrap, topic, n, partitions, tag):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    acked = {}
    def cb(err, msg):
        assert err is None, err
        acked[(msg.partition(), msg.offset())] = msg.value()
    for i in range(n):
        p.produce(topic, value=f"{tag}-{i}".encode(), key=str(i).encode(), partition=i % partitions, on_delivery=cb)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert len(acked) == n
    return acked


def consume(bootstrap, topic, partitions, expect):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = {}
    deadline = time.time() + 60
    while len(got) < expect and time.time() < deadline:
        for m in c.consume(1000, timeout=1):
            assert m.error() is None, m.error()
            assert (m.partition(), m.offset()) not in got, "a record was read twice"
            got[(m.partition(), m.offset())] = m.value()
    c.close()
    return got


def create(bootstrap, topic, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def keys_in(server, bucket):
    s3 = server.client()
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def test_broker_end_to_end_restart_and_prefix(server, s3_env, make_broker):
    bucket = new_bucket(server)
    b = make_broker(extra_args=s3_args(server, bucket))
    assert "reachable and writable" in b.log()
    create(b.bootstrap, "t", 3)
    acked = produce(b.bootstrap, "t", 3000, 3, "one")
    assert consume(b.bootstrap, "t", 3, 3000) == acked
    keys = keys_in(server, bucket)
    assert any(k.startswith("cluster-a/") and "/wal/" in k for k in keys), keys
    assert all(k.startswith("cluster-a/") for k in keys), keys  # nothing outside the prefix
    assert not any("startup-check" in k for k in keys)  # the probe object was deleted
    assert b.metric('tern_object_store_requests_total{type="PUT"}') >= 1

    assert b.restart() is b
    assert consume(b.bootstrap, "t", 3, 3000) == acked
    more = produce(b.bootstrap, "t", 1000, 3, "two")
    both = {**acked, **more}
    assert consume(b.bootstrap, "t", 3, 4000) == both


def test_broker_kill9_recovers_every_acked_record(server, s3_env, make_broker):
    bucket = new_bucket(server)
    b = make_broker(extra_args=s3_args(server, bucket))
    create(b.bootstrap, "r", 2)
    acked = produce(b.bootstrap, "r", 2000, 2, "before-kill")
    b.kill()  # no flush, no commit of what is in flight: recovery replays the WAL objects
    b.start()
    assert consume(b.bootstrap, "r", 2, 2000) == acked
    more = produce(b.bootstrap, "r", 500, 2, "after")
    got = consume(b.bootstrap, "r", 2, 2500)
    assert got == {**acked, **more}
    for p in range(2):  # offsets contiguous per partition
        offs = sorted(o for (pp, o) in got if pp == p)
        assert offs == list(range(len(offs)))


def test_broker_wal_objects_above_part_size_go_multipart(server, s3_env, make_broker):
    bucket = new_bucket(server)
    b = make_broker(settings={"s3.part.size": str(5 << 20), "wal.upload.bytes": str(12 << 20),
                              "wal.upload.interval.ms": "2000", "message.max.bytes": str(2 << 20),
                              "wal.upload.idle.ms": "0"},  # a stalled client must not cut it short
                    extra_args=s3_args(server, bucket, prefix=""))
    create(b.bootstrap, "big", 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 50, "batch.size": 1 << 20,
                  "message.max.bytes": 2 << 20})
    value = os.urandom(100_000)
    for i in range(120):  # 12 MB, in one or two flushes
        p.produce("big", value=value, key=str(i).encode())
    assert p.flush(60) == 0
    s3 = server.client()
    etags = [s3.head_object(Bucket=bucket, Key=k)["ETag"] for k in keys_in(server, bucket) if "/wal/" in k]
    assert any("-" in e for e in etags), etags  # at least one WAL object went up in parts
    # and the S3 request counters saw the multipart calls
    assert b.metric('tern_object_store_s3_requests_total{op="CreateMultipartUpload"}') >= 1
    assert b.metric('tern_object_store_s3_requests_total{op="UploadPart"}') >= 3
    assert b.metric('tern_object_store_s3_requests_total{op="CompleteMultipartUpload"}') >= 1
    got = consume(b.bootstrap, "big", 1, 120)
    assert len(got) == 120 and all(v == value for v in got.values())


def start_failure(make_broker, args, settings=None, code=1):
    """Exit 1 for a bucket that cannot be used, 64 (usage) for missing configuration."""
    b = make_broker(extra_args=args, settings=settings, start=False)
    with pytest.raises(RuntimeError) as e:
        b.start(timeout=60)
    assert b.proc.returncode == code, str(e.value)
    return str(e.value)


def test_missing_bucket_is_reported(server, s3_env, make_broker):
    out = start_failure(make_broker, s3_args(server, "no-such-bucket-here"))
    assert f"bucket 'no-such-bucket-here' does not exist at {server.endpoint} (NoSuchBucket)" in out, out


def test_no_credentials_is_reported(server, s3_env, make_broker):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        s3_env.delenv(k)
    out = start_failure(make_broker, s3_args(server, new_bucket(server)), code=64)
    assert "no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or KAFKA_S3_ACCESS_KEY and KAFKA_S3_SECRET_KEY)" in out, out


def test_kafka_s3_credentials_are_used(server, s3_env, make_broker):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        s3_env.delenv(k)
    s3_env.setenv("KAFKA_S3_ACCESS_KEY", ACCESS_KEY)
    s3_env.setenv("KAFKA_S3_SECRET_KEY", SECRET_KEY)
    bucket = new_bucket(server)
    b = make_broker(extra_args=s3_args(server, bucket))
    create(b.bootstrap, "k", 1)
    assert len(produce(b.bootstrap, "k", 10, 1, "k")) == 10
    if server.checks_credentials:  # and they are really what SeaweedFS checked
        s3_env.setenv("KAFKA_S3_SECRET_KEY", "wrong")
        out = start_failure(make_broker, s3_args(server, bucket))
        assert "SignatureDoesNotMatch" in out


def test_bad_credentials_are_reported(server, s3_env, make_broker):
    if not server.checks_credentials:
        pytest.skip(f"{server.name} accepts any credentials")
    bucket = new_bucket(server)
    s3_env.setenv("AWS_ACCESS_KEY_ID", "AKIDONTKNOWTHIS")
    out = start_failure(make_broker, s3_args(server, bucket))
    assert (f"bad S3 credentials: access key id 'AKIDONTKNOWTHIS' is unknown to {server.endpoint} (InvalidAccessKeyId); "
            "check AWS_ACCESS_KEY_ID or KAFKA_S3_ACCESS_KEY") in out, out
    s3_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    s3_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    out = start_failure(make_broker, s3_args(server, bucket))
    assert (f"bad S3 credentials: the secret key does not match access key id '{ACCESS_KEY}' (SignatureDoesNotMatch); "
            "check AWS_SECRET_ACCESS_KEY or KAFKA_S3_SECRET_KEY") in out, out


def test_unreachable_endpoint_is_reported(server, s3_env, make_broker):
    from s3_servers import free_low_port
    dead = f"http://127.0.0.1:{free_low_port()}"
    out = start_failure(make_broker, s3_args(server, "b-unreachable", endpoint=dead), settings={"s3.max.attempts": "2"})
    assert f"cannot reach S3 endpoint {dead}" in out, out


class WrongRegionS3(http.server.BaseHTTPRequestHandler):
    """What AWS answers a request signed for the wrong region (neither SeaweedFS nor moto
    checks the region): 400 AuthorizationHeaderMalformed naming the right one."""

    def do_GET(self):
        body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>'
                b"<Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'</Message>"
                b"<Region>eu-central-1</Region><RequestId>R1</RequestId></Error>")
        self.send_response(400)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_wrong_region_is_reported(server, s3_env, make_broker):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WrongRegionS3)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{httpd.server_address[1]}"
        out = start_failure(make_broker, s3_args(server, "eu-bucket", endpoint=endpoint))
        assert (f"wrong region: bucket 'eu-bucket' at {endpoint} is in region 'eu-central-1', not 'us-east-1'; "
                "set --s3-region eu-central-1 (AuthorizationHeaderMalformed)") in out, out
    finally:
        httpd.shutdown()


# ---------------------------------------------------------------------------------------------
# 4. Exactly once under injected faults
# ---------------------------------------------------------------------------------------------


FAULTS = {
    # 10% of PUTs and GETs fail, every one of them waits 200 ms more
    "object.store.fault.put.error.rate": "0.1", "object.store.fault.put.delay.ms": "200",
    "object.store.fault.get.error.rate": "0.1", "object.store.fault.get.delay.ms": "200",
    # and some PUTs land but their answer is lost: the retry finds the key taken by itself
    "object.store.fault.put.lost.rate": "0.05",
    "object.store.fault.head.error.rate": "0.1",
    # reads come from objects, not from memory, so that GET faults matter
    "log.cache.bytes": "0", "block.cache.bytes": "65536",
    # small WAL objects: many PUTs and GETs, so that 10% is many failures
    "wal.upload.bytes": "262144", "wal.upload.interval.ms": "20",
    # and at least one of each fails for sure
    "object.store.fault.put.fail.nth": "3", "object.store.fault.get.fail.nth": "3", "object.store.fault.put.lost.nth": "2",
}


def test_exactly_once_in_order_under_faults(server, s3_env, make_broker):
    """confluent-kafka, acks=all, idempotent: 100k records of 100 bytes through 10% PUT and
    GET failures, 200 ms added latency and lost PUT answers; every acked record is read back
    exactly once, at its acked offset, in produce order per partition. (About 60 PUTs and
    200 GETs, a fifth of them failing; about a minute.)"""
    if server.name != "seaweedfs":
        pytest.skip("run once, on SeaweedFS (the fault layer is the broker's, not the server's)")
    bucket = new_bucket(server)
    b = make_broker(settings=FAULTS, extra_args=s3_args(server, bucket))
    partitions, n = 4, 100_000
    create(b.bootstrap, "faulty", partitions)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 20,
                  "batch.size": 65536, "message.timeout.ms": 300000})
    acked = {}
    failed = []

    def cb(err, msg):
        if err is not None:
            failed.append(err)
        else:
            acked[(msg.partition(), msg.offset())] = msg.value()
    for i in range(n):
        while True:
            try:
                p.produce("faulty", value=f"{i % partitions}:{i // partitions}:".encode().ljust(100, b"."), partition=i % partitions,
                          on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(300) == 0
    assert failed == [] and len(acked) == n

    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "faulty-reader", "enable.auto.commit": False,
                  "fetch.error.backoff.ms": 50})
    c.assign([TopicPartition("faulty", q, 0) for q in range(partitions)])
    got = {}
    retriable = 0
    deadline = time.time() + 300
    while len(got) < n and time.time() < deadline:
        for m in c.consume(5000, timeout=1):
            if m.error() is not None:
                assert m.error().retriable(), m.error()
                retriable += 1
                continue
            key = (m.partition(), m.offset())
            assert key not in got, f"record {key} read twice"
            got[key] = m.value()
    c.close()
    assert got == acked  # every acked record once, at its acked offset
    for q in range(partitions):
        offsets = sorted(o for (pp, o) in got if pp == q)
        assert offsets == list(range(len(offsets)))  # no gap
        seqs = [int(got[(q, o)].split(b":")[1]) for o in offsets]
        assert seqs == list(range(len(seqs)))  # produce order
    # the faults were really there
    assert b.metric('tern_object_store_requests_total{type="PUT"}') >= 40
    assert b.metric('tern_object_store_requests_total{type="GET"}') >= 100
    assert b.metric('tern_block_cache_reads_total{result="miss"}') >= 1  # the reads went through the block cache
    assert b.metric('tern_block_cache_gets_total') >= 1
    # misses in WAL objects ask to GET them for every partition's reader (refused in this tiny cache)
    assert sum(b.metric(f'tern_block_cache_shared_gets_total{{result="{r}"}}') for r in ("taken", "windows", "refused")) >= 1
    assert b.metric('tern_object_store_errors_total{type="PUT"}') > 0
    assert b.metric('tern_object_store_errors_total{type="GET"}') > 0
    assert "injected lost answer" in b.log()


# ---------------------------------------------------------------------------------------------
# 5. Cost accounting: tern admin storage
# ---------------------------------------------------------------------------------------------


def test_admin_storage_reports_bucket_requests_and_cost(server, s3_env, make_broker):
    bucket = new_bucket(server)
    b = make_broker(extra_args=s3_args(server, bucket, prefix="acct"))
    create(b.bootstrap, "cost", 2)
    produce(b.bootstrap, "cost", 500, 2, "c")
    url = f"http://127.0.0.1:{b.metrics_port}"
    r = subprocess.run([TERN, "admin", "storage", "--metrics-url", url, "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    # objects and bytes: what the bucket holds under the prefix, as boto3 sees it
    s3 = server.client()
    listed = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="acct/")
              for o in page.get("Contents", [])]
    assert report["objects"] == len(listed) > 0
    assert report["bytes"] == sum(o["Size"] for o in listed)
    assert report["requests_counted"] == "S3 requests sent"
    puts = report["requests"]["PutObject"]["count"]
    wal = [o for o in listed if "/wal/" in o["Key"]]
    assert puts >= len(wal) + 1  # every WAL object, plus the startup probe
    assert report["requests"]["ListObjectsV2"]["count"] >= 2  # startup check, recovery, this report
    assert report["requests"]["PutObject"]["tier"] == "PUT/POST/LIST"
    assert report["requests"]["GetObject"]["tier"] == "GET/other"
    # the estimate is the published prices times the rates since start
    prices = report["prices_usd"]
    assert prices == {"put_post_list_per_1000": 0.005, "get_per_1000": 0.0004, "storage_per_gb_month": 0.023}
    month = 30 * 24 * 3600
    expect = sum(v["per_second"] * month * (prices["put_post_list_per_1000"] if v["tier"] == "PUT/POST/LIST" else
                                            prices["get_per_1000"] if v["tier"] == "GET/other" else 0) / 1000
                 for v in report["requests"].values())
    cost = report["estimated_monthly_cost_usd"]
    assert abs(cost["requests"] - expect) < 1e-6 * max(1, expect)
    assert abs(cost["storage"] - report["bytes"] / 2**30 * 0.023) < 1e-12
    assert abs(cost["total"] - cost["requests"] - cost["storage"]) < 1e-9
    # the same numbers on /metrics, and the human form
    assert b.metric('tern_object_store_s3_requests_total{op="PutObject"}') >= puts
    assert b.metric("tern_object_store_stored_objects") == report["objects"]
    text = subprocess.run([TERN, "admin", "storage", "--metrics-url", url], capture_output=True, text=True, timeout=60).stdout
    assert f"objects       {report['objects']}" in text
    assert "estimated monthly cost at AWS S3 Standard prices" in text and "total     $" in text


def test_admin_storage_without_a_broker_fails_in_one_line():
    from s3_servers import free_low_port
    r = subprocess.run([TERN, "admin", "storage", "--metrics-url", f"http://127.0.0.1:{free_low_port()}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("Error: cannot reach http://127.0.0.1:") and r.stderr.count("\n") == 1, r.stderr


def test_admin_storage_on_a_local_directory_counts_equivalent_requests(make_broker):
    b = make_broker()
    create(b.bootstrap, "local", 1)
    produce(b.bootstrap, "local", 50, 1, "l")
    r = subprocess.run([TERN, "admin", "storage", "--metrics-url", f"127.0.0.1:{b.metrics_port}", "--json"],
                       capture_output=True, text=True, timeout=60)
    report = json.loads(r.stdout)
    files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(b.data_dir, "objects")) for f in fs]
    assert report["objects"] == len(files) > 0
    assert report["bytes"] == sum(os.path.getsize(f) for f in files)
    assert report["requests_counted"] == "equivalent S3 requests"
    assert report["requests"]["PutObject"]["count"] == b.metric('tern_object_store_requests_total{type="PUT"}')


def test_injected_timeouts_and_a_lost_first_put(server, s3_env, make_broker):
    """The other faults of the decorator, at the broker: PUTs that hang and time out, and the
    very first WAL PUT landing with its answer lost (the retry finds the key taken by its own
    bytes). Nothing acked is lost or doubled."""
    bucket = new_bucket(server)
    b = make_broker(settings={"object.store.fault.put.timeout.rate": "0.3", "object.store.fault.put.timeout.ms": "300",
                              "object.store.fault.put.lost.nth": "1", "object.store.fault.get.fail.nth": "1",
                              "log.cache.bytes": "0"},
                    extra_args=s3_args(server, bucket))
    create(b.bootstrap, "to", 2)
    acked = produce(b.bootstrap, "to", 400, 2, "t")
    assert consume(b.bootstrap, "to", 2, 400) == acked
    # The lost answer is certain (the timeouts are a 30% chance per PUT): its WAL object was
    # written, so the broker's retry reached S3 once more than there are WAL objects (and the
    # startup probe), was refused with 412, and the HEAD check accepted the object as its own.
    wal = [k for k in keys_in(server, bucket) if "/wal/" in k]
    assert b.metric('tern_object_store_s3_requests_total{op="PutObject"}') >= len(wal) + 2
    assert b.metric('tern_object_store_errors_total{type="PUT"}') >= 1


def test_broker_compacts_and_collects_garbage_on_s3(server, s3_env, make_broker):
    """Compaction and garbage collection through the S3 client (DeleteObjects in batches):
    small WAL objects merge, a deleted topic's objects leave the bucket after the grace period."""
    from kafka_wire import wait_for
    bucket = new_bucket(server)
    b = make_broker(settings={"wal.upload.interval.ms": "20", "object.gc.interval.ms": "100", "object.gc.grace.ms": "300",
                              "compaction.interval.ms": "200", "log.cache.bytes": "0"},
                    extra_args=s3_args(server, bucket))
    create(b.bootstrap, "keep", 2)
    create(b.bootstrap, "gone", 2)
    acked = {}
    for r in range(5):
        acked.update(produce(b.bootstrap, "keep", 200, 2, f"k{r}"))
        produce(b.bootstrap, "gone", 200, 2, f"g{r}")
    data = lambda: [k for k in keys_in(server, bucket) if "/wal/" in k or "/data/" in k]
    assert wait_for(lambda: len(data()) <= 2, timeout=30), data()
    assert any("/data/sso/" in k for k in data())
    assert consume(b.bootstrap, "keep", 2, len(acked)) == acked
    from confluent_kafka.admin import AdminClient
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for t in ("keep", "gone"):
        a.delete_topics([t])[t].result(30)
    assert wait_for(lambda: data() == [], timeout=30), data()
