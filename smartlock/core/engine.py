"""The driver around :class:`~smartlock.core.detector.Detector`: state store, clocks, timers.

``smartlock evaluate`` runs one :class:`Engine` over a whole trace with a dict as store;
the Faust worker runs one per worker process over the partitions it owns, with a store
backed by its table. Both feed the same envelopes in the same per-lock order, so both
produce the same alerts with the same ids.

The clock (CONTRACT section 3, v2). In publish order, the clock is the largest event time
of the accepted lock and gate messages published so far. A refused message never moves
it: :meth:`Detector.check` (signature) runs before a message's time counts. Time-based
rules fire when the clock passes their deadline, stamped with the deadline itself.

Offline there is one stream in publish order, and the engine keeps the clock itself. Live,
the bridge receives messages in publish order, so it keeps the clock and stamps it on
every Kafka record (the clock before that message) and on its watermark ticks (the clock
after everything it sent). The worker keeps one clock per *source* (a Kafka partition)
and fires a lock's timers only from the clock of the lock's own partition: every message
of that lock published before the clock passed a deadline precedes, in the partition, the
record or tick that says so. What fires therefore depends only on publish order: not on
how locks are spread over partitions, how the bridge batched, how many workers there are,
in which order a worker reads its partitions, or how fast a trace is replayed. With
several bridges, a partition's clock is the least of their clocks (each stamps its own
view, never ahead of the true clock), so a timer can fire later than offline, never earlier.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field

from smartlock.contract.codec import Envelope, RefusedArrival
from smartlock.contract.timestamps import format_epoch
from smartlock.contract.topics import verdict_topic
from smartlock.core.detector import Detector, Output, Rejection
from smartlock.core.state import LockState, restore, snapshot
from smartlock.core.verdict import refused_arrival_verdict
from smartlock.core.writeoff import VerdictRecord, verdict_records

#: A bridge not heard for this long (wall clock, by the times other bridges stamp in the
#: same partition) no longer holds the partition's clock back. Bridges tick every second.
BRIDGE_EXPIRY_S = 30.0
_NEVER = -math.inf


@dataclass(slots=True)
class Outcome:
    """What one input (or one clock advance) produced."""

    outputs: list[Output] = field(default_factory=list)
    rejections: list[tuple[str, Rejection]] = field(default_factory=list)  # (lock id, why)
    records: list[VerdictRecord] = field(default_factory=list)  # audit entries, write-offs
    #: a rule raised on the message: ``"<ExceptionType>: <message>"``; no trip changed
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFailure:
    """A time-based rule raised for one lock: that lock's trip was left as it was before."""

    lock_id: str
    deadline: float  # the event time the timer was due at
    error: str  # ``"<ExceptionType>: <message>"``

    def describe(self) -> str:
        return (
            f"timer of lock {self.lock_id} due at {format_epoch(self.deadline)}: {self.error} "
            "(its trip was left as it was; its next message sets the timer again)"
        )


class Engine:
    """Feeds envelopes to the detector, keeps per-lock state and fires timers in event time.

    Args:
        detector: the detection core.
        store: lock id -> LockState; a dict, or a mapping backed by a Faust table.
    """

    def __init__(
        self, detector: Detector, store: MutableMapping[str, LockState] | None = None
    ) -> None:
        self.detector = detector
        self.store: MutableMapping[str, LockState] = store if store is not None else {}
        self._clocks: dict[object, dict[object, float]] = {}  # source -> bridge -> clock
        self._seen: dict[object, dict[object, float]] = {}  # source -> bridge -> wall time
        self._gone: dict[object, set[object]] = {}  # source -> bridges stopped or silent
        self._timers: dict[object, list[tuple[float, str]]] = {}  # source -> heap
        self._scheduled: dict[str, tuple[object, float]] = {}  # lock -> (source, deadline)
        self._now: dict[object, float | None] = {}  # source -> clock(), kept by observe()
        #: time-based rules that raised since the caller last took them (see take_timer_failures)
        self.timer_failures: list[TimerFailure] = []

    def take_timer_failures(self) -> list[TimerFailure]:
        """The timer failures since the last call (the worker dead-letters them, ``evaluate``
        reports them); a failed timer changed no trip and produced no output."""
        failures, self.timer_failures = self.timer_failures, []
        return failures

    def clock(self, source: object = None) -> float | None:
        """The clock of a source: the least over its live bridges' clocks; None before any.

        A bridge that stopped (closing tick) or has not been heard for
        :data:`BRIDGE_EXPIRY_S` while another bridge was no longer holds the clock back;
        its last clock stays a floor if it comes back under the same name.
        """
        return self._now.get(source)

    def _clock(self, source: object) -> float | None:
        clocks = self._clocks.get(source)
        if not clocks:
            return None
        gone = self._gone.get(source)
        if not gone:  # every bridge live (offline: the one stream)
            return min(clocks.values())
        live = [c for b, c in clocks.items() if b not in gone]
        return min(live) if live else max(clocks.values())

    def schedule_all(self, locks: Iterable[tuple[str, object]]) -> None:
        """Sets the timers of locks whose state was recovered: (lock id, its source) pairs."""
        for lock_id, source in locks:
            state = self.store.get(lock_id)
            if state is not None:
                self._schedule(lock_id, state, source)

    def feed(
        self,
        env: Envelope,
        locks: Iterable[str] | None = None,
        source: object = None,
        clock: float | None = None,
        bridge: object = None,
    ) -> Outcome:
        """Processes one message, then fires the timers its event time makes due.

        Args:
            env: the validated message.
            locks: the locks to apply it to; default all locks it concerns. The Faust worker
                passes the one lock its Kafka record was keyed by.
            source: the stream it came from (the Kafka partition); None for a single stream.
            clock: the clock stamped on the message by the bridge that forwarded it (the
                clock before this message, in publish order); None offline.
            bridge: the name of that bridge; None offline.
        """
        outcome = Outcome()
        detector = self.detector
        targets = list(locks) if locks is not None else detector.route(env)
        rejection = detector.check(env)
        if rejection is not None:  # refused: it changes no trip and no clock
            outcome.rejections.extend((lock_id, rejection) for lock_id in targets)
            return outcome
        if clock is not None:
            self._observe(clock, source, bridge, None, False, outcome.outputs)
        if len(targets) == 1:  # a lock message, most declarations
            self._step_one(env, targets[0], source, outcome)
        else:
            self._step_all(env, targets, source, outcome)
        # The bridge counted an admitted message's event time before any worker could know
        # whether a rule would fail on it; the clock counts it here too, so live equals offline.
        ts = detector.event_time(env)
        if ts is not None:
            self._observe(ts, source, bridge, None, False, outcome.outputs)
        return outcome

    def _step_one(self, env: Envelope, lock_id: str, source: object, outcome: Outcome) -> None:
        """:meth:`_step_all` for one lock (the same, with less bookkeeping)."""
        store = self.store
        state = store.get(lock_id)
        saved = snapshot(state) if state is not None else None
        try:
            result = self.detector.step(state, lock_id, env, self._now.get(source))
            store[lock_id] = stepped = result.state
        except Exception as exc:  # noqa: BLE001 - a bug in one rule must not half-apply a message
            if state is not None and saved is not None:
                restore(state, saved)
                store[lock_id] = state
            elif lock_id in store:
                del store[lock_id]
            outcome.error = f"{type(exc).__name__}: {exc}"
            return
        if result.outputs:
            outcome.outputs.extend(result.outputs)
        if result.records:
            outcome.records.extend(result.records)
        if result.rejection is not None:
            outcome.rejections.append((lock_id, result.rejection))
        self._schedule(lock_id, stepped, source)

    def _step_all(
        self, env: Envelope, targets: list[str], source: object, outcome: Outcome
    ) -> None:
        """Applies one message to every lock it concerns, all or nothing.

        The detector changes a state in place, so each state is saved first (a snapshot of
        its fields, about a microsecond; a deep copy costs half a step). If a rule raises,
        every lock gets its saved state back, the message's outputs and records are dropped and
        ``outcome.error`` says why: the caller dead-letters the message (``internal_error``).
        """
        store = self.store
        saved = [(lock_id, store.get(lock_id)) for lock_id in targets]
        snapshots = [snapshot(state) if state is not None else None for _, state in saved]
        outputs, records, rejections = outcome.outputs, outcome.records, outcome.rejections
        marks = len(outputs), len(records), len(rejections)
        stepped: list[LockState] = []
        now = self._now.get(source)
        try:
            for lock_id, state in saved:
                result = self.detector.step(state, lock_id, env, now)
                store[lock_id] = result.state
                stepped.append(result.state)
                outputs.extend(result.outputs)
                if result.records:
                    records.extend(result.records)
                if result.rejection is not None:
                    rejections.append((lock_id, result.rejection))
        except Exception as exc:  # noqa: BLE001 - a bug in one rule must not half-apply a message
            for (lock_id, state), saved_state in zip(saved, snapshots, strict=True):
                if state is not None and saved_state is not None:
                    restore(state, saved_state)
                    store[lock_id] = state
                elif lock_id in store:
                    del store[lock_id]
            del outputs[marks[0] :], records[marks[1] :], rejections[marks[2] :]
            outcome.error = f"{type(exc).__name__}: {exc}"
            return
        for (lock_id, _), state in zip(saved, stepped, strict=True):
            self._schedule(lock_id, state, source)

    def refuse_arrival(
        self,
        refused: RefusedArrival,
        source: object = None,
        clock: float | None = None,
        bridge: object = None,
        received_at: float | None = None,
    ) -> Outcome:
        """Answers an arrival that could not be accepted with ``inspect`` (CONTRACT section 4).

        The verdict is stamped with the arrival's own ``ts`` when it could be read, else
        with the clock (the receive time if there is none yet). It moves no clock.
        """
        outcome = Outcome()
        if clock is not None:
            outcome.outputs.extend(self.observe(clock, source, bridge).outputs)
        now = self.clock(source)
        ts = next((t for t in (refused.ts, now, received_at) if t is not None), 0.0)
        payload = refused_arrival_verdict(refused, ts)
        outcome.outputs.append(Output("verdict", verdict_topic(refused.gate_id), payload))
        # Nothing of the arrival could be trusted, so no trip's evidence stands behind it.
        outcome.records.extend(verdict_records(None, payload))
        return outcome

    def observe(
        self,
        event_time: float | None,
        source: object = None,
        bridge: object = None,
        at: float | None = None,
        closing: bool = False,
    ) -> Outcome:
        """Notes the clock of a source as announced by a bridge (a message or a tick).

        Args:
            event_time: the bridge's clock (None: it has none yet).
            source: the stream (Kafka partition); None for a single stream.
            bridge: the bridge's name; None offline.
            at: the bridge's wall-clock time of the announcement, to notice a bridge that
                went away without a closing tick; None offline.
            closing: the bridge stopped cleanly.

        The source's clock moves to the least over its live bridges; due timers fire.
        """
        outcome = Outcome()
        self._observe(event_time, source, bridge, at, closing, outcome.outputs)
        return outcome

    def _observe(
        self,
        event_time: float | None,
        source: object,
        bridge: object,
        at: float | None,
        closing: bool,
        outputs: list[Output],
    ) -> None:
        """:meth:`observe`, adding what fires to ``outputs``."""
        clocks = self._clocks.get(source)
        if clocks is None:
            clocks = self._clocks[source] = {}
        gone = self._gone.get(source)
        if gone is None:
            gone = self._gone[source] = set()
        changed = source not in self._now
        if closing:
            if bridge not in gone:
                gone.add(bridge)
                changed = True
        elif gone and bridge in gone:
            gone.discard(bridge)
            changed = True
        if event_time is not None and event_time > clocks.get(bridge, _NEVER):
            clocks[bridge] = event_time
            changed = True
        if at is not None:
            seen = self._seen.setdefault(source, {})
            seen[bridge] = max(at, seen.get(bridge, at))
            before = len(gone)
            gone.update(b for b, t in seen.items() if t < at - BRIDGE_EXPIRY_S)
            changed = changed or len(gone) != before
        if not changed:  # the clock depends on the clocks and the gone bridges only
            now = self._now[source]
        elif not gone and len(clocks) == 1 and bridge in clocks:
            self._now[source] = now = clocks[bridge]  # one live bridge (offline: the stream)
        else:
            self._now[source] = now = self._clock(source)
        timers = self._timers.get(source)
        if now is not None and timers and timers[0][0] < now:
            self._fire(source, now, timers, outputs)

    def _fire(
        self, source: object, now: float, timers: list[tuple[float, str]], outputs: list[Output]
    ) -> None:
        while timers and timers[0][0] < now:
            deadline, lock_id = heapq.heappop(timers)
            if self._scheduled.get(lock_id) != (source, deadline):
                continue  # superseded by an earlier entry for the same lock
            del self._scheduled[lock_id]
            state = self.store.get(lock_id)
            current = self.detector.next_deadline(state) if state is not None else None
            if state is None or current is None:
                continue
            if current >= now:
                self._schedule(lock_id, state, source)  # heard since; wait for its new deadline
                continue
            # One deadline at a time, each judged just past itself: what fires, and the
            # status updates in between, never depend on how far the clock jumped.
            original, saved, mark, due = state, snapshot(state), len(outputs), current
            try:
                while current is not None and current < now:
                    result = self.detector.tick(state, math.nextafter(current, math.inf))
                    state = result.state
                    outputs.extend(result.outputs)
                    following = self.detector.next_deadline(state)
                    if following is not None and following <= current:
                        following = None  # no progress: never loop on a timer already due
                    current = following
            except Exception as exc:  # noqa: BLE001 - a bug in one rule must not half-apply
                # All or nothing per lock, as for a message: the lock keeps its state, its
                # outputs of this firing are dropped, and it is not scheduled again (it would
                # raise again): its next message sets its timer anew.
                restore(original, saved)
                self.store[lock_id] = original
                del outputs[mark:]
                self.timer_failures.append(
                    TimerFailure(lock_id, due, f"{type(exc).__name__}: {exc}")
                )
                continue
            self.store[lock_id] = state
            if current is not None:
                self._schedule(lock_id, state, source)

    def _schedule(self, lock_id: str, state: LockState, source: object) -> None:
        # Deadlines mostly move later (the lock is heard again), so an existing earlier entry
        # is kept and re-checked when it comes due; the heaps hold one live entry per lock.
        deadline = self.detector.next_deadline(state)
        if deadline is None:
            return
        scheduled = self._scheduled.get(lock_id)
        if scheduled is None or scheduled[0] != source or deadline < scheduled[1]:
            self._scheduled[lock_id] = (source, deadline)
            heapq.heappush(self._timers.setdefault(source, []), (deadline, lock_id))
