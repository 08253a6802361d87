"""Admin APIs against the real binary: AlterConfigs, IncrementalAlterConfigs, CreatePartitions
and DeleteRecords.

Each change is checked by its effect (a produce refused, a partition that takes records, a fetch
out of range), not only by the admin answer, and again after a restart where it must persist.
Clients: confluent-kafka's AdminClient and kafka-python's KafkaAdminClient; raw wire requests
(kafka_wire.py) for what the clients cannot send (duplicates, nulls, unknown operations,
flexible versions checked byte by byte).
"""
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, ResourceType)
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTopicPartition
from kafka.admin import ConfigResource as KConfigResource

from kafka_wire import (API_PRODUCE, API_VERSIONS, MESSAGE_TOO_LARGE, NONE, OFFSET_OUT_OF_RANGE,
                        TAGS, UNKNOWN_TOPIC_OR_PARTITION, Conn, Dec, Reader, array, carray, consume_all, create_topic, cstring,
                        fetch, i8, i16, i32, i64, nstring, parse_api_versions_v0, parse_produce_response,
                        produce_request, produce_values, record_batch, string)

API_DELETE_RECORDS, API_ALTER_CONFIGS, API_CREATE_PARTITIONS, API_INCREMENTAL_ALTER_CONFIGS = 21, 33, 37, 44
INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS, INVALID_REPLICA_ASSIGNMENT = 17, 37, 39
INVALID_CONFIG, INVALID_REQUEST, POLICY_VIOLATION = 40, 42, 44
TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3

COMMON = {"socket.timeout.ms": 10000, "socket.connection.setup.timeout.ms": 10000}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def admin(broker):
    return AdminClient(dict(COMMON, **{"bootstrap.servers": broker.bootstrap}))


def kadmin(broker):
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)


def kafka_error(future):
    with pytest.raises(KafkaException) as ei:
        future.result(timeout=20)
    return ei.value.args[0].code()


def describe(broker, topic):
    """{name: (value, source)} of a topic's configs, from DescribeConfigs via confluent-kafka."""
    a = admin(broker)  # keep the handle alive until the future resolves
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = a.describe_configs([res], request_timeout=15)[res].result(timeout=20)
    return {k: (e.value, ConfigSource(e.source).value) for k, e in configs.items()}


DYNAMIC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
DEFAULT = ConfigSource.DEFAULT_CONFIG.value


def incremental(broker, topic, *ops, validate_only=False):
    """Applies (name, op, value) changes to a topic with confluent-kafka; None on success,
    else the error code."""
    a = admin(broker)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(n, v, incremental_operation=op) for n, op, v in ops])
    try:
        return a.incremental_alter_configs([res], validate_only=validate_only, request_timeout=15)[res].result(timeout=20)
    except KafkaException as e:
        return e.args[0].code()


# ---------------------------------------------------------------------------------------------
# Raw wire: requests (non-flexible versions unless said) and responses
# ---------------------------------------------------------------------------------------------


def alter_configs_body(resources, validate_only=False):
    """resources: [(type, name, [(key, value_or_None)])] -> AlterConfigs v0/v1."""
    return array(resources, lambda r: i8(r[0]) + string(r[1]) +
                 array(r[2], lambda c: string(c[0]) + nstring(c[1]))) + i8(int(validate_only))


def incremental_body(resources, validate_only=False):
    """resources: [(type, name, [(key, op, value_or_None)])] -> IncrementalAlterConfigs v0."""
    return array(resources, lambda r: i8(r[0]) + string(r[1]) +
                 array(r[2], lambda c: string(c[0]) + i8(c[1]) + nstring(c[2]))) + i8(int(validate_only))


def parse_alter_configs_response(body):
    """[(error, message, type, name)] of an (Incremental)AlterConfigs non-flexible response."""
    r = Reader(body)
    r.i32()  # throttle
    out = r.array(lambda r: (r.i16(), r.nstring(), r.i8(), r.string()))
    assert r.remaining() == 0
    return out


def create_partitions_body(topics, validate_only=False):
    """topics: [(name, count, assignments_or_None)] -> CreatePartitions v0/v1."""
    return array(topics, lambda t: string(t[0]) + i32(t[1]) +
                 array(t[2], lambda a: array(a, i32))) + i32(10000) + i8(int(validate_only))


def parse_create_partitions_response(body):
    r = Reader(body)
    r.i32()
    out = r.array(lambda r: (r.string(), r.i16(), r.nstring()))
    assert r.remaining() == 0
    return out


def delete_records_body(topics):
    """topics: [(name, [(partition, offset)])] -> DeleteRecords v0/v1."""
    return array(topics, lambda t: string(t[0]) + array(t[1], lambda p: i32(p[0]) + i64(p[1]))) + i32(10000)


def parse_delete_records_response(body):
    """{(topic, partition): (low_watermark, error)}."""
    r = Reader(body)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            index, low, error = r.i32(), r.i64(), r.i16()
            out[(name, index)] = (low, error)
    assert r.remaining() == 0
    return out


def raw(broker, api, version, body):
    c = Conn(broker.port)
    try:
        return c.request(api, version, body)
    finally:
        c.close()


def produce_raw(broker, topic, values, partition=0, version=8, key=b"k"):
    """The partition's Produce v`version` answer for one batch of `values`, all with `key`
    (compacted topics refuse records without one)."""
    body = raw(broker, API_PRODUCE, version, produce_request([(topic, [(partition, record_batch(values, key=key))])]))
    return parse_produce_response(body, version)[(topic, partition)]


def watermarks(broker, topic, partition=0):
    """(earliest, latest) by ListOffsets, as a consumer asks for them."""
    c = Consumer(dict(COMMON, **{"bootstrap.servers": broker.bootstrap, "group.id": unique("wm")}))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# 0. Advertised
# ---------------------------------------------------------------------------------------------


def test_api_versions_advertise_the_admin_apis(broker):
    c = Conn(broker.port)
    error, keys = parse_api_versions_v0(c.request(API_VERSIONS, 0, b""))
    c.close()
    assert error == NONE
    assert keys[API_DELETE_RECORDS] == (0, 2)
    assert keys[API_ALTER_CONFIGS] == (0, 2)
    assert keys[API_CREATE_PARTITIONS] == (0, 3)
    assert keys[API_INCREMENTAL_ALTER_CONFIGS] == (0, 1)


# ---------------------------------------------------------------------------------------------
# 1. AlterConfigs and IncrementalAlterConfigs
# ---------------------------------------------------------------------------------------------


def test_incremental_alter_configs_take_effect_and_persist(make_broker):
    broker = make_broker()
    topic = unique("cfg")
    create_topic(broker, topic)
    big = [b"x" * 1500]
    assert produce_raw(broker, topic, big)["error"] == NONE

    assert incremental(broker, topic, ("max.message.bytes", AlterConfigOpType.SET, "1000"),
                       ("cleanup.policy", AlterConfigOpType.APPEND, "compact"),
                       ("retention.ms", AlterConfigOpType.SET, "123456")) is None
    d = describe(broker, topic)
    assert d["max.message.bytes"] == ("1000", DYNAMIC)
    assert d["cleanup.policy"] == ("delete,compact", DYNAMIC), "APPEND starts from the default"
    assert d["retention.ms"] == ("123456", DYNAMIC)
    assert d["retention.bytes"] == ("-1", DEFAULT)

    # The lowered limit applies to the next produce.
    p = produce_raw(broker, topic, big)
    assert p["error"] == MESSAGE_TOO_LARGE
    assert produce_raw(broker, topic, [b"small"])["error"] == NONE

    # SUBTRACT and DELETE; a key changed nowhere else stays.
    assert incremental(broker, topic, ("cleanup.policy", AlterConfigOpType.SUBTRACT, "delete"),
                       ("retention.ms", AlterConfigOpType.DELETE, None)) is None
    d = describe(broker, topic)
    assert d["cleanup.policy"] == ("compact", DYNAMIC)
    assert d["retention.ms"] == ("604800000", DEFAULT)
    assert d["max.message.bytes"] == ("1000", DYNAMIC)

    # validate_only changes nothing.
    assert incremental(broker, topic, ("max.message.bytes", AlterConfigOpType.SET, "5000"),
                       validate_only=True) is None
    assert describe(broker, topic)["max.message.bytes"] == ("1000", DYNAMIC)

    broker.restart()
    d = describe(broker, topic)
    assert d["max.message.bytes"] == ("1000", DYNAMIC)
    assert d["cleanup.policy"] == ("compact", DYNAMIC)
    assert d["retention.ms"] == ("604800000", DEFAULT)
    assert produce_raw(broker, topic, big)["error"] == MESSAGE_TOO_LARGE, "the limit survives a restart"

    # Raising it again lets the large batch in.
    assert incremental(broker, topic, ("max.message.bytes", AlterConfigOpType.DELETE, None)) is None
    assert describe(broker, topic)["max.message.bytes"][1] == DEFAULT
    assert produce_raw(broker, topic, big)["error"] == NONE


def test_alter_configs_replaces_the_whole_set(make_broker):
    broker = make_broker()
    topic = unique("legacy")
    create_topic(broker, topic)
    assert incremental(broker, topic, ("max.message.bytes", AlterConfigOpType.SET, "1000"),
                       ("retention.ms", AlterConfigOpType.SET, "5000")) is None

    a = admin(broker)
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"cleanup.policy": "compact"})
    assert a.alter_configs([res], validate_only=True, request_timeout=15)[res].result(timeout=20) is None
    assert describe(broker, topic)["retention.ms"] == ("5000", DYNAMIC), "validate_only changed nothing"

    assert a.alter_configs([res], request_timeout=15)[res].result(timeout=20) is None
    d = describe(broker, topic)
    assert d["cleanup.policy"] == ("compact", DYNAMIC)
    assert d["retention.ms"] == ("604800000", DEFAULT), "keys left out of AlterConfigs lose their override"
    assert d["max.message.bytes"][1] == DEFAULT
    assert produce_raw(broker, topic, [b"x" * 1500])["error"] == NONE

    broker.restart()
    d = describe(broker, topic)
    assert d["cleanup.policy"] == ("compact", DYNAMIC)
    assert d["retention.ms"][1] == DEFAULT and d["max.message.bytes"][1] == DEFAULT


def test_alter_configs_errors_are_per_resource(broker):
    good, other = unique("good"), unique("other")
    create_topic(broker, good)
    create_topic(broker, other)
    a = admin(broker)

    def inc(topic, name, op, value):
        return ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry(name, value, incremental_operation=op)])

    cases = [
        (inc(good, "retention.ms", AlterConfigOpType.SET, "777"), None),
        (inc(unique("missing"), "retention.ms", AlterConfigOpType.SET, "1"), KafkaError.UNKNOWN_TOPIC_OR_PART),
        (inc(other, "max.message.bytes", AlterConfigOpType.SET, "lots"), KafkaError.INVALID_CONFIG),
        (inc(other, "no.such.config", AlterConfigOpType.SET, "1"), KafkaError.INVALID_CONFIG),
        (inc(other, "cleanup.policy", AlterConfigOpType.SET, "shred"), KafkaError.INVALID_CONFIG),
        (inc(other, "max.message.bytes", AlterConfigOpType.APPEND, "1"), KafkaError.INVALID_CONFIG),
    ]
    for res, expected in cases:
        f = a.incremental_alter_configs([res], request_timeout=15)[res]
        if expected is None:
            assert f.result(timeout=20) is None
        else:
            assert kafka_error(f) == expected, res
    assert describe(broker, good)["retention.ms"] == ("777", DYNAMIC)
    assert all(src == DEFAULT for _, src in describe(broker, other).values()), "failed changes left no trace"

    # Several resources in one request: each gets its own answer.
    both = [inc(good, "retention.ms", AlterConfigOpType.SET, "888"), inc(other, "retention.ms", AlterConfigOpType.SET, "x")]
    fs = a.incremental_alter_configs(both, request_timeout=15)
    assert fs[both[0]].result(timeout=20) is None
    assert kafka_error(fs[both[1]]) == KafkaError.INVALID_CONFIG
    assert describe(broker, good)["retention.ms"] == ("888", DYNAMIC)

    # Legacy AlterConfigs: an unknown topic, a bad value.
    res = ConfigResource(ResourceType.TOPIC, unique("missing"), set_config={"retention.ms": "1"})
    assert kafka_error(a.alter_configs([res], request_timeout=15)[res]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    res = ConfigResource(ResourceType.TOPIC, other, set_config={"retention.bytes": "big"})
    assert kafka_error(a.alter_configs([res], request_timeout=15)[res]) == KafkaError.INVALID_CONFIG


def test_broker_configs_cannot_change_dynamically(broker):
    a = admin(broker)
    res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("num.partitions", "3", incremental_operation=AlterConfigOpType.SET)])
    assert kafka_error(a.incremental_alter_configs([res], request_timeout=15)[res]) == KafkaError.INVALID_REQUEST
    res = ConfigResource(ResourceType.BROKER, "1", set_config={"message.max.bytes": "100"})
    assert kafka_error(a.alter_configs([res], request_timeout=15)[res]) == KafkaError.INVALID_REQUEST

    # Wire level: the messages, the other broker ids, loggers, unknown types.
    def answer(api, version, body):
        return [(e, m) for e, m, _, _ in parse_alter_configs_response(raw(broker, api, version, body))]

    [(e, m)] = answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([(BROKER, "1", [("num.partitions", SET, "3"), ("log.retention.ms", SET, "1")])]))
    assert e == INVALID_REQUEST and m == "Cannot update these configs dynamically: Set(num.partitions, log.retention.ms)"
    # Removing a dynamic value that cannot exist changes nothing: fine, as in Kafka.
    assert answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([(BROKER, "1", [("num.partitions", DELETE, None)])])) == [(NONE, None)]
    assert answer(API_ALTER_CONFIGS, 0, alter_configs_body([(BROKER, "", [])])) == [(NONE, None)]
    [(e, m)] = answer(API_ALTER_CONFIGS, 1, alter_configs_body([(BROKER, "2", [("num.partitions", "3")])]))
    assert e == INVALID_REQUEST and "expected 1" in m
    [(e, m)] = answer(API_ALTER_CONFIGS, 1, alter_configs_body([(BROKER, "one", [("num.partitions", "3")])]))
    assert e == INVALID_REQUEST and "must be an integer" in m
    [(e, m)] = answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([(BROKER_LOGGER, "1", [("kafka.server", SET, "DEBUG")])]))
    assert e == INVALID_CONFIG and "does not exist" in m
    [(e, _)] = answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([(BROKER_LOGGER, "1", [("root", APPEND, "DEBUG")])]))
    assert e == INVALID_REQUEST
    [(e, _)] = answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([(BROKER_LOGGER, "2", [("root", SET, "DEBUG")])]))
    assert e == INVALID_REQUEST
    [(e, m)] = answer(API_ALTER_CONFIGS, 0, alter_configs_body([(BROKER_LOGGER, "1", [("root", "DEBUG")])]))
    assert e == INVALID_REQUEST and m == "Unknown resource type 8"
    [(e, _)] = answer(API_ALTER_CONFIGS, 0, alter_configs_body([(99, "x", [("a", "b")])]))
    assert e == INVALID_REQUEST
    # The broker is still fine.
    assert produce_values(broker, unique("after"), [b"ok"]) == [(0, b"ok")]


def test_alter_configs_request_errors_clients_cannot_send(broker):
    topic = unique("wire")
    create_topic(broker, topic)

    def answer(api, version, body):
        return [(e, m) for e, m, _, _ in parse_alter_configs_response(raw(broker, api, version, body))]

    # The same resource twice: both answered INVALID_REQUEST, neither applied.
    got = answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([
        (TOPIC, topic, [("retention.ms", SET, "1")]), (TOPIC, topic, [("retention.ms", SET, "2")])]))
    assert [e for e, _ in got] == [INVALID_REQUEST, INVALID_REQUEST]
    got = answer(API_ALTER_CONFIGS, 0, alter_configs_body([
        (TOPIC, topic, [("retention.ms", "1")]), (TOPIC, topic, [("retention.ms", "2")])]))
    assert [e for e, _ in got] == [INVALID_REQUEST, INVALID_REQUEST]
    # The same key twice; a null value to SET; a null in legacy AlterConfigs; an unknown op.
    for api, body in [
        (API_INCREMENTAL_ALTER_CONFIGS, incremental_body([(TOPIC, topic, [("retention.ms", SET, "1"), ("retention.ms", SET, "2")])])),
        (API_ALTER_CONFIGS, alter_configs_body([(TOPIC, topic, [("retention.ms", "1"), ("retention.ms", "2")])])),
        (API_INCREMENTAL_ALTER_CONFIGS, incremental_body([(TOPIC, topic, [("retention.ms", SET, None)])])),
        (API_ALTER_CONFIGS, alter_configs_body([(TOPIC, topic, [("retention.ms", None)])])),
        (API_INCREMENTAL_ALTER_CONFIGS, incremental_body([(TOPIC, topic, [("retention.ms", 7, "1")])])),
        (API_INCREMENTAL_ALTER_CONFIGS, incremental_body([(TOPIC, "", [("retention.ms", SET, "1")])])),
    ]:
        [(e, m)] = answer(api, 0, body)
        assert e == INVALID_REQUEST, (body, e, m)
        assert m
    [(e, _)] = answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([(TOPIC, "bad/name", [("retention.ms", SET, "1")])]))
    assert e == INVALID_TOPIC_EXCEPTION
    # Kafka validates before it looks the topic up.
    [(e, _)] = answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([(TOPIC, unique("none"), [("retention.ms", SET, "x")])]))
    assert e == INVALID_CONFIG
    [(e, m)] = answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([(TOPIC, topic, [("retention.ms", SUBTRACT, "1")])]))
    assert e == INVALID_CONFIG and m == "Can't SUBTRACT to key retention.ms because its type is not LIST."
    # DELETE of a key that is not set (even one unknown to the broker) is not an error.
    assert answer(API_INCREMENTAL_ALTER_CONFIGS, 0, incremental_body([(TOPIC, topic, [("retention.ms", DELETE, None), ("x.y", DELETE, None)])])) == [(NONE, None)]
    # None of it changed anything.
    assert all(src == DEFAULT for _, src in describe(broker, topic).values())
    # Success with a message-less answer, at v1 too.
    assert answer(API_ALTER_CONFIGS, 1, alter_configs_body([(TOPIC, topic, [("retention.ms", "42")])])) == [(NONE, None)]
    assert describe(broker, topic)["retention.ms"] == ("42", DYNAMIC)


def test_kafka_python_alter_configs(make_broker):
    broker = make_broker()
    topic = unique("kp-cfg")
    create_topic(broker, topic)
    a = kadmin(broker)
    try:
        # IncrementalAlterConfigs (the default against a broker that advertises it).
        ok = {"topic": {topic: "OK"}}
        assert a.alter_configs([KConfigResource("TOPIC", topic, configs={"retention.ms": "3600000", "max.message.bytes": "2000"})]) == ok
        d = describe(broker, topic)
        assert d["retention.ms"] == ("3600000", DYNAMIC) and d["max.message.bytes"] == ("2000", DYNAMIC)
        # kafka-python reads the overrides back from DescribeConfigs.
        described = a.describe_configs([KConfigResource("TOPIC", topic)])["topic"][topic]
        assert described["max.message.bytes"]["value"] == "2000"
        assert described["max.message.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        # AlterConfigs (legacy): kafka-python adds the other overrides itself, so both remain.
        assert a.alter_configs([KConfigResource("TOPIC", topic, configs={"retention.ms": "60000"})], incremental=False) == ok
        d = describe(broker, topic)
        assert d["retention.ms"] == ("60000", DYNAMIC) and d["max.message.bytes"] == ("2000", DYNAMIC)
        assert a.reset_configs([KConfigResource("TOPIC", topic, configs=["retention.ms"])]) == ok
        assert describe(broker, topic)["retention.ms"][1] == DEFAULT
        got = a.alter_configs([KConfigResource("TOPIC", topic, configs={"max.message.bytes": "-5"})])
        assert "InvalidConfigurationError" in got["topic"][topic], got
    finally:
        a.close()
    broker.restart()
    d = describe(broker, topic)
    assert d["max.message.bytes"] == ("2000", DYNAMIC) and d["retention.ms"][1] == DEFAULT


# ---------------------------------------------------------------------------------------------
# 2. CreatePartitions
# ---------------------------------------------------------------------------------------------


def partition_count(broker, topic):
    return len(admin(broker).list_topics(topic, timeout=10).topics[topic].partitions)


def test_create_partitions_grows_a_topic_that_clients_use(make_broker):
    broker = make_broker()
    topic = unique("grow")
    create_topic(broker, topic)
    produce_values(broker, topic, [b"p0-a"])
    a = admin(broker)

    fs = a.create_partitions([NewPartitions(topic, 3)], validate_only=True, request_timeout=15)
    assert fs[topic].result(timeout=20) is None
    assert partition_count(broker, topic) == 1, "validate_only created nothing"

    fs = a.create_partitions([NewPartitions(topic, 3)], request_timeout=15)
    assert fs[topic].result(timeout=20) is None
    md = a.list_topics(topic, timeout=10).topics[topic]
    assert sorted(md.partitions) == [0, 1, 2]
    assert all(p.leader == 1 and p.error is None for p in md.partitions.values())

    # The new partitions take records and serve them.
    assert produce_values(broker, topic, [b"p2-a", b"p2-b"], partition=2) == [(0, b"p2-a"), (1, b"p2-b")]
    assert produce_values(broker, topic, [b"p1-a"], partition=1) == [(0, b"p1-a")]
    assert consume_all(broker, topic, partition=2) == [(0, b"p2-a"), (1, b"p2-b")]

    # With a manual assignment naming this broker.
    fs = a.create_partitions([NewPartitions(topic, 4, [[1]])], request_timeout=15)
    assert fs[topic].result(timeout=20) is None
    assert partition_count(broker, topic) == 4

    broker.restart()
    assert partition_count(broker, topic) == 4
    assert consume_all(broker, topic, partition=2) == [(0, b"p2-a"), (1, b"p2-b")]
    assert consume_all(broker, topic, partition=0) == [(0, b"p0-a")]
    assert produce_values(broker, topic, [b"p3-a"], partition=3) == [(0, b"p3-a")]


def test_create_partitions_errors(broker):
    topic = unique("cp-err")
    create_topic(broker, topic, partitions=2)
    a = admin(broker)

    def err(np, **kw):
        return kafka_error(a.create_partitions([np], request_timeout=15, **kw)[np.topic])

    assert err(NewPartitions(topic, 2)) == KafkaError.INVALID_PARTITIONS
    assert err(NewPartitions(topic, 1)) == KafkaError.INVALID_PARTITIONS
    assert err(NewPartitions(unique("missing"), 3)) == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert err(NewPartitions(topic, 3, [[2]])) == KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert err(NewPartitions(topic, 4, [[1]])) == KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert err(NewPartitions(topic, 3, [[1, 2]])) == KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert err(NewPartitions(topic, 3, [[2]]), validate_only=True) == KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert partition_count(broker, topic) == 2

    # Wire level: messages, duplicates, the replica lists a client would not build.
    def answer(topics, version=0, validate_only=False):
        return parse_create_partitions_response(raw(broker, API_CREATE_PARTITIONS, version, create_partitions_body(topics, validate_only)))

    [(name, e, m)] = answer([(topic, 2, None)])
    assert (name, e, m) == (topic, INVALID_PARTITIONS, "Topic already has 2 partition(s).")
    [(_, e, m)] = answer([(topic, 1, None)], version=1)
    assert e == INVALID_PARTITIONS and "would not be an increase" in m
    got = answer([(topic, 5, None), (topic, 6, None)])
    assert got == [(topic, INVALID_REQUEST, "Duplicate topic name.")], "one answer per duplicated name"
    for assignments in ([], [[1], [1]], [[]], [[1, 1]], [[-1]]):
        [(_, e, _)] = answer([(topic, 3, assignments)])
        assert e == INVALID_REPLICA_ASSIGNMENT, assignments
    [(_, e, m)] = answer([(topic, 1 << 30, None)])
    assert e == POLICY_VIOLATION, m
    # One good and one bad topic: each on its own.
    other = unique("cp-ok")
    create_topic(broker, other)
    got = dict((n, e) for n, e, _ in answer([(other, 2, None), (unique("missing"), 2, None)]))
    assert got[other] == NONE and UNKNOWN_TOPIC_OR_PARTITION in got.values()
    assert partition_count(broker, topic) == 2 and partition_count(broker, other) == 2


def test_kafka_python_create_partitions(broker):
    topic = unique("kp-cp")
    create_topic(broker, topic)
    a = kadmin(broker)
    try:
        a.create_partitions({topic: 3})
        assert partition_count(broker, topic) == 3
        a.create_partitions({topic: {"count": 4, "assignments": [[1]]}})
        assert partition_count(broker, topic) == 4
        with pytest.raises(Exception) as ei:
            a.create_partitions({topic: 2})
        assert "InvalidPartitions" in type(ei.value).__name__ or "INVALID_PARTITIONS" in str(ei.value).upper()
    finally:
        a.close()
    assert produce_values(broker, topic, [b"x"], partition=3) == [(0, b"x")]


# ---------------------------------------------------------------------------------------------
# 3. DeleteRecords
# ---------------------------------------------------------------------------------------------


def test_delete_records_moves_the_log_start_offset(make_broker):
    broker = make_broker()
    topic = unique("trim")
    create_topic(broker, topic)
    values = [f"v{i}".encode() for i in range(10)]
    produce_values(broker, topic, values)
    a = admin(broker)

    fs = a.delete_records([TopicPartition(topic, 0, 4)], request_timeout=15, operation_timeout=10)
    [(tp, f)] = fs.items()
    assert f.result(timeout=20).low_watermark == 4
    assert watermarks(broker, topic) == (4, 10)

    # Fetch below it: OFFSET_OUT_OF_RANGE, with the new log start offset.
    c = Conn(broker.port)
    p = fetch(c, topic, 0, 2)
    assert p["error"] == OFFSET_OUT_OF_RANGE and p["log_start_offset"] == 4
    p = fetch(c, topic, 0, 4)
    assert p["error"] == NONE and p["log_start_offset"] == 4
    c.close()
    # A consumer that starts at 0 with auto.offset.reset=earliest skips ahead.
    assert consume_all(broker, topic, start=0) == [(i, values[i]) for i in range(4, 10)]
    # Produce answers carry it.
    p = produce_raw(broker, topic, [b"v10"])
    assert p["error"] == NONE and p["base_offset"] == 10 and p["log_start_offset"] == 4

    # Lower than the start: nothing changes, the answer is the current start.
    fs = a.delete_records([TopicPartition(topic, 0, 2)], request_timeout=15)
    assert list(fs.values())[0].result(timeout=20).low_watermark == 4
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    fs = a.delete_records([TopicPartition(topic, 0, 12)], request_timeout=15)
    assert kafka_error(list(fs.values())[0]) == KafkaError.OFFSET_OUT_OF_RANGE
    assert watermarks(broker, topic) == (4, 11)

    broker.restart()
    assert watermarks(broker, topic) == (4, 11), "the start offset survives a restart"
    c = Conn(broker.port)
    assert fetch(c, topic, 0, 3)["error"] == OFFSET_OUT_OF_RANGE
    c.close()

    # -1: up to the high watermark.
    a = admin(broker)
    fs = a.delete_records([TopicPartition(topic, 0, -1)], request_timeout=15)
    assert list(fs.values())[0].result(timeout=20).low_watermark == 11
    assert watermarks(broker, topic) == (11, 11)
    assert consume_all(broker, topic, start=0) == []
    produce_values(broker, topic, [b"after"])
    assert consume_all(broker, topic, start=0) == [(11, b"after")]


def test_delete_records_errors(broker):
    topic, compacted = unique("dr-err"), unique("dr-compact")
    create_topic(broker, topic, partitions=2)
    create_topic(broker, compacted)
    assert incremental(broker, compacted, ("cleanup.policy", AlterConfigOpType.SET, "compact")) is None
    produce_values(broker, topic, [b"a", b"b", b"c"])
    produce_values(broker, compacted, [b"a", b"b"], key=b"k")

    got = parse_delete_records_response(raw(broker, API_DELETE_RECORDS, 1, delete_records_body([
        (topic, [(0, 2), (1, 0), (5, 1)]),
        (compacted, [(0, 1)]),
        (unique("missing"), [(0, 0)]),
    ])))
    assert got[(topic, 0)] == (2, NONE)
    assert got[(topic, 1)] == (0, NONE), "an empty partition trimmed to 0"
    assert got[(topic, 5)] == (-1, UNKNOWN_TOPIC_OR_PARTITION)
    assert got[(compacted, 0)] == (-1, POLICY_VIOLATION), "compact-only topics refuse, as in Kafka"
    assert [v for k, v in got.items() if k[0] not in (topic, compacted)] == [(-1, UNKNOWN_TOPIC_OR_PARTITION)]
    got = parse_delete_records_response(raw(broker, API_DELETE_RECORDS, 0, delete_records_body([(topic, [(0, 4), (1, -7)])])))
    assert got[(topic, 0)] == (-1, OFFSET_OUT_OF_RANGE)
    assert got[(topic, 1)] == (-1, OFFSET_OUT_OF_RANGE)
    assert watermarks(broker, topic) == (2, 3)
    assert watermarks(broker, compacted) == (0, 2)


def test_kafka_python_delete_records(broker):
    topic = unique("kp-dr")
    create_topic(broker, topic)
    produce_values(broker, topic, [b"a", b"b", b"c", b"d"])
    a = kadmin(broker)
    try:
        out = a.delete_records({KTopicPartition(topic, 0): 3})
        [(tp, r)] = out.items()
        assert r["low_watermark"] == 3 and r["error_code"] == 0
        with pytest.raises(Exception):
            a.delete_records({KTopicPartition(topic, 0): 9})
    finally:
        a.close()
    assert watermarks(broker, topic) == (3, 4)


# ---------------------------------------------------------------------------------------------
# 4. Flexible versions, byte by byte
# ---------------------------------------------------------------------------------------------


def flex(broker, api, version, body):
    """Sends a flexible request (header v2: header v1 plus empty tags) and returns a reader
    past the response header's tags."""
    r = Dec(raw(broker, api, version, TAGS + body), flexible=True)
    r.tags()
    return r


def test_flexible_versions(broker):
    topic = unique("flex")
    create_topic(broker, topic)
    produce_values(broker, topic, [b"a", b"b", b"c"])

    # IncrementalAlterConfigs v1.
    r = flex(broker, API_INCREMENTAL_ALTER_CONFIGS, 1, carray([
        (TOPIC, topic, [("retention.ms", SET, "99")]), (TOPIC, unique("nope"), [("retention.ms", SET, "1")])],
        lambda res: i8(res[0]) + cstring(res[1]) + carray(res[2], lambda c: cstring(c[0]) + i8(c[1]) + cstring(c[2]) + TAGS) + TAGS)
        + i8(0) + TAGS)
    r.i32()
    got = r.array(lambda r: (r.i16(), r.nstring(), r.i8(), r.nstring(), r.tags())[:4])
    r.tags()
    assert r.remaining() == 0
    assert got[0] == (NONE, None, TOPIC, topic)
    assert got[1][0] == UNKNOWN_TOPIC_OR_PARTITION
    assert describe(broker, topic)["retention.ms"] == ("99", DYNAMIC)

    # AlterConfigs v2.
    r = flex(broker, API_ALTER_CONFIGS, 2, carray([(TOPIC, topic, [("retention.ms", "98")])],
        lambda res: i8(res[0]) + cstring(res[1]) + carray(res[2], lambda c: cstring(c[0]) + cstring(c[1]) + TAGS) + TAGS)
        + i8(0) + TAGS)
    r.i32()
    got = r.array(lambda r: (r.i16(), r.nstring(), r.i8(), r.nstring(), r.tags())[:4])
    r.tags()
    assert r.remaining() == 0 and got == [(NONE, None, TOPIC, topic)]
    assert describe(broker, topic)["retention.ms"] == ("98", DYNAMIC)

    # CreatePartitions v3 (null assignments), and an error with its message.
    r = flex(broker, API_CREATE_PARTITIONS, 3, carray([(topic, 2, None), (topic + "x", 2, None)],
        lambda t: cstring(t[0]) + i32(t[1]) + carray(t[2], lambda a: carray(a, i32) + TAGS) + TAGS)
        + i32(10000) + i8(0) + TAGS)
    r.i32()
    got = r.array(lambda r: (r.nstring(), r.i16(), r.nstring(), r.tags())[:3])
    r.tags()
    assert r.remaining() == 0
    assert got[0] == (topic, NONE, None)
    assert got[1][1] == UNKNOWN_TOPIC_OR_PARTITION
    assert partition_count(broker, topic) == 2

    # DeleteRecords v2.
    r = flex(broker, API_DELETE_RECORDS, 2, carray([(topic, [(0, 2), (1, 0)])],
        lambda t: cstring(t[0]) + carray(t[1], lambda p: i32(p[0]) + i64(p[1]) + TAGS) + TAGS) + i32(10000) + TAGS)
    r.i32()
    got = r.array(lambda r: (r.nstring(), r.array(lambda r: (r.i32(), r.i64(), r.i16(), r.tags())[:3]), r.tags())[:2])
    r.tags()
    assert r.remaining() == 0
    assert got == [(topic, [(0, 2, NONE), (1, 0, NONE)])]
    assert watermarks(broker, topic) == (2, 3)
