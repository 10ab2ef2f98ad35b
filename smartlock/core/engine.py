"""The driver around :class:`~smartlock.core.detector.Detector`: state store, watermark, timers.

``smartlock evaluate`` runs one :class:`Engine` over a whole trace with a dict as store;
the Faust worker runs one per worker process over the partitions it owns, with a store
backed by its table. Both feed the same envelopes in the same per-lock order, so both
produce the same alerts with the same ids.

Watermark. Each *source* (a Kafka partition in the worker; the whole trace in evaluate)
has its own event-time clock: the largest event time seen on its device and gate messages
or announced by a watermark tick of the bridge. The engine's watermark is the minimum over
its sources, so a partition whose backlog is still being read never makes the locks in it
look silent. A timer rule fires when the watermark passes its deadline, and the alert is
stamped with the deadline itself; the same alert (same id) is raised if the lock is heard
again after the deadline before the watermark got there, so what fires never depends on
how locks interleave.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field

from smartlock.contract.codec import Envelope
from smartlock.core.detector import Detector, Output, Rejection
from smartlock.core.state import LockState


@dataclass
class Outcome:
    """What one input (or one watermark advance) produced."""

    outputs: list[Output] = field(default_factory=list)
    rejections: list[tuple[str, Rejection]] = field(default_factory=list)  # (lock id, why)


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
        self.watermark: float | None = None
        self._clocks: dict[object, float] = {}  # source -> largest event time seen in it
        self._timers: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}  # lock id -> its earliest entry in _timers

    def schedule_all(self, lock_ids: Iterable[str]) -> None:
        """Sets the timers of locks whose state was recovered (worker start or rebalance)."""
        for lock_id in lock_ids:
            state = self.store.get(lock_id)
            if state is not None:
                self._schedule(lock_id, state)

    def feed(
        self, env: Envelope, locks: Iterable[str] | None = None, source: object = None
    ) -> Outcome:
        """Processes one message, then fires the timers its event time makes due.

        Args:
            env: the validated message.
            locks: the locks to apply it to; default all locks it concerns. The Faust worker
                passes the one lock its Kafka record was keyed by.
            source: the stream it came from (the Kafka partition); None for a single stream.
        """
        outcome = Outcome()
        rejection = self.detector.check(env)
        targets = list(locks) if locks is not None else self.detector.route(env)
        if rejection is not None:
            outcome.rejections.extend((lock_id, rejection) for lock_id in targets)
            return outcome
        for lock_id in targets:
            result = self.detector.step(self.store.get(lock_id), lock_id, env)
            self.store[lock_id] = result.state
            outcome.outputs.extend(result.outputs)
            if result.rejection is not None:
                outcome.rejections.append((lock_id, result.rejection))
            self._schedule(lock_id, result.state)
        ts = self.detector.event_time(env)
        if ts is not None:
            outcome.outputs.extend(self.observe(ts, source).outputs)
        return outcome

    def expect(self, sources: Iterable[object]) -> None:
        """Declares sources that count before anything was seen in them (a worker's partitions).

        Until each has reported, the watermark stays put: a partition whose backlog has not
        been read yet must not let the others' clocks make its locks look silent.
        """
        for source in sources:
            self._clocks.setdefault(source, float("-inf"))

    def observe(self, event_time: float, source: object = None) -> Outcome:
        """Notes event time seen in a source (a message, or a bridge's watermark tick).

        The watermark moves to the minimum over the sources' clocks; due timers fire.
        """
        if event_time > self._clocks.get(source, float("-inf")):
            self._clocks[source] = event_time
        return self.advance(min(self._clocks.values()))

    def advance(self, event_time: float) -> Outcome:
        """Moves the watermark forward to ``event_time`` (never back) and fires due timers."""
        outcome = Outcome()
        if self.watermark is not None and event_time <= self.watermark:
            return outcome
        self.watermark = event_time
        while self._timers and self._timers[0][0] < event_time:
            deadline, lock_id = heapq.heappop(self._timers)
            if self._scheduled.get(lock_id) != deadline:
                continue  # superseded by an earlier entry for the same lock
            del self._scheduled[lock_id]
            state = self.store.get(lock_id)
            current = self.detector.next_deadline(state) if state is not None else None
            if state is None or current is None:
                continue
            if current >= event_time:
                self._schedule(
                    lock_id, state
                )  # the lock was heard since; wait for its new deadline
                continue
            result = self.detector.tick(state, event_time)
            self.store[lock_id] = result.state
            outcome.outputs.extend(result.outputs)
            self._schedule(lock_id, result.state)
        return outcome

    def _schedule(self, lock_id: str, state: LockState) -> None:
        # Deadlines mostly move later (the lock is heard again), so an existing earlier entry
        # is kept and re-checked when it comes due; the heap holds one live entry per lock.
        deadline = self.detector.next_deadline(state)
        if deadline is None:
            return
        scheduled = self._scheduled.get(lock_id)
        if scheduled is None or deadline < scheduled:
            self._scheduled[lock_id] = deadline
            heapq.heappush(self._timers, (deadline, lock_id))
