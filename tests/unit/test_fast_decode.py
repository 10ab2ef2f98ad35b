"""The fast door for lock messages decides exactly as the ordinary one (issue 13).

``decode`` and ``smartlock evaluate`` take well-formed lock messages through orjson and a
few exact checks instead of the strict stdlib parser and pydantic. These tests feed the
same text both ways: what the fast path accepts must be the very model the ordinary path
builds, and whatever it does not vouch for must get the ordinary path's answer or error.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlock.contract.codec import (
    MAX_PAYLOAD_BYTES,
    Envelope,
    decode,
    fast_trace_line,
    load_json,
)
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.errors import MessageError

TOPIC = "locks/LK-01/telemetry"
EVENTS = "locks/LK-01/events"
GOOD = (
    '{"lock_id":"LK-01","seq":7,"ts":"2026-11-22T08:00:06Z","lat":29.3,"lon":120.1,'
    '"speed_kmh":80.5,"hdop":0.9,"seal":"sealed","battery_pct":71.0}'
)


def _ordinary(topic: str, text: str, received_at: datetime | None = None) -> Any:
    """The ordinary door: strict stdlib parse, then the pydantic model."""
    try:
        raw = load_json(text, topic)
        if not isinstance(raw, dict):  # as decode says of text that is not an object
            return ("error", topic, "not_an_object", "payload must be a JSON object")
        return decode(topic, raw, received_at)
    except MessageError as exc:
        return ("error", exc.topic, exc.reason, exc.detail)


def _fast(topic: str, text: str, received_at: datetime | None = None) -> Any:
    try:
        return decode(topic, text, received_at)
    except MessageError as exc:
        return ("error", exc.topic, exc.reason, exc.detail)


def _same(a: Any, b: Any) -> None:
    if isinstance(a, Envelope) and isinstance(b, Envelope):
        assert a.topic == b.topic and a.raw == b.raw
        assert type(a.message) is type(b.message)
        assert a.message == b.message
        assert a.message.model_fields_set == b.message.model_fields_set
        assert a.message.model_dump() == b.message.model_dump()
        assert list(a.message.__dict__) == list(b.message.__dict__)
    else:
        assert a == b


CASES = [
    (TOPIC, GOOD),
    (TOPIC, GOOD.replace('"hdop":0.9,', '"hdop":null,')),
    (TOPIC, GOOD.replace('"lat":29.3', '"lat":29')),  # an int where a float goes
    (TOPIC, GOOD.replace('"seq":7', '"seq":7.0')),
    (TOPIC, GOOD.replace('"seq":7', '"seq":true')),
    (TOPIC, GOOD.replace('"seq":7', '"seq":-1')),
    (TOPIC, GOOD.replace('"seq":7', '"seq":9007199254740992')),
    (TOPIC, GOOD.replace('"seq":7', '"seq":123456789012345678901234567890')),
    (TOPIC, GOOD.replace('"seq":7', '"seq":' + "9" * 50)),
    (TOPIC, GOOD.replace('"lat":29.3', '"lat":1e400')),
    (TOPIC, GOOD.replace('"lat":29.3', '"lat":NaN')),
    (TOPIC, GOOD.replace('"lat":29.3', '"lat":"29.3"')),
    (TOPIC, GOOD.replace('"lat":29.3', '"lat":90.0000001')),
    (TOPIC, GOOD.replace('"lat":29.3', '"lat":-0.0')),
    (TOPIC, GOOD.replace('"lock_id":"LK-01"', '"lock_id":" LK-01"')),
    (TOPIC, GOOD.replace('"lock_id":"LK-01"', '"lock_id":"LK-02"')),
    (TOPIC, GOOD.replace('"lock_id":"LK-01"', '"lock_id":"LK\\u002d01"')),
    (TOPIC, GOOD.replace('"seal":"sealed"', '"seal":"SEALED"')),
    (TOPIC, GOOD.replace('"seal":"sealed"', '"seal":["sealed"]')),
    (TOPIC, GOOD.replace('"seal":"sealed"', '"seal":"sealed","seal":"tampered"')),
    (TOPIC, GOOD.replace('"seq":7', '"seq":7,"seq":8')),
    (TOPIC, GOOD.replace('"lock_id":"LK-01"', '"lock_id":"LK-01","lock_id":"LK-01"')),
    (TOPIC, GOOD.replace('"ts":"2026-11-22T08:00:06Z"', '"ts":"2026-11-22T08:00:06+08:00"')),
    (TOPIC, GOOD.replace('"ts":"2026-11-22T08:00:06Z"', '"ts":"2026-11-22T08:00:06.5+00:00"')),
    (TOPIC, GOOD.replace('"ts":"2026-11-22T08:00:06Z"', '"ts":"2026-11-22T08:00:06Z\\n"')),
    (TOPIC, GOOD.replace('"ts":"2026-11-22T08:00:06Z"', '"ts":"2026-11-22 08:00:06"')),
    (TOPIC, GOOD.replace('"battery_pct":71.0', '"battery_pct":71.0,"extra":1')),
    (TOPIC, GOOD.replace('"battery_pct":71.0', '"battery_pct":101.0')),
    (TOPIC, GOOD.replace('"battery_pct":71.0', '"battery_pct":71.0,"sig":"' + "a" * 64 + '"')),
    (TOPIC, GOOD.replace('"battery_pct":71.0', '"battery_pct":71.0,"sig":"' + "A" * 64 + '"')),
    (TOPIC, GOOD.replace(',"lon":120.1', "")),
    (TOPIC, " " + GOOD),
    (TOPIC, "\ufeff" + GOOD),
    (TOPIC, GOOD + " x"),
    (TOPIC, "[" + GOOD + "]"),
    (TOPIC, GOOD.replace("{", '{"a":{"b":{"c":1}},', 1)),
    ("locks/LK-01/telemetry/", GOOD),
    ("locks/LK-02/telemetry", GOOD),
    (EVENTS, '{"lock_id":"LK-01","seq":3,"ts":"2026-11-22T08:00:06Z","type":"tamper"}'),
    (
        EVENTS,
        '{"lock_id":"LK-01","seq":3,"ts":"2026-11-22T08:00:06Z","type":"tamper",'
        '"lat":29.0,"lon":120.0}',
    ),
    (EVENTS, '{"lock_id":"LK-01","seq":3,"ts":"2026-11-22T08:00:06Z","type":"tamper","lat":29.0}'),
    (
        EVENTS,
        '{"lock_id":"LK-01","seq":3,"ts":"2026-11-22T08:00:06Z","type":"tamper","lat":null,'
        '"lon":null}',
    ),
    (EVENTS, '{"lock_id":"LK-01","seq":3,"ts":"2026-11-22T08:00:06Z","type":"opened"}'),
    (TOPIC.replace("telemetry", "events"), GOOD),
]


@pytest.mark.parametrize(("topic", "text"), CASES)
def test_the_fast_door_answers_as_the_ordinary_one(topic: str, text: str) -> None:
    _same(_fast(topic, text), _ordinary(topic, text))
    _same(_fast(topic, text.encode("utf-8")), _ordinary(topic, text))  # type: ignore[arg-type]


def test_a_future_ts_is_refused_the_same_way() -> None:
    early = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    _same(_fast(TOPIC, GOOD, early), _ordinary(TOPIC, GOOD, early))
    assert _fast(TOPIC, GOOD, early)[2] == "future_ts"


def test_a_trace_line_with_a_repeated_key_is_left_to_the_strict_parser() -> None:
    payload = json.loads(GOOD)
    line = json.dumps({"topic": TOPIC, "payload": payload}, separators=(",", ":"))
    assert fast_trace_line(line, MAX_PAYLOAD_BYTES * 8) is not None
    repeated = line.replace('"seq":7', '"seq":7,"seq":8')
    assert fast_trace_line(repeated, MAX_PAYLOAD_BYTES * 8) is None
    twice = line.replace('{"topic":', '{"topic":"x","topic":', 1)
    assert fast_trace_line(twice, MAX_PAYLOAD_BYTES * 8) is None
    extra = line[:-1] + ',"more":1}'
    assert fast_trace_line(extra, MAX_PAYLOAD_BYTES * 8) is None
    event = '{"lock_id":"LK-01","seq":3,"ts":"2026-11-22T08:00:06Z","type":"tamper"}'
    assert fast_trace_line(f'{{"topic":"{EVENTS}","payload":{event}}}', 1 << 20) is not None


_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=300, deadline=None)
@given(
    lat=st.one_of(_floats, st.integers(-100, 100)),
    lon=st.one_of(_floats, st.integers(-200, 200)),
    seq=st.one_of(st.integers(-5, 2**64), st.booleans(), _floats),
    hdop=st.one_of(st.none(), _floats),
    drop=st.sampled_from(["", "lat", "seal", "ts", "speed_kmh"]),
)
def test_random_telemetry_gets_the_same_answer(
    lat: Any, lon: Any, seq: Any, hdop: Any, drop: str
) -> None:
    payload = json.loads(GOOD)
    payload.update(lat=lat, lon=lon, seq=seq, hdop=hdop)
    payload.pop(drop, None)
    text = json.dumps(payload, separators=(",", ":"))
    _same(_fast(TOPIC, text), _ordinary(TOPIC, text))


def test_positions_projected_ahead_are_the_same_bit_for_bit() -> None:
    geo = Geofences.load(default_geofence_dir())
    rng = random.Random(7)
    points = [(rng.uniform(119.5, 122.5), rng.uniform(28.5, 30.5)) for _ in range(2000)]
    one_by_one = [geo.to_metric(lon, lat) for lon, lat in points]
    geo.project_ahead(points)
    assert [geo.to_metric(lon, lat) for lon, lat in points] == one_by_one
    geo.project_ahead([])
    assert geo.to_metric(*points[0]) == one_by_one[0]
