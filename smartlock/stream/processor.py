"""The stream processor's logic, apart from Faust: a batch of Kafka records in, outputs out.

:class:`BatchProcessor` runs the same :class:`~smartlock.core.engine.Engine` as
``smartlock evaluate``, over the worker's :class:`~smartlock.stream.lock_table.LockTable`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from smartlock.adapters.redis_state import Fix
from smartlock.contract.codec import DeadLetter, Envelope, RefusedArrival, decode, load_json
from smartlock.contract.models import LockTelemetry, TransitDeclaration, format_ts
from smartlock.core.detector import Detector, Output
from smartlock.core.engine import Engine
from smartlock.core.state import LockState
from smartlock.core.writeoff import VerdictRecord
from smartlock.errors import MessageError
from smartlock.stream.inbound import (
    BRIDGE,
    CLOCK,
    KIND,
    MAX_RECORD_BYTES,
    MAX_RECORD_DEPTH,
    RECEIVED_AT,
    REFUSED,
    TOPIC,
    UNAUTHENTICATED,
    read_number,
    verify,
)
from smartlock.stream.lock_table import LockTable


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record of the inbound topic (headers as Kafka gives them: name, bytes)."""

    key: bytes | None
    value: bytes
    partition: int
    headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] = ()


@dataclass(slots=True)
class _Opened:
    """A record before its turn: its headers, why it was refused (if it was), its decoded
    message or the exception decoding raised (None for ticks and refused arrivals), and what
    reading its headers or checking its MAC raised, if anything."""

    pairs: list[tuple[str, bytes]]
    refusal: str | None
    decoded: Envelope | Exception | None
    failed: Exception | None = None


@dataclass
class BatchResult:
    outputs: list[Output] = field(default_factory=list)
    records: list[VerdictRecord] = field(default_factory=list)  # the core's audits, write-offs
    dead_letters: list[DeadLetter] = field(default_factory=list)
    touched: dict[str, LockState] = field(default_factory=dict)
    fixes: list[Fix] = field(default_factory=list)  # accepted fixes of declared trips (tracks)
    declarations: list[dict[str, Any]] = field(default_factory=list)  # accepted declarations


class BatchProcessor:
    """Decodes Kafka records and feeds them to the engine, lock by lock, in record order.

    Every record is authenticated first (:func:`smartlock.stream.inbound.verify`): one whose
    MAC is missing or wrong is dead-lettered and moves no clock and no trip.

    Args:
        detector: the detection rules.
        store: the lock table.
        stream_keys: the keys an inbound record's ``mac`` header may be made with (the current
            stream key, then the previous one during its grace period); the worker sets
            :attr:`stream_keys` again when the credentials store changes.
    """

    def __init__(
        self, detector: Detector, store: LockTable, *, stream_keys: Sequence[bytes]
    ) -> None:
        self.detector = detector
        self.store = store
        self.stream_keys = list(stream_keys)
        self.engine = Engine(detector, store)

    def reset(self) -> None:
        """Starts a fresh engine (timers, watermark) over the same store, after a rebalance."""
        self.engine = Engine(self.detector, self.store)

    def process(self, records: list[Record]) -> BatchResult:
        result = BatchResult()
        # Messages are decoded first (decoding is pure), so the detector can project the
        # batch's fixes in one call; then fed in record order, as before.
        opened = [self._open(record) for record in records]
        self.detector.prepare([o.decoded for o in opened if isinstance(o.decoded, Envelope)])
        for record, o in zip(records, opened, strict=True):
            self._one(record, o, result)
        result.touched.update(self.store.changed())
        return result

    def _open(self, record: Record) -> _Opened:
        """Authenticates the record, reads its headers and decodes its message; a failure is
        kept (as the exception) and acted on when the record's turn comes."""
        try:
            pairs = list(
                record.headers.items() if isinstance(record.headers, Mapping) else record.headers
            )
            refusal = verify(self.stream_keys, record.key, record.value, pairs)
        except Exception as exc:  # noqa: BLE001 - raised again in the record's turn
            return _Opened([], None, None, exc)
        if refusal is not None:
            return _Opened(pairs, refusal, None)
        try:
            headers = dict(pairs)
            if TOPIC not in headers or headers.get(KIND) == REFUSED:
                return _Opened(pairs, None, None)
            received = read_number(headers.get(RECEIVED_AT))
            received_at = datetime.fromtimestamp(received, UTC) if received is not None else None
            return _Opened(pairs, None, decode(headers[TOPIC].decode(), record.value, received_at))
        except Exception as exc:  # noqa: BLE001 - raised again in the record's turn
            return _Opened(pairs, None, exc)

    def _one(self, record: Record, opened: _Opened, result: BatchResult) -> None:
        now = datetime.now(UTC)
        try:
            self._record(record, opened, result, now)
        except Exception as exc:  # noqa: BLE001 - one record must never drop its batch
            # The record is dead-lettered. (A rule that raises is caught by the engine,
            # which rolls the trip back; this is for anything else.)
            detail = f"{type(exc).__name__}: {exc}"
            result.dead_letters.append(
                DeadLetter("?", record.value, "internal_error", detail, now, "worker")
            )
        # A time-based rule that raised (fired by this record's clock) changed no trip; the
        # record itself was processed. The dead letter keeps the record that moved the clock.
        for failure in self.engine.take_timer_failures():
            result.dead_letters.append(
                DeadLetter("?", record.value, "internal_error", failure.describe(), now, "worker")
            )

    def _record(self, record: Record, opened: _Opened, result: BatchResult, now: datetime) -> None:
        partition = record.partition
        data: bytes | dict[str, Any]
        if opened.failed is not None:  # reading the headers or the MAC check raised
            raise opened.failed
        pairs, refusal = opened.pairs, opened.refusal
        if refusal is not None:  # forged, tampered or of an earlier format: never acted on
            claimed = dict(pairs).get(TOPIC) or b"?"
            result.dead_letters.append(
                DeadLetter(
                    claimed.decode(errors="replace"),
                    record.value,
                    UNAUTHENTICATED,
                    f"inbound record refused: {refusal} (partition {partition})",
                    now,
                    "worker",
                )
            )
            return
        try:
            headers = dict(pairs)
            if TOPIC in headers:  # a message, as received by the bridge, or a refused arrival
                topic = headers[TOPIC].decode()
                bridge: str | None = headers.get(BRIDGE, b"").decode() or None
                clock, received = (
                    read_number(headers.get(CLOCK)),
                    read_number(headers.get(RECEIVED_AT)),
                )
                refused = load_json(record.value, topic) if headers.get(KIND) == REFUSED else None
                data = record.value
            else:  # a watermark tick: nothing older from this bridge is still coming here
                outer = load_json(
                    record.value, "?", max_bytes=MAX_RECORD_BYTES, max_depth=MAX_RECORD_DEPTH
                )
                if not isinstance(outer, dict) or "tick" not in outer:
                    raise TypeError("an inbound record without a topic header is a tick")
                outcome = self.engine.observe(
                    _number(outer["tick"]),
                    partition,
                    outer.get("bridge"),
                    _number(outer.get("at")),
                    closing=outer.get("closing") is True,
                )
                result.outputs.extend(outcome.outputs)
                return
            result.outputs.extend(self.engine.observe(clock, partition, bridge, received).outputs)
            if refused is not None:  # a gate arrival the bridge could not accept: answer inspect
                arrival = RefusedArrival.from_record(refused)
                outcome = self.engine.refuse_arrival(arrival, partition, received_at=received)
                result.outputs.extend(outcome.outputs)
                result.records.extend(outcome.records)
                return
            if isinstance(opened.decoded, Exception):
                raise opened.decoded
            assert opened.decoded is not None
            env = opened.decoded
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            result.dead_letters.append(
                DeadLetter("?", record.value, "invalid_record", str(exc), now, "worker")
            )
            return
        except MessageError as exc:
            result.dead_letters.append(
                DeadLetter(exc.topic, record.value, exc.reason, exc.detail, now, "worker")
            )
            return
        lock_id = record.key.decode() if record.key else None
        locks = [lock_id] if lock_id else self.engine.detector.route(env)
        for lock in locks:
            self.store.note_partition(lock, partition)
        outcome = self.engine.feed(env, locks, partition, bridge=bridge)
        result.outputs.extend(outcome.outputs)
        if outcome.error is not None:  # a rule raised: no trip changed, the message dead-lettered
            result.dead_letters.append(
                DeadLetter(topic, record.value, "internal_error", outcome.error, now, "worker")
            )
            return
        result.records.extend(outcome.records)
        self._note_for_console(env, locks, outcome.rejections, result)
        if not outcome.rejections:
            return
        original = (
            data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
        )
        for lock, rejection in outcome.rejections:
            result.dead_letters.append(
                DeadLetter(
                    topic,
                    original,
                    rejection.reason,
                    f"{rejection.detail} (lock {lock})",
                    now,
                    "worker",
                )
            )

    def _note_for_console(
        self,
        env: Envelope,
        locks: list[str],
        rejections: list[tuple[str, Any]],
        result: BatchResult,
    ) -> None:
        """Keeps the accepted fixes (the trips' tracks) and declarations for the console."""
        msg = env.message
        rejected = {lock for lock, _ in rejections}
        if isinstance(msg, TransitDeclaration):
            if not rejected.intersection(locks):
                result.declarations.append(msg.to_payload())
            return
        if not isinstance(msg, LockTelemetry) or msg.lock_id in rejected:
            return
        state = self.store.get(msg.lock_id)
        if state is not None and state.trip is not None:
            result.fixes.append(
                Fix(state.trip.declaration_id, msg.lock_id, format_ts(msg.ts), msg.lat, msg.lon)
            )


def _number(value: Any) -> float | None:
    """A JSON number as float; None for null or anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
