"""Input limits at every door, and what a refused message may not do (CONTRACT sections 6, 7).

The cases from issue 11: nested JSON, oversized payloads, coerced numbers, repeated keys,
``seq = 2**70`` and a forged ``ts`` in 2099 that once moved the event-time clock.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlock.contract.codec import (
    MAX_PAYLOAD_BYTES,
    DeadLetter,
    decode,
    load_json,
    refused_arrival,
)
from smartlock.core.detector import Detector
from smartlock.core.engine import Engine
from smartlock.core.evaluate import evaluate
from smartlock.core.limits import DetectionSettings
from smartlock.core.state import LockState
from smartlock.errors import MessageError
from smartlock.stream.inbound import Forwarder, sign
from smartlock.stream.lock_table import LockTable
from smartlock.stream.processor import BatchProcessor, Record
from tests.builders import STREAM_KEY, Trip, run, synthetic_geofences

TELEMETRY = {
    "lock_id": "L1",
    "seq": 1,
    "ts": "2026-11-22T08:15:00Z",
    "lat": 29.5,
    "lon": 120.0,
    "seal": "sealed",
}
NESTED = "[" * 1000 + "]" * 1000
RECEIVED = datetime(2026, 11, 22, 8, 15, tzinfo=UTC)


def reason(topic: str, data: Any, received_at: datetime | None = None) -> str:
    with pytest.raises(MessageError) as info:
        decode(topic, data, received_at)
    return info.value.reason


# ------------------------------------------------------------------ the decoder


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (NESTED, "too_deep"),
        ('{"a":' * 40 + "1" + "}" * 40, "too_deep"),
        ("x" * (460 * 1024), "too_large"),
        (json.dumps(TELEMETRY | {"lat": "29.3"}), "invalid_payload"),
        (json.dumps(TELEMETRY | {"lat": True}), "invalid_payload"),
        (json.dumps(TELEMETRY | {"battery_pct": "80"}), "invalid_payload"),
        (json.dumps(TELEMETRY)[:-1] + ',"seq":2}', "duplicate_key"),
        (json.dumps(TELEMETRY | {"seq": 2**70}), "invalid_payload"),
        (json.dumps(TELEMETRY | {"seq": 2**53}), "invalid_payload"),
        (json.dumps(TELEMETRY | {"seq": -1}), "invalid_payload"),
        (json.dumps(TELEMETRY).replace("29.5", "NaN"), "invalid_json"),
        (json.dumps(TELEMETRY).replace("29.5", "1" * 60), "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
    ],
)
def test_the_decoder_refuses_what_section_7_refuses(data: Any, expected: str) -> None:
    assert (
        reason("locks/L1/telemetry", data.encode() if isinstance(data, str) else data) == expected
    )


def test_limits_hold_at_the_boundary() -> None:
    deepest = '{"a":' * 31 + "[1]" + "}" * 31  # 32 levels: allowed
    assert load_json(deepest) is not None
    assert decode("locks/L1/telemetry", json.dumps(TELEMETRY | {"seq": 2**53 - 1})).message
    padded = json.dumps(TELEMETRY | {"sig": None})
    assert len(padded) < MAX_PAYLOAD_BYTES
    # Brackets inside strings are text, not nesting.
    text = json.dumps({"description": "[" * 5000})
    assert load_json(text) == {"description": "[" * 5000}


def test_an_already_parsed_payload_gets_the_depth_limit_too() -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    assert reason("locks/L1/telemetry", TELEMETRY | {"extra": deep}) == "too_deep"


def test_future_ts_is_refused_against_the_receiving_clock_only() -> None:
    ahead = TELEMETRY | {"ts": "2026-11-22T08:20:01Z"}  # 5 min 1 s after RECEIVED
    assert reason("locks/L1/telemetry", json.dumps(ahead), RECEIVED) == "future_ts"
    in_time = TELEMETRY | {"ts": "2026-11-22T08:20:00Z"}
    assert decode("locks/L1/telemetry", json.dumps(in_time), RECEIVED).message
    assert decode("locks/L1/telemetry", json.dumps(ahead)).message  # offline: not applicable


def test_a_dead_letter_keeps_a_bounded_copy() -> None:
    huge = b"A" * (900 * 1024)
    record = DeadLetter("locks/L1/telemetry", huge, "too_large", "big", RECEIVED, "bridge")
    body = record.to_record()
    assert body["original_size"] == len(huge)
    assert body["original_truncated"] is True
    assert len(body["original_text"]) == MAX_PAYLOAD_BYTES
    import hashlib

    assert body["original_sha256"] == hashlib.sha256(huge).hexdigest()
    assert len(json.dumps(body, ensure_ascii=False).encode()) < 256 * 1024  # far below 1 MB


# ------------------------------------------------------------------ the bridge's half


def test_the_bridge_never_raises_and_dead_letters_nested_and_huge_messages() -> None:
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    for payload in (NESTED.encode(), b"x" * (460 * 1024), b"\x00" * 10):
        forwarded = forwarder.forward("locks/A/telemetry", payload, RECEIVED)
        assert forwarded.records == []
        assert forwarded.dead is not None
        assert len(json.dumps(forwarded.dead.to_record()).encode()) < 1024 * 1024
    assert forwarder.clock is None  # nothing refused moved the clock


def test_the_bridge_clock_ignores_refused_messages() -> None:
    forwarder = Forwarder("b1", {"L1": "k1"}, stream_key=STREAM_KEY)
    unsigned = json.dumps(TELEMETRY | {"ts": "2026-11-22T08:14:00Z"}).encode()
    assert forwarder.forward("locks/L1/telemetry", unsigned, RECEIVED).dead is not None
    future = json.dumps(TELEMETRY | {"ts": "2099-01-01T00:00:00Z"}).encode()
    assert forwarder.forward("locks/L1/telemetry", future, RECEIVED).dead is not None
    assert forwarder.clock is None
    arrival = {
        "gate_id": "G1",
        "ts": "2026-11-22T08:10:00Z",
        "vehicle_plate": "浙G12345",
        "lock_id": "L1",
        "container_no": "CSQU3054383",
    }
    forwarded = forwarder.forward("gates/G1/arrivals", json.dumps(arrival).encode(), RECEIVED)
    assert forwarded.dead is None
    assert forwarder.clock == datetime(2026, 11, 22, 8, 10, tzinfo=UTC).timestamp()


# ------------------------------------------------------------------ only accepted messages move time


def _fleet() -> list[tuple[str, dict[str, Any]]]:
    trips = [
        Trip(lock_id=f"L{n}", declaration_id=f"D{n}", key=f"k{n}", container=c)
        for n, c in ((1, "CSQU3054383"), (2, "MSCU1234566"))
    ]
    for trip in trips:
        trip.declare().event("sealed", at=(0, 0)).drive(0, 6)
    return [m for trip in trips for m in trip.messages]


def test_a_forged_ts_in_2099_moves_no_clock_and_raises_nothing() -> None:
    keys = {"L1": "k1", "L2": "k2"}
    clean = _fleet()
    forged = ("locks/L1/telemetry", TELEMETRY | {"seq": 999, "ts": "2099-01-01T00:00:00Z"})
    cut = len(clean) // 2
    attacked = run([*clean[:cut], forged, *clean[cut:]], keys=keys)
    assert attacked.reasons() == ["missing_signature"]
    assert attacked.outputs == run(clean, keys=keys).outputs
    assert attacked.engine.clock() == run(clean, keys=keys).engine.clock()


def test_seq_2_to_the_70_is_refused_and_the_real_tamper_still_counts() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 3)
    bogus = dict(trip.messages[-1][1]) | {"seq": 2**70}
    with pytest.raises(MessageError):
        decode("locks/L1/telemetry", bogus)
    trip.event("tamper", at=(3, 0))
    r = run(trip.messages)
    assert "seal_breach" in r.alert_types()


# ------------------------------------------------------------------ anti-replay window


def test_the_window_refuses_duplicates_and_old_seqs_and_judges_late_ones() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 6)
    msgs = trip.messages
    late = msgs[-3]  # a genuine message re-sent after newer ones (broker crash)
    r = run([*msgs[:-3], *msgs[-2:], late, late], limits=DetectionSettings(seq_window=4))
    assert r.reasons() == ["duplicate"]  # the late one judged once, its copy refused
    r = run([*msgs, msgs[2]], limits=DetectionSettings(seq_window=4))
    assert r.reasons() == ["stale_seq"]


def test_a_late_tamper_inside_the_window_is_judged() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 3)
    trip.event("tamper", at=(3, 0))
    tamper = trip.messages.pop()
    trip.drive(3.5, 5)
    r = run([*trip.messages, tamper])  # delivered after three newer fixes
    assert r.reasons() == []
    assert "seal_breach" in r.alert_types()


def test_a_state_saved_before_the_window_refuses_everything_below_its_last_seq() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 3)
    first = run(trip.messages)
    state = first.engine.store["L1"]
    state.seq_seen = ""  # as saved by a version without the window
    again = run([trip.messages[-2]], engine=first.engine)
    assert again.reasons() == ["duplicate"]


@given(
    window=st.sampled_from([1, 2, 3, 8, 64, 1024]),
    steps=st.lists(st.integers(-70, 70), min_size=1, max_size=400),
)
@settings(max_examples=60, deadline=None)
def test_the_window_bitmap_is_the_set_of_accepted_seqs(window: int, steps: list[int]) -> None:
    """The bitmap (and the fast path for runs of consecutive seqs) against a plain set."""
    detector = Detector(DetectionSettings(seq_window=window), synthetic_geofences())
    state = LockState(lock_id="L1")
    accepted: set[int] = set()
    seq = 100
    for step in steps:
        for _ in range(step if step > 40 else 1):  # long runs of consecutive seqs too
            seq = max(0, seq + (1 if step > 40 else step))
            msg = type("Msg", (), {"lock_id": "L1", "seq": seq})()
            high = max(accepted) if accepted else None
            refused = detector._admit_seq(state, msg)  # type: ignore[arg-type]
            if high is not None and seq <= high - window:
                assert refused is not None and refused.reason == "stale_seq"
            elif seq in accepted:
                assert refused is not None and refused.reason == "duplicate"
            else:
                assert refused is None
                accepted.add(seq)
            high = max(accepted)
            bits = sum(1 << (high - s) for s in accepted if high - s < window)
            assert (state.last_seq, state.seq_seen) == (high, format(bits, "x"))


# ------------------------------------------------------------------ gate arrivals


@pytest.mark.parametrize(
    ("topic", "payload", "why"),
    [
        (
            "gates/G1/arrivals",
            '{"gate_id":"G1","ts":"2026-11-22T09:00:00Z","lock_id":"L1"}',
            "invalid_payload",
        ),
        ("gates/G1/arrivals", "{not json", "invalid_json"),
        ("gates/G1/arrivals", NESTED, "too_deep"),
        (
            "gates/G1/arrivals",
            '{"gate_id":"G2","ts":"2026-11-22T09:00:00Z","vehicle_plate":"浙G12345",'
            '"lock_id":"L1","container_no":"CSQU3054383"}',
            "topic_mismatch",
        ),
    ],
)
def test_a_malformed_arrival_gets_inspect_on_its_gate(topic: str, payload: str, why: str) -> None:
    trace = io.StringIO(json.dumps({"topic": topic, "payload": payload}) + "\n")
    out, err = io.StringIO(), io.StringIO()
    evaluate(Detector(DetectionSettings(), synthetic_geofences()), trace, out, err)
    [line] = out.getvalue().splitlines()
    verdict = json.loads(line)
    assert verdict["topic"] == "gates/G1/verdicts"
    assert verdict["payload"]["verdict"] == "inspect"
    assert why in verdict["payload"]["reasons"][0]
    assert "malformed" in err.getvalue()


def test_a_malformed_arrival_keeps_what_it_could_read() -> None:
    data = b'{"gate_id":"G1","ts":"2026-11-22T09:00:00Z","lock_id":"L7"}'
    refused = refused_arrival("gates/G1/arrivals", data, MessageError("t", "invalid_payload", "x"))
    assert refused is not None
    assert (refused.lock_id, refused.ts) == (
        "L7",
        datetime(2026, 11, 22, 9, tzinfo=UTC).timestamp(),
    )
    assert refused_arrival("gates/+/arrivals", data, MessageError("t", "r", "d")) is None


def test_the_worker_answers_a_refused_arrival_from_the_bridge() -> None:
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    forwarded = forwarder.forward("gates/G1/arrivals", b"{not json", RECEIVED)
    assert forwarded.dead is not None
    [record] = forwarded.records
    processor = BatchProcessor(
        Detector(DetectionSettings(), synthetic_geofences()),
        LockTable({}),
        stream_keys=[STREAM_KEY],
    )
    result = processor.process([Record(record.key, record.value, 0, record.headers)])
    [verdict] = result.outputs
    assert (verdict.topic, verdict.payload["verdict"]) == ("gates/G1/verdicts", "inspect")
    assert verdict.payload["ts"] == "2026-11-22T08:15:00Z"  # no ts readable: the receive time


# ------------------------------------------------------------------ per-message isolation


class _FailingDetector(Detector):
    """A detector whose rules fail on one lock: a bug must cost one message, not the batch."""

    def step(self, state: Any, lock_id: str, env: Any, clock: float | None = None) -> Any:
        if lock_id == "L2":
            raise RuntimeError("a rule failed")
        return super().step(state, lock_id, env, clock)


def test_one_failing_record_is_dead_lettered_and_the_batch_goes_on() -> None:
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    nested, no_topic = NESTED.encode(), b'{"topic":1}'  # authentic records, unreadable ones
    records: list[Record] = [
        Record(None, nested, 0, sign(STREAM_KEY, None, nested)),
        Record(b"L1", no_topic, 0, sign(STREAM_KEY, b"L1", no_topic)),
    ]
    for topic, payload in _fleet():
        forwarded = forwarder.forward(
            topic, json.dumps(payload).encode(), RECEIVED + timedelta(days=9)
        )
        records += [Record(r.key, r.value, 0, r.headers) for r in forwarded.records]
    processor = BatchProcessor(
        _FailingDetector(DetectionSettings(), synthetic_geofences()),
        LockTable({}),
        stream_keys=[STREAM_KEY],
    )
    result = processor.process(records)
    reasons = [d.reason for d in result.dead_letters]
    assert reasons[:2] == ["too_deep", "invalid_record"]
    assert set(reasons[2:]) == {"internal_error"}
    assert len(reasons[2:]) == sum(1 for _, p in _fleet() if p.get("lock_id") == "L2")
    assert {o.payload["lock_id"] for o in result.outputs} == {"L1"}


def test_evaluate_goes_on_after_any_line() -> None:
    lines = [
        NESTED,
        "[" * 40 + "]" * 40,
        json.dumps({"topic": "locks/A/telemetry", "payload": NESTED}),
    ]
    trace = io.StringIO(
        "\n".join(lines)
        + "\n"
        + "\n".join(json.dumps({"topic": t, "payload": p}) for t, p in _fleet())
        + "\n"
    )
    out, err = io.StringIO(), io.StringIO()
    summary = evaluate(Detector(DetectionSettings(), synthetic_geofences()), trace, out, err)
    assert summary.malformed == 3
    assert summary.messages == len(_fleet())
    engine = Engine(Detector(DetectionSettings(), synthetic_geofences()))
    expected = [o for t, p in _fleet() for o in engine.feed(decode(t, p)).outputs]
    assert len(out.getvalue().splitlines()) == len(expected)
