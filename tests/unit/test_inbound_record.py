"""The inbound Kafka record (smartlock.stream.inbound): the bridge forwards the bytes it
received, with what the worker needs in headers; the worker decodes each message once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from smartlock.core.detector import Detector
from smartlock.core.limits import DetectionSettings
from smartlock.stream.inbound import (
    CLOCK,
    MAC,
    UNAUTHENTICATED,
    Forwarder,
    read_number,
    sign,
    verify,
)
from smartlock.stream.lock_table import LockTable
from smartlock.stream.processor import BatchProcessor, Record
from tests.builders import STREAM_KEY, Trip, synthetic_geofences

RECEIVED = datetime(2026, 11, 22, 8, 15, tzinfo=UTC) + timedelta(days=9)


def _fleet() -> list[tuple[str, dict[str, Any]]]:
    trip = Trip(lock_id="L1", declaration_id="D1", key="k1", container="CSQU3054383")
    trip.declare().event("sealed", at=(0, 0)).drive(0, 6).event("tamper", at=(0, 6))
    return trip.messages


def _processor() -> BatchProcessor:
    return BatchProcessor(
        Detector(DetectionSettings(), synthetic_geofences()),
        LockTable({}),
        stream_keys=[STREAM_KEY],
    )


def test_the_bridge_forwards_the_payload_bytes_with_topic_clock_and_bridge_in_headers() -> None:
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
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


def test_the_earlier_json_envelope_is_refused_it_carries_no_mac() -> None:
    """A record without headers (what a bridge before the MAC wrote, or anyone who can reach
    the topic) is dead-lettered, moves no clock and changes no trip."""
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
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
    assert tick is not None and [n for n, _ in tick.headers] == [MAC]
    new.append(Record(None, tick.value, 0, tick.headers))
    old.append(Record(None, tick.value, 0))  # a tick without its MAC
    authentic, processor = _processor().process(new), _processor()
    from_old = processor.process(old)
    assert any(o.kind == "alert" for o in authentic.outputs) and authentic.dead_letters == []
    assert from_old.outputs == [] and from_old.touched == {}
    assert processor.engine.clock(0) is None
    assert [d.reason for d in from_old.dead_letters] == [UNAUTHENTICATED] * len(old)
    assert [d.original for d in from_old.dead_letters] == [r.value for r in old]


def test_an_authentic_record_with_a_broken_header_is_dead_lettered_not_dropped() -> None:
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    topic, payload = _fleet()[0]
    [record] = forwarder.forward(topic, json.dumps(payload).encode(), RECEIVED).records
    headers = tuple((k, b"not a number" if k == CLOCK else v) for k, v in record.headers)
    tampered = _processor().process([Record(record.key, record.value, 0, headers)])
    assert [d.reason for d in tampered.dead_letters] == [UNAUTHENTICATED]
    resigned = sign(STREAM_KEY, record.key, record.value, tuple(h for h in headers if h[0] != MAC))
    result = _processor().process([Record(record.key, record.value, 0, resigned)])
    [dead] = result.dead_letters
    assert (dead.reason, dead.original) == ("invalid_record", record.value)


def test_a_message_the_worker_rejects_is_dead_lettered_with_the_bytes_as_received() -> None:
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    topic, payload = _fleet()[1]  # a lock message: sent twice, the second is a duplicate
    raw = json.dumps(payload, indent=2).encode()
    [first] = forwarder.forward(topic, raw, RECEIVED).records
    [again] = forwarder.forward(topic, raw, RECEIVED).records
    result = _processor().process([Record(r.key, r.value, 0, r.headers) for r in (first, again)])
    [dead] = result.dead_letters
    assert dead.reason == "duplicate"
    assert dead.original == raw


# ------------------------------------------------------------------ the record's MAC


def _one_record() -> tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]:
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    topic, payload = _fleet()[1]
    [record] = forwarder.forward(topic, json.dumps(payload).encode(), RECEIVED).records
    return record.key, record.value, record.headers


def test_the_mac_verifies_under_the_current_or_the_previous_key_only() -> None:
    key, value, headers = _one_record()
    assert verify([STREAM_KEY], key, value, headers) is None
    assert verify([b"new" * 11, STREAM_KEY], key, value, headers) is None  # grace period
    assert (
        verify([b"other" * 7], key, value, headers) == "wrong mac: not written with the stream key"
    )
    unsigned = tuple(h for h in headers if h[0] != MAC)
    assert verify([STREAM_KEY], key, value, unsigned) == "no mac header: not written by the bridge"
    assert verify([STREAM_KEY], key, value, (*headers, headers[-1])) == "malformed mac header"


def test_tampering_with_any_byte_of_key_value_or_a_header_is_refused() -> None:
    key, value, headers = _one_record()
    assert key is not None

    def flip(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    for i in range(len(key)):
        assert verify([STREAM_KEY], flip(key, i), value, headers) is not None
    for i in range(len(value)):
        assert verify([STREAM_KEY], key, flip(value, i), headers) is not None
    for h, (name, data) in enumerate(headers):
        for i in range(len(data)):
            changed = (*headers[:h], (name, flip(data, i)), *headers[h + 1 :])
            assert verify([STREAM_KEY], key, value, changed) is not None
        renamed = (*headers[:h], (name + "x", data), *headers[h + 1 :])
        assert verify([STREAM_KEY], key, value, renamed) is not None
    # No key is not an empty key; nothing can be added, dropped or moved between fields.
    assert verify([STREAM_KEY], None, value, headers) is not None
    assert verify([STREAM_KEY], key, value, (*headers, ("extra", b""))) is not None
    assert verify([STREAM_KEY], key + value[:1], value[1:], headers) is not None
    mac = dict(headers)[MAC]
    duplicated = (*headers[:-1], ("topic", b"locks/L9/telemetry"), (MAC, mac))
    assert verify([STREAM_KEY], key, value, duplicated) is not None


def test_a_tick_is_authenticated_too() -> None:
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    for topic, payload in _fleet():
        forwarder.forward(topic, json.dumps(payload).encode(), RECEIVED)
    tick = forwarder.tick(RECEIVED)
    assert tick is not None and verify([STREAM_KEY], None, tick.value, tick.headers) is None
    forged = tick.value.replace(b'"tick":', b'"tick":1').replace(b"1.", b"9.", 1)
    assert verify([STREAM_KEY], None, forged, tick.headers) is not None
