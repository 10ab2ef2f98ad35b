"""The detection core: one pure step function per lock, shared by every runtime.

``smartlock evaluate`` and the Faust worker both drive a :class:`Detector` the same way:

1. :meth:`Detector.check` rejects what no state can make valid (bad signature, a
   declaration naming unknown geofences);
2. :meth:`Detector.route` names the locks a message concerns (the partition keys);
3. :meth:`Detector.step` applies the message to one lock's :class:`LockState`;
4. :meth:`Detector.tick` fires event-time timers once the stream's watermark has passed
   :meth:`Detector.next_deadline`.

Nothing here reads a clock, a file or a socket, so the same stream always yields the same
outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from smartlock.contract.codec import Envelope, canonical_json, signature_refusal
from smartlock.contract.models import (
    SEVERITY,
    Alert,
    AlertResolution,
    AlertType,
    Colour,
    DeclarationCancellation,
    GateArrival,
    GateVerdict,
    LockEvent,
    LockTelemetry,
    ManualOutcome,
    Severity,
    TransitDeclaration,
    TripState,
    TripStatus,
    Verdict,
)
from smartlock.contract.topics import alert_topic, status_topic, verdict_topic
from smartlock.core import rules
from smartlock.core.declaration import Places, check_contract_declaration, place_errors
from smartlock.core.geofence import Geofences
from smartlock.core.limits import DetectionSettings
from smartlock.core.state import MEMORY, LockState, Trip
from smartlock.core.verdict import judge_arrival
from smartlock.core.writeoff import VerdictRecord, verdict_records

_LOCK_MESSAGES = (LockTelemetry, LockEvent)


@dataclass(frozen=True)
class Output:
    """One message the core wants published.

    Attributes:
        kind: ``alert``, ``status`` or ``verdict``.
        topic: the MQTT topic of CONTRACT section 2.
        payload: the JSON-ready payload.
        retain: publish retained (TripStatus).
        manual: for a verdict that records an officer's hand inspection: the outcome, officer
            and note (the audit trail and write-off say who decided).
    """

    kind: str
    topic: str
    payload: dict[str, Any]
    retain: bool = False
    manual: dict[str, Any] | None = None

    def line(self) -> dict[str, Any]:
        """The trace/evaluate form: ``{"topic": ..., "payload": ...}``."""
        return {"topic": self.topic, "payload": self.payload}


@dataclass(frozen=True)
class Rejection:
    """Why a message was not accepted; becomes a dead letter."""

    reason: str
    detail: str


@dataclass(slots=True)
class StepResult:
    """One step's new state, its messages, its audit and write-off records, or why not.

    ``records`` are the :class:`~smartlock.core.writeoff.VerdictRecord` of the step's
    verdicts, made from the trip as the verdict left it (persisted by the worker, printed
    by ``smartlock evaluate --records``); they are not messages, so not in ``outputs``.
    """

    state: LockState
    outputs: list[Output] = field(default_factory=list)
    rejection: Rejection | None = None
    records: list[VerdictRecord] = field(default_factory=list)


class Detector:
    """Runs the trip rules for one lock at a time.

    Args:
        limits: the detection limits.
        geofences: loaded corridors and zones.
        signing_keys: lock id -> secret. When non-empty, lock messages must be signed.
    """

    def __init__(
        self,
        limits: DetectionSettings,
        geofences: Geofences,
        signing_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.ctx = rules.Context(limits=limits, geofences=geofences)
        self.places = Places.from_geofences(geofences)
        self.keys = dict(signing_keys or {})
        self._to_metric = geofences.to_metric

    # ----------------------------------------------------------------- stateless

    def prepare(self, envelopes: list[Envelope]) -> None:
        """Optional, before a batch: projects the batch's fixes in one vectorised call.

        Outputs are the same with or without it; with it, each fix costs a dict lookup
        instead of a PROJ call. The projections are kept until the next batch.
        """
        self.ctx.geofences.project_ahead(
            [(m.lon, m.lat) for m in (e.message for e in envelopes) if type(m) is LockTelemetry]
        )

    def check(self, env: Envelope) -> Rejection | None:
        """Stateless admission: signatures and declarations that name unknown places."""
        msg = env.message
        if not self.keys and type(msg) in _LOCK_MESSAGES:  # unsigned: nothing to check
            return None
        refused = signature_refusal(env, self.keys)
        if refused is not None:
            return Rejection(*refused)
        if isinstance(msg, TransitDeclaration):
            return self._check_declaration(msg)
        return None

    def _check_declaration(self, decl: TransitDeclaration) -> Rejection | None:
        errors = place_errors(
            self.places, decl.corridor_id, decl.mode.value, decl.origin_site, decl.destination_gate
        )
        if errors:
            return Rejection(errors[0].reason, errors[0].message)
        # The Hong Kong road cargo rules that a contract payload can show (specific cargo
        # descriptions, complete items, plate format) hold for declarations published
        # straight on MQTT too, not only for those that came through the HTTP intake.
        broken = check_contract_declaration(decl)
        if broken:
            return Rejection("declaration_rules", " ".join(e.message for e in broken))
        return None

    @staticmethod
    def route(env: Envelope) -> list[str]:
        """The lock ids a message concerns; the stream is partitioned by these keys."""
        msg = env.message
        if isinstance(msg, _LOCK_MESSAGES):
            return [msg.lock_id]
        if isinstance(msg, TransitDeclaration):
            return [c.lock_id for c in msg.bound_locks()]
        if isinstance(msg, DeclarationCancellation):
            return list(dict.fromkeys(msg.locks))
        return [msg.lock_id]

    @staticmethod
    def event_time(env: Envelope) -> float | None:
        """Event time that advances the watermark (device and gate messages only)."""
        msg = env.message
        if isinstance(msg, (LockTelemetry, LockEvent, GateArrival)):
            return msg.ts.timestamp()
        return None

    # ----------------------------------------------------------------- stateful

    def step(
        self, state: LockState | None, lock_id: str, env: Envelope, clock: float | None = None
    ) -> StepResult:
        """Applies one admitted message to one lock's state.

        ``clock`` is the clock when the message was published (CONTRACT section 3): the
        largest event time of the accepted messages published before it, None if none.

        The state is updated in place (copying it per event would cost more than the rules
        themselves) and returned in the result; pass a copy to keep the old one.
        """
        state = state if state is not None else LockState(lock_id=lock_id)
        trip = state.trip
        before = _status_key(trip) if trip is not None else None
        effects = rules.Effects()
        msg = env.message
        if type(msg) in _LOCK_MESSAGES:  # most messages: no verdict, so no records
            rejection = self._admit_seq(state, msg)  # type: ignore[arg-type]
            if rejection is None:
                self._lock_message(state, msg, clock, effects)  # type: ignore[arg-type]
            return self._result(state, before, effects, (), rejection)
        outputs: list[Output] = []
        if isinstance(msg, (LockTelemetry, LockEvent)):
            rejection = self._admit_seq(state, msg)
            if rejection is None:
                self._lock_message(state, msg, clock, effects)
        elif isinstance(msg, TransitDeclaration):
            rejection = self._declaration(state, lock_id, msg, env.raw)
        elif isinstance(msg, GateArrival):
            rejection = self._arrival(state, msg, outputs)
        elif isinstance(msg, AlertResolution):
            rejection = self._resolution(state, msg)
        elif isinstance(msg, DeclarationCancellation):
            rejection = self._cancellation(state, msg)
        elif isinstance(msg, ManualOutcome):
            rejection = self._manual_outcome(state, msg, outputs)
        else:  # pragma: no cover - the union is exhaustive
            raise TypeError(type(msg))
        result = self._result(state, before, effects, outputs, rejection)
        if outputs:
            result.records = [
                record
                for o in outputs
                if o.kind == "verdict"
                for record in verdict_records(state.trip, o.payload, o.manual)
            ]
        return result

    def tick(self, state: LockState, watermark: float) -> StepResult:
        """Fires the lock's event-time timers that the watermark has passed (in place)."""
        before = _status_key(state.trip)
        effects = rules.Effects()
        if state.trip is not None:
            rules.judge_tick(self.ctx, state.trip, rules.Tick(state.lock_id, watermark), effects)
        return self._result(state, before, effects, [], None)

    def next_deadline(self, state: LockState) -> float | None:
        """Event time after which :meth:`tick` could raise something for this lock."""
        return rules.next_deadline(state.trip, self.ctx) if state.trip is not None else None

    # ----------------------------------------------------------------- handlers

    def _admit_seq(self, state: LockState, msg: LockTelemetry | LockEvent) -> Rejection | None:
        """The anti-replay window of CONTRACT section 6 (v2), as in IPsec."""
        window = self.ctx.limits.seq_window
        full = (1 << window) - 1
        high = state.last_seq
        if high is None:
            state.last_seq, state.seq_seen = msg.seq, "1"
            return None
        seen = int(state.seq_seen, 16) if state.seq_seen else full
        if msg.seq > high:
            gap = msg.seq - high
            seen = ((seen << gap) | 1) & full if gap < window else 1
            state.last_seq = msg.seq
        elif msg.seq <= high - window:
            return Rejection(
                "stale_seq",
                f"lock {msg.lock_id} seq {msg.seq} is below the anti-replay window "
                f"(highest accepted {high}, window {window})",
            )
        elif seen >> (high - msg.seq) & 1:
            return Rejection("duplicate", f"lock {msg.lock_id} seq {msg.seq} was already accepted")
        else:
            seen |= 1 << (high - msg.seq)  # never accepted and inside the window: a late message
        state.seq_seen = format(seen, "x")
        return None

    def _lock_message(
        self,
        state: LockState,
        msg: LockTelemetry | LockEvent,
        clock: float | None,
        effects: rules.Effects,
    ) -> None:
        reading = rules.Reading.of(msg, clock, self._to_metric)
        if state.trip is None:
            self._unknown_lock(state, reading, effects)
            return
        rules.judge_reading(self.ctx, state.trip, reading, effects)

    @staticmethod
    def _unknown_lock(state: LockState, reading: rules.Reading, effects: rules.Effects) -> None:
        if state.unknown_alert is not None:
            return
        aid = rules.alert_id(
            rules.UNDECLARED, state.lock_id, AlertType.UNKNOWN_LOCK, f"{reading.seq}"
        )
        state.unknown_alert = aid
        effects.alerts.append(
            rules.RaisedAlert(
                alert_id=aid,
                declaration_id=rules.UNDECLARED,
                lock_id=state.lock_id,
                type=AlertType.UNKNOWN_LOCK,
                ts=reading.ts,
                lat=reading.lat,
                lon=reading.lon,
                detail={"seq": reading.seq, "reason": "no open declaration binds this lock"},
            )
        )

    def _declaration(
        self, state: LockState, lock_id: str, decl: TransitDeclaration, raw: dict[str, Any]
    ) -> Rejection | None:
        digest = hashlib.sha256(canonical_json(raw)).hexdigest()[:16]
        current = state.trip
        if decl.declaration_id in state.past_declarations:
            return Rejection(
                "declaration_closed",
                f"declaration {decl.declaration_id} was already closed for lock {lock_id}",
            )
        if current is not None and current.declaration_id == decl.declaration_id:
            if current.declaration_digest == digest:
                return Rejection(
                    "duplicate", f"declaration {decl.declaration_id} was already received"
                )
            if current.state is not TripState.DECLARED:
                if _plate_only(current, raw):
                    # The declarant changed the vehicle before arrival (a breakdown, a swap of
                    # tractors): the trip goes on with the new plate and everything else kept.
                    current.vehicle_plate = decl.vehicle_plate
                    current.declaration_digest = digest
                    return None
                return Rejection(
                    "declaration_locked",
                    f"declaration {decl.declaration_id} cannot be amended after sealing (state {current.state.value})",
                )
        elif current is not None and current.is_open:
            return Rejection(
                "lock_busy",
                f"lock {lock_id} is bound to open declaration {current.declaration_id}; close it first",
            )
        container = next(c.container_no for c in decl.bound_locks() if c.lock_id == lock_id)
        if current is not None and current.declaration_id != decl.declaration_id:
            state.past_declarations = [*state.past_declarations, current.declaration_id][-MEMORY:]
        state.trip = Trip(
            declaration_id=decl.declaration_id,
            declaration_digest=digest,
            container_no=container,
            vehicle_plate=decl.vehicle_plate,
            mode=decl.mode.value,
            corridor_id=decl.corridor_id,
            origin_site=decl.origin_site,
            destination_gate=decl.destination_gate,
            departure_ts=decl.departure_ts.timestamp(),
            eta_ts=decl.eta_ts.timestamp(),
            train_id=decl.train_id,
            amend_digest=amend_digest(raw),
        )
        state.unknown_alert = None
        return None

    def _arrival(
        self, state: LockState, arrival: GateArrival, outputs: list[Output]
    ) -> Rejection | None:
        key = hashlib.sha256(canonical_json(arrival.to_payload())).hexdigest()[:16]
        if key in state.judged_arrivals:
            return Rejection(
                "duplicate",
                f"arrival of lock {arrival.lock_id} at {arrival.gate_id} already judged",
            )
        state.judged_arrivals = [*state.judged_arrivals, key][-MEMORY:]
        trip = state.trip
        verdict, reasons = judge_arrival(trip, arrival, self.places.destination_gates)
        declaration_id = trip.declaration_id if trip is not None and trip.is_open else None
        if trip is not None and trip.is_open:
            trip.verdict = verdict.value
            trip.verdict_reasons = reasons
            trip.state = TripState.RELEASED if verdict is Verdict.RELEASE else TripState.INSPECT
        payload = GateVerdict(
            gate_id=arrival.gate_id,
            declaration_id=declaration_id,
            lock_id=arrival.lock_id,
            ts=arrival.ts,
            verdict=verdict,
            reasons=reasons,
        ).to_payload()
        outputs.append(Output("verdict", verdict_topic(arrival.gate_id), payload))
        return None

    @staticmethod
    def _manual_outcome(
        state: LockState, msg: ManualOutcome, outputs: list[Output]
    ) -> Rejection | None:
        """An officer's hand inspection: cleared releases (and writes off), seized closes."""
        key = "manual:" + hashlib.sha256(canonical_json(msg.to_payload())).hexdigest()[:16]
        if key in state.judged_arrivals:
            return Rejection(
                "duplicate", f"outcome for lock {msg.lock_id} by {msg.officer} already recorded"
            )
        state.judged_arrivals = [*state.judged_arrivals, key][-MEMORY:]
        trip = state.trip
        manual: dict[str, Any] = {"outcome": msg.outcome, "officer": msg.officer, "note": msg.note}
        said = f"officer {msg.officer} {msg.outcome} the container by hand: {msg.note}"
        if (
            trip is not None
            and not trip.is_open
            and trip.verdict is not None
            and trip.container_no == msg.container_no
        ):
            # The container's trip was judged already. Fallback mode: the gate sent the truck
            # to the officer, and the pipeline, back, released the queued arrival before it
            # read the officer's outcome; or the officer records a seizure again. The outcome
            # belongs to that declaration, never to an undeclared consignment: after a release,
            # cleared confirms it (its write-off stands, no second one) and seized overrules it;
            # after a seizure, cleared releases and writes off, seized is recorded again.
            declaration_id = trip.declaration_id
            released = trip.verdict == "release"
            if released:
                manual["after_release"] = True
            if msg.outcome == "cleared":
                verdict, reasons = Verdict.RELEASE, []
                if not released:
                    trip.state, trip.verdict, trip.verdict_reasons = (
                        TripState.RELEASED,
                        "release",
                        [],
                    )
            else:
                verdict, reasons = Verdict.INSPECT, [said]
                trip.state, trip.verdict, trip.verdict_reasons = (
                    TripState.CLOSED,
                    "inspect",
                    reasons,
                )
        elif trip is None or not trip.is_open:
            verdict, reasons, declaration_id = (
                Verdict.INSPECT,
                [f"no open declaration binds lock {msg.lock_id}", said],
                None,
            )
        elif msg.outcome == "cleared":
            verdict, reasons, declaration_id = Verdict.RELEASE, [], trip.declaration_id
            trip.state, trip.verdict, trip.verdict_reasons = TripState.RELEASED, "release", []
        else:
            verdict, reasons, declaration_id = Verdict.INSPECT, [said], trip.declaration_id
            trip.state, trip.verdict, trip.verdict_reasons = TripState.CLOSED, "inspect", reasons
        payload = GateVerdict(
            gate_id=msg.gate_id,
            declaration_id=declaration_id,
            lock_id=msg.lock_id,
            ts=msg.ts,
            verdict=verdict,
            reasons=reasons,
        ).to_payload()
        outputs.append(Output("verdict", verdict_topic(msg.gate_id), payload, manual=manual))
        return None

    @staticmethod
    def _cancellation(state: LockState, msg: DeclarationCancellation) -> Rejection | None:
        trip = state.trip
        if trip is None or trip.declaration_id != msg.declaration_id or not trip.is_open:
            return Rejection(
                "unknown_declaration",
                f"declaration {msg.declaration_id} is not open for lock {state.lock_id}",
            )
        if trip.state is not TripState.DECLARED:
            return Rejection(
                "declaration_departed",
                f"declaration {msg.declaration_id} cannot be cancelled after sealing "
                f"(state {trip.state.value})",
            )
        trip.state = TripState.CLOSED
        trip.verdict_reasons = [f"cancelled by the declarant: {msg.reason}"]
        state.past_declarations = [*state.past_declarations, trip.declaration_id][-MEMORY:]
        return None

    @staticmethod
    def _resolution(state: LockState, res: AlertResolution) -> Rejection | None:
        trip = state.trip
        record = trip.alert(res.alert_id) if trip is not None else None
        if trip is None or record is None or trip.declaration_id != res.declaration_id:
            return Rejection(
                "unknown_alert",
                f"alert {res.alert_id} is not an alert of declaration {res.declaration_id}",
            )
        if record.resolved_by is not None:
            return Rejection(
                "duplicate", f"alert {res.alert_id} was already resolved by {record.resolved_by}"
            )
        record.open = False
        record.resolved_by = res.operator
        record.resolved_note = res.note
        record.resolved_ts = res.ts.timestamp()
        return None

    # ----------------------------------------------------------------- outputs

    def _result(
        self,
        state: LockState,
        before: tuple[Any, ...] | None,
        effects: rules.Effects,
        outputs: list[Output] | tuple[()],
        rejection: Rejection | None,
    ) -> StepResult:
        alerts = effects.alerts
        result = [_alert_output(a) for a in alerts] if alerts else []
        if outputs:
            result.extend(outputs)
        trip = state.trip
        if trip is not None and _status_key(trip) != before:
            result.append(_status_output(state.lock_id, trip))
        return StepResult(state, result, rejection)


def _alert_output(a: rules.RaisedAlert) -> Output:
    payload = Alert(
        alert_id=a.alert_id,
        declaration_id=a.declaration_id,
        lock_id=a.lock_id,
        type=a.type,
        severity=SEVERITY[a.type],
        ts=datetime.fromtimestamp(a.ts, UTC),
        lat=a.lat,
        lon=a.lon,
        detail=a.detail,
    ).to_payload()
    return Output("alert", alert_topic(a.declaration_id), payload)


def colour(trip: Trip) -> Colour:
    """Red with an open red alert, amber with an open amber alert or a pending inspection."""
    open_severities = {a.severity for a in trip.alerts if a.open}
    if Severity.RED in open_severities:
        return Colour.RED
    if Severity.AMBER in open_severities or trip.state is TripState.INSPECT:
        return Colour.AMBER
    return Colour.GREEN


def amend_digest(raw: dict[str, Any]) -> str:
    """Digest of a declaration without its vehicle plate: equal for a plate-only amendment."""
    rest = {k: v for k, v in raw.items() if k != "vehicle_plate"}
    return hashlib.sha256(canonical_json(rest)).hexdigest()[:16]


def _plate_only(trip: Trip, raw: dict[str, Any]) -> bool:
    """A re-published declaration that changes only the plate, before the gate judged it."""
    return (
        trip.amend_digest is not None
        and trip.amend_digest == amend_digest(raw)
        and trip.verdict is None
        and trip.is_open
    )


def _status_key(trip: Trip | None) -> tuple[Any, ...] | None:
    if trip is None:
        return None
    if not trip.alerts:  # most trips: green (amber while a gate inspection is pending)
        state = trip.state
        return (
            trip.declaration_id,
            state,
            Colour.AMBER if state is TripState.INSPECT else Colour.GREEN,
            (),
        )
    return (trip.declaration_id, trip.state, colour(trip), tuple(trip.open_alert_ids()))


def trip_status(lock_id: str, trip: Trip) -> TripStatus:
    """The TripStatus message for a trip."""
    pos = trip.position
    return TripStatus(
        declaration_id=trip.declaration_id,
        lock_id=lock_id,
        state=trip.state,
        colour=colour(trip),
        last_ts=datetime.fromtimestamp(trip.last_heard_ts, UTC)
        if trip.last_heard_ts is not None
        else None,
        lat=pos.lat if pos else None,
        lon=pos.lon if pos else None,
        open_alerts=trip.open_alert_ids(),
    )


def _status_output(lock_id: str, trip: Trip) -> Output:
    return Output(
        "status",
        status_topic(trip.declaration_id),
        trip_status(lock_id, trip).to_payload(),
        retain=True,
    )
