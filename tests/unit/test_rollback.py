"""A rule that raises part-way through a message leaves no partial state (issue 11).

The detector changes a lock's state in place, so a rule that fails after the anti-replay
window, the position or the trip state were already changed would leave a half-applied
message behind. The engine saves the states a message concerns and puts them back when a
rule raises; the worker dead-letters the message (``internal_error``) and goes on, and
``smartlock evaluate`` reports it the same way and prints the same outputs.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

from smartlock.contract.codec import decode
from smartlock.contract.models import LockEvent, LockTelemetry
from smartlock.core import rules
from smartlock.core.detector import Detector
from smartlock.core.engine import Engine
from smartlock.core.evaluate import evaluate
from smartlock.core.geofence import Geofences
from smartlock.core.limits import DetectionSettings
from smartlock.stream.inbound import Forwarder
from smartlock.stream.lock_table import LockTable
from smartlock.stream.processor import BatchProcessor, Record
from tests.builders import (
    STREAM_KEY,
    T0,
    Trip,
    merge,
    synthetic_collections,
    synthetic_geofences,
)

RECEIVED = T0 + timedelta(days=9)


class _FailsMidMessage(Detector):
    """Fails on one seq of one lock *after* the rules changed its state (window, position)."""

    def __init__(self, *args: Any, lock_id: str = "L1", seq: int = 5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_on = (lock_id, seq)

    def _lock_message(
        self,
        state: Any,
        msg: LockTelemetry | LockEvent,
        clock: float | None,
        effects: rules.Effects,
    ) -> None:
        super()._lock_message(state, msg, clock, effects)
        if (msg.lock_id, msg.seq) == self.fail_on:
            raise RuntimeError("a rule failed half-way")


def _trip() -> Trip:
    return Trip().declare().event("sealed", at=(0, 0)).drive(0, 6)


def test_a_rule_that_raises_changes_no_state_and_the_seq_stays_free() -> None:
    messages = _trip().messages
    failing = next(i for i, (_, p) in enumerate(messages) if p.get("seq") == 5)
    engine = Engine(_FailsMidMessage(DetectionSettings(), synthetic_geofences()))
    for topic, payload in messages[:failing]:
        assert engine.feed(decode(topic, payload)).error is None
    before = engine.store["L1"].model_dump()
    topic, payload = messages[failing]

    outcome = engine.feed(decode(topic, payload))

    assert outcome.error == "RuntimeError: a rule failed half-way"
    assert outcome.outputs == [] and outcome.records == [] and outcome.rejections == []
    after = engine.store["L1"]
    assert after.model_dump() == before  # window, position, trip state: all as before
    assert after.last_seq == 4 and after.trip is not None and after.trip.position is not None
    # Seq 5 was never accepted, so it is not a duplicate: the same message is judged again.
    engine.detector.fail_on = ("L1", -1)  # type: ignore[attr-defined]
    again = engine.feed(decode(topic, payload))
    assert again.error is None and again.rejections == []
    assert engine.store["L1"].last_seq == 5


def test_a_message_for_several_locks_is_all_or_nothing() -> None:
    collections = synthetic_collections()
    features = collections["synthetic.geojson"]["features"]
    road = next(f for f in features if f["properties"]["id"] == "test-road")
    rail = json.loads(json.dumps(road))
    rail["properties"] |= {"id": "test-rail", "mode": "rail"}
    features.append(rail)
    geofences = Geofences.from_feature_collections(collections)

    class _FailsOnSecondLock(Detector):
        def _declaration(self, state: Any, lock_id: str, decl: Any, raw: Any) -> Any:
            rejection = super()._declaration(state, lock_id, decl, raw)
            if lock_id == "L2":
                raise RuntimeError("a rule failed on the second lock")
            return rejection

    train = Trip(plate="X9011").declare(
        mode="rail",
        corridor_id="test-rail",
        train_id="X9011",
        vehicle_plate="X9011",
        locks=[
            {"lock_id": "L1", "container_no": Trip().container},
            {"lock_id": "L2", "container_no": Trip().container},
        ],
    )
    [(topic, payload)] = train.messages
    engine = Engine(_FailsOnSecondLock(DetectionSettings(), geofences))
    env = decode(topic, payload)
    assert engine.detector.check(env) is None, "the declaration itself is valid"

    outcome = engine.feed(env)

    assert outcome.error == "RuntimeError: a rule failed on the second lock"
    assert outcome.outputs == [] and outcome.records == []
    assert dict(engine.store) == {}  # L1's trip, created first, was taken back too


def test_the_worker_dead_letters_the_message_and_its_table_keeps_the_old_state() -> None:
    messages = _trip().messages
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    records = []
    for topic, payload in messages:
        forwarded = forwarder.forward(topic, json.dumps(payload).encode(), RECEIVED)
        records += [Record(r.key, r.value, 0, r.headers) for r in forwarded.records]
    failing = next(i for i, (_, p) in enumerate(messages) if p.get("seq") == 5)
    detector = _FailsMidMessage(DetectionSettings(), synthetic_geofences())
    table = LockTable({})
    processor = BatchProcessor(detector, table, stream_keys=[STREAM_KEY])

    first = processor.process(records[:failing])
    before = table["L1"].model_dump()
    second = processor.process([records[failing]])

    [dead] = second.dead_letters
    assert (dead.reason, dead.topic) == ("internal_error", "locks/L1/telemetry")
    assert "a rule failed half-way" in dead.detail
    assert second.fixes == []  # no track point for the console either
    assert table["L1"].model_dump() == before
    assert table.take_changes()[0][2]["state"] == table["L1"].model_dump(mode="json")

    # The rest of the stream goes on; the outputs are those of evaluate on the same trace.
    third = processor.process(records[failing + 1 :])
    trace = io.StringIO("".join(json.dumps({"topic": t, "payload": p}) + "\n" for t, p in messages))
    out, err = io.StringIO(), io.StringIO()
    summary = evaluate(
        _FailsMidMessage(DetectionSettings(), synthetic_geofences()), trace, out, err
    )
    assert summary.malformed == 1 and "internal error: RuntimeError" in err.getvalue()
    live = [o for r in (first, second, third) for o in r.outputs]
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [o.line() for o in live]


def test_a_lock_first_seen_in_a_failing_message_is_not_left_in_the_table() -> None:
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    payload = Trip(lock_id="L9").fix(1).messages[0][1]
    [record] = forwarder.forward(
        "locks/L9/telemetry", json.dumps(payload).encode(), RECEIVED
    ).records
    table = LockTable({})
    detector = _FailsMidMessage(DetectionSettings(), synthetic_geofences(), lock_id="L9", seq=1)
    result = BatchProcessor(detector, table, stream_keys=[STREAM_KEY]).process(
        [Record(record.key, record.value, 0, record.headers)]
    )
    assert [d.reason for d in result.dead_letters] == ["internal_error"]
    assert result.outputs == [] and result.touched == {}
    assert "L9" not in table and table.take_changes() == []


class _FailsInTimer(Detector):
    """A time-based rule that fails for one lock *after* it changed that lock's trip."""

    def __init__(self, *args: Any, lock_id: str = "L1", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_for = lock_id

    def tick(self, state: Any, watermark: float) -> Any:
        result = super().tick(state, watermark)
        if state.lock_id == self.fail_for:
            raise RuntimeError("a timer rule failed half-way")
        return result


def _silent_and_other() -> list[tuple[str, dict[str, Any]]]:
    """L1 falls silent after 3 km; L2 drives on, so the clock passes L1's signal_lost deadline."""
    silent = Trip(lock_id="L1", declaration_id="D1").declare().event("sealed", at=(0, 0))
    other = Trip(lock_id="L2", declaration_id="D2", container="MSCU1234566").declare()
    other.event("sealed", at=(0, 0)).drive(0, 30)
    return merge(silent.drive(0, 3), other)


def test_a_timer_rule_that_raises_changes_no_trip_and_is_reported() -> None:
    messages = _silent_and_other()
    healthy = Engine(Detector(DetectionSettings(), synthetic_geofences()))
    lost = [
        o
        for topic, payload in messages
        for o in healthy.feed(decode(topic, payload)).outputs
        if o.kind == "alert" and o.payload["type"] == "signal_lost"
    ]
    assert [o.payload["lock_id"] for o in lost] == ["L1"]  # what would have fired

    engine = Engine(_FailsInTimer(DetectionSettings(), synthetic_geofences()))
    outputs: list[Any] = []
    for topic, payload in messages:
        before = engine.store["L1"].model_dump() if "L1" in engine.store else None
        outcome = engine.feed(decode(topic, payload))
        assert outcome.error is None  # the message itself was judged
        outputs.extend(outcome.outputs)
        if engine.timer_failures:  # this message's event time made L1's timer due
            break
    [failure] = engine.take_timer_failures()
    assert failure.lock_id == "L1" and failure.error == "RuntimeError: a timer rule failed half-way"
    assert "its trip was left as it was" in failure.describe()
    assert engine.store["L1"].model_dump() == before  # no half-applied timer
    assert not any(o.payload.get("lock_id") == "L1" and o.kind == "alert" for o in outputs)
    assert engine.take_timer_failures() == []  # taken once


def test_evaluate_and_the_worker_report_a_failed_timer_alike() -> None:
    messages = _silent_and_other()
    trace = "".join(json.dumps({"topic": t, "payload": p}) + "\n" for t, p in messages)
    out, err = io.StringIO(), io.StringIO()
    evaluate(
        _FailsInTimer(DetectionSettings(), synthetic_geofences()), io.StringIO(trace), out, err
    )
    reported = [line for line in err.getvalue().splitlines() if "timer of lock L1" in line]
    assert len(reported) == 1 and "internal error" in reported[0]

    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    records = []
    for topic, payload in messages:
        forwarded = forwarder.forward(topic, json.dumps(payload).encode(), RECEIVED)
        records += [Record(r.key, r.value, 0, r.headers) for r in forwarded.records]
    processor = BatchProcessor(
        _FailsInTimer(DetectionSettings(), synthetic_geofences()),
        LockTable({}),
        stream_keys=[STREAM_KEY],
    )
    results = [processor.process([record]) for record in records]
    dead = [d for r in results for d in r.dead_letters]
    assert [d.reason for d in dead] == ["internal_error"] and "timer of lock L1" in dead[0].detail
    live = [o.line() for r in results for o in r.outputs]
    assert [json.loads(line) for line in out.getvalue().splitlines()] == live
