"""Catch-up reads: a Fetch whose partitions lie in objects, not in the LogCache."""
import time
import uuid

from kafka_wire import (API_FETCH, NONE, Conn, create_topic, fetch_request, parse_batches, parse_fetch_response,
                        produce_values)

PARTITIONS = 8
GET_DELAY_S = 1.0


def test_one_fetch_gets_the_objects_of_all_its_partitions_at_once(make_broker):
    """With every GET delayed by a second, one Fetch of eight partitions, each in an object
    of its own and none in memory, is answered in about a second: their GETs run at once.
    One after another they took eight. Every partition gets its records, in order."""
    broker = make_broker(settings={"log.cache.bytes": "0", "object.store.fault.get.delay.ms": str(int(GET_DELAY_S * 1000))})
    topic = f"catchup-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic, PARTITIONS)
    for p in range(PARTITIONS):  # acked one partition at a time: one WAL object each
        produce_values(broker, topic, [f"p{p}-{i}".encode() for i in range(20)], partition=p)
    c = Conn(broker.port, timeout=60)
    try:
        start = time.monotonic()
        body = c.request(API_FETCH, 11, fetch_request(11, [(topic, [(p, 0) for p in range(PARTITIONS)])],
                                                      max_bytes=8 << 20, partition_max_bytes=1 << 20))
        took = time.monotonic() - start
    finally:
        c.close()
    got = parse_fetch_response(body, 11)
    for p in range(PARTITIONS):
        part = got[(topic, p)]
        assert part["error"] == NONE, f"partition {p}: error {part['error']}"
        assert [(o, v) for o, v, _ in parse_batches(part["records"])] == [(i, f"p{p}-{i}".encode()) for i in range(20)]
    assert took < PARTITIONS * GET_DELAY_S / 2, f"the fetch took {took:.1f} s: its partitions' GETs ran one after another"
