"""The inbound Kafka record (smartlock.stream.inbound): the bridge forwards the bytes it
received, with what the worker needs in headers; the worker decodes each message once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from smartlock.core.detector import Detector
from smartlock.core.limits import DetectionSettings
from smartlock.stream.inbound import CLOCK, Forwarder, read_number
from smartlock.stream.lock_table import LockTable
from smartlock.stream.processor import BatchProcessor, Record
from tests.builders import Trip, synthetic_geofences

RECEIVED = datetime(2026, 11, 22, 8, 15, tzinfo=UTC) + timedelta(days=9)


def _fleet() -> list[tuple[str, dict[str, Any]]]:
    trip = Trip(lock_id="L1", declaration_id="D1", key="k1", container="CSQU3054383")
    trip.declare().event("sealed", at=(0, 0)).drive(0, 6).event("tamper", at=(0, 6))
    return trip.messages


def _processor() -> BatchProcessor:
    return BatchProcessor(Detector(DetectionSettings(), synthetic_geofences()), LockTable({}))


def test_the_bridge_forwards_the_payload_bytes_with_topic_clock_and_bridge_in_headers() -> None:
    forwarder = Forwarder("b1")
    payloads = []
    for topic, payload in _fleet():
        raw = json.dumps(payload, indent=1).encode()  # any spacing: the bytes go unchanged
        clock = forwarder.clock
        forwarded = forwarder.forward(topic, raw, RECEIVED)
        assert forwarded.dead is None
        for record in forwarded.records:
            headers = dict(record.headers)
            assert record.value == raw
            assert headers["topic"] == topic.encode()
            assert headers["bridge"] == b"b1"
            assert read_number(headers[CLOCK]) == clock
            assert read_number(headers["received_at"]) == RECEIVED.timestamp()
            payloads.append(record)
    assert {r.key for r in payloads} == {b"L1"}


def test_the_earlier_json_envelope_is_still_read_with_the_same_outputs() -> None:
    """Records an older bridge left in the topic are judged as before an upgrade."""
    forwarder = Forwarder("b1")
    new: list[Record] = []
    old: list[Record] = []
    for topic, payload in _fleet():
        clock = forwarder.clock
        forwarded = forwarder.forward(topic, json.dumps(payload).encode(), RECEIVED)
        for r in forwarded.records:
            new.append(Record(r.key, r.value, 0, r.headers))
            envelope = {
                "topic": topic,
                "payload": payload,
                "clock": clock,
                "bridge": "b1",
                "received_at": RECEIVED.timestamp(),
            }
            old.append(Record(r.key, json.dumps(envelope).encode(), 0))
    tick = forwarder.tick(RECEIVED)
    assert tick is not None and tick.headers == ()
    new.append(Record(None, tick.value, 0))
    old.append(Record(None, tick.value, 0))
    from_new, from_old = _processor().process(new), _processor().process(old)
    assert [o.line() for o in from_new.outputs] == [o.line() for o in from_old.outputs]
    assert any(o.kind == "alert" for o in from_new.outputs)
    assert from_new.dead_letters == from_old.dead_letters == []


def test_a_record_with_a_broken_header_is_dead_lettered_not_dropped() -> None:
    forwarder = Forwarder("b1")
    topic, payload = _fleet()[0]
    [record] = forwarder.forward(topic, json.dumps(payload).encode(), RECEIVED).records
    headers = [(k, b"not a number" if k == CLOCK else v) for k, v in record.headers]
    result = _processor().process([Record(record.key, record.value, 0, headers)])
    [dead] = result.dead_letters
    assert (dead.reason, dead.original) == ("invalid_record", record.value)


def test_a_message_the_worker_rejects_is_dead_lettered_with_the_bytes_as_received() -> None:
    forwarder = Forwarder("b1")
    topic, payload = _fleet()[1]  # a lock message: sent twice, the second is a duplicate
    raw = json.dumps(payload, indent=2).encode()
    [first] = forwarder.forward(topic, raw, RECEIVED).records
    [again] = forwarder.forward(topic, raw, RECEIVED).records
    result = _processor().process([Record(r.key, r.value, 0, r.headers) for r in (first, again)])
    [dead] = result.dead_letters
    assert dead.reason == "duplicate"
    assert dead.original == raw
