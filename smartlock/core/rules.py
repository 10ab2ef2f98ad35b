"""Trip rules: the event-time state machine of one sealed container in transit.

Every function here is pure with respect to the outside world: it reads the reading, the
trip and the geofences, mutates only the :class:`~smartlock.core.state.Trip` it is given
and appends alerts to an :class:`Effects` collector. Time is the event time stamped by
the lock or the gate, never the wall clock.

The pipeline. Each lock message becomes one :class:`Reading`; :func:`judge_reading` hands
it to every rule of :data:`TRIP_RULES`, in that order, and every rule has the same
signature ``rule(ctx, trip, reading, effects) -> None`` and decides for itself whether the
reading concerns it (like the handlers of Traccar's position pipeline). A rule that finds
the reading's position unusable says so in ``effects.refused_fix``; the position rules after
it then leave the reading alone. Event-time timers (:data:`TIMER_RULES`) have the same shape
with a :class:`Tick` instead of a reading; they run when the clock passes a deadline and
before every reading.

Order of judgement. Lock messages are judged in sequence order (``seq`` is strictly
increasing per lock; older or repeated ``seq`` values are rejected before they get here).
Fixes a lock stored while out of coverage and uploads later in a burst therefore arrive
in order and are judged like any other fix; alerts they raise carry their own event time.
A fix whose event time is older than the trip's newest fix (a device clock step, or a
backlog interleaved with live fixes) is still judged against the corridor in sequence
order, but it never moves the trip's position, stop or jump reference backwards in time.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smartlock.contract.models import (
    SEVERITY,
    AlertType,
    LockEvent,
    LockEventType,
    LockTelemetry,
    SealState,
    Severity,
    TripState,
    format_epoch,
)
from smartlock.core.geofence import Geofences
from smartlock.core.limits import DetectionSettings
from smartlock.core.state import AlertRecord, Fix, Trip

#: ``declaration_id`` of alerts about locks that no declaration binds.
UNDECLARED = "UNDECLARED"

_ALLOWED_STOP_ROLES = frozenset({"rest_area", "supervised_site"})
_MONITORED = frozenset({TripState.SEALED, TripState.IN_TRANSIT, TripState.DEVIATING})

_SEAL_FROM_EVENT = {
    LockEventType.SEALED: SealState.SEALED,
    LockEventType.UNSEALED: SealState.UNSEALED,
    LockEventType.TAMPER: SealState.TAMPERED,
}


def alert_id(declaration_id: str, lock_id: str, type_: AlertType, cause: str) -> str:
    """Deterministic alert id: the same cause always yields the same id."""
    digest = hashlib.sha256(
        f"{declaration_id}|{lock_id}|{type_.value}|{cause}".encode()
    ).hexdigest()
    return f"al-{digest[:20]}"


@dataclass(slots=True)
class Reading:
    """One accepted lock message (telemetry or event), as the rules see it.

    Attributes:
        lock_id, seq: the lock and its sequence number.
        ts: event time (POSIX seconds).
        clock: the clock when the message was published (the largest event time published
            before it, CONTRACT section 3); None if nothing was published before.
        lat, lon: where the lock was (an event may have no position).
        fix: the position to judge, for telemetry only (an event's position is not a fix).
        speed_kmh, hdop, battery_pct: telemetry's optional readings.
        seal: the seal state read (telemetry) or implied (sealed, unsealed, tamper events).
        event: the event type; None for telemetry.
    """

    lock_id: str
    seq: int
    ts: float
    clock: float | None
    lat: float | None = None
    lon: float | None = None
    fix: Fix | None = None
    speed_kmh: float | None = None
    hdop: float | None = None
    battery_pct: float | None = None
    seal: SealState | None = None
    event: LockEventType | None = None

    @classmethod
    def of(
        cls,
        msg: LockTelemetry | LockEvent,
        clock: float | None,
        to_metric: Callable[[float, float], tuple[float, float]] | None = None,
    ) -> Reading:
        """The reading of a lock message published at ``clock``.

        With ``to_metric`` (the geofences' projection), the fix is projected here, once.
        """
        ts = msg.ts.timestamp()
        seq = msg.seq
        if isinstance(msg, LockTelemetry):
            lat, lon = msg.lat, msg.lon
            x, y = to_metric(lon, lat) if to_metric is not None else (None, None)
            # positional: the fields in the order declared above (a third cheaper per message)
            return cls(
                msg.lock_id,
                seq,
                ts,
                clock,
                lat,
                lon,
                Fix(seq, ts, lat, lon, x, y),
                msg.speed_kmh,
                msg.hdop,
                msg.battery_pct,
                msg.seal,
            )
        kind = msg.type
        return cls(
            msg.lock_id,
            seq,
            ts,
            clock,
            msg.lat,
            msg.lon,
            None,
            None,
            None,
            None,
            _SEAL_FROM_EVENT.get(kind),
            kind,
        )


@dataclass(slots=True)
class Tick:
    """The clock passing a lock's deadline: the input of the timer rules."""

    lock_id: str
    now: float


@dataclass
class RaisedAlert:
    """An alert raised during one step, before it is turned into an output message."""

    alert_id: str
    declaration_id: str
    lock_id: str
    type: AlertType
    ts: float
    lat: float | None
    lon: float | None
    detail: dict[str, Any]


@dataclass(slots=True)
class Effects:
    """What one step produced besides the new state, and what its rules learned on the way.

    Attributes:
        alerts: the alerts raised, in order.
        refused_fix: why the reading's position is not used (``imprecise``,
            ``implausible_jump``); None while it is usable.
        zones: the zones the reading's fix lies in, once a rule looked them up.
    """

    alerts: list[RaisedAlert] = field(default_factory=list)
    refused_fix: str | None = None
    zones: list[Any] | None = None


@dataclass(frozen=True)
class Context:
    """What the rules need besides the trip: limits and geofences."""

    limits: DetectionSettings
    geofences: Geofences


def raise_alert(
    trip: Trip,
    lock_id: str,
    effects: Effects,
    type_: AlertType,
    cause: str,
    *,
    ts: float,
    lat: float | None,
    lon: float | None,
    detail: dict[str, Any] | None = None,
) -> str | None:
    """Records an alert on the trip once; returns its id, or None if it was raised before."""
    aid = alert_id(trip.declaration_id, lock_id, type_, cause)
    if trip.alert(aid) is not None:
        return None
    severity = SEVERITY[type_]
    trip.alerts.append(
        AlertRecord(
            alert_id=aid, type=type_, severity=severity, ts=ts, open=severity is not Severity.INFO
        )
    )
    effects.alerts.append(
        RaisedAlert(
            alert_id=aid,
            declaration_id=trip.declaration_id,
            lock_id=lock_id,
            type=type_,
            ts=ts,
            lat=lat,
            lon=lon,
            detail=dict(detail or {}),
        )
    )
    return aid


def close_alert(trip: Trip, aid: str | None) -> None:
    """Marks an alert as no longer open because its condition ended (amber conditions only)."""
    if aid is None:
        return
    record = trip.alert(aid)
    if record is not None and record.severity is Severity.AMBER:
        record.open = False


def usable_fix(reading: Reading, effects: Effects) -> Fix | None:
    """The reading's fix, unless it has none or an earlier rule refused it."""
    return reading.fix if effects.refused_fix is None else None


def xy(ctx: Context, fix: Fix) -> tuple[float, float]:
    """The fix in the geofences' metric frame, projected once (and kept on the fix)."""
    x, y = fix.x, fix.y
    if x is None or y is None:
        x, y = fix.x, fix.y = ctx.geofences.to_metric(fix.lon, fix.lat)
    return x, y


def distance_m(ctx: Context, a: Fix, b: Fix) -> float:
    """Metres between two fixes (as :meth:`Geofences.distance_m`, from their projections)."""
    ax, ay, bx, by = a.x, a.y, b.x, b.y
    if ax is None or ay is None:
        ax, ay = xy(ctx, a)
    if bx is None or by is None:
        bx, by = xy(ctx, b)
    return math.hypot(bx - ax, by - ay)


def _zones(ctx: Context, fix: Fix, effects: Effects) -> list[Any]:
    zones = effects.zones
    if zones is None:
        x, y = fix.x, fix.y
        if x is None or y is None:
            x, y = xy(ctx, fix)
        zones = effects.zones = ctx.geofences.zones_at_xy(x, y)
    return zones


def _newest(trip: Trip, fix: Fix) -> bool:
    """After :func:`position_rule`: the fix is the trip's newest position by event time."""
    return trip.position is not None and fix.ts >= trip.position.ts


# --------------------------------------------------------------------------- timers


def silence_timer(ctx: Context, trip: Trip, tick: Tick, effects: Effects) -> None:
    """Raises signal_lost if, at event time ``tick.now``, the lock has been silent too long.

    Runs when the clock passes the lock's deadline (the lock is still silent) and when the
    lock is heard again after a gap in its own event times; either way the alert is
    stamped at the deadline and its id names the last message heard before the silence.
    """
    if not trip.monitored and trip.state is not TripState.ARRIVED:
        return
    last = trip.last_heard_ts
    if last is None or trip.silent:
        return
    deadline = last + ctx.limits.silence_limit_s
    if tick.now <= deadline:
        return
    trip.signal_alert_for = last
    trip.silent = True
    pos = trip.position
    raise_alert(
        trip,
        tick.lock_id,
        effects,
        AlertType.SIGNAL_LOST,
        f"{last}",
        ts=deadline,
        lat=pos.lat if pos else None,
        lon=pos.lon if pos else None,
        detail={"last_heard_ts": format_epoch(last), "silence_limit_s": ctx.limits.silence_limit_s},
    )


def overdue_timer(ctx: Context, trip: Trip, tick: Tick, effects: Effects) -> None:
    """Raises overdue once if, at event time ``tick.now``, the trip is past eta plus grace."""
    if trip.overdue_raised or not (trip.monitored or trip.state is TripState.DECLARED):
        return
    deadline = trip.eta_ts + ctx.limits.overdue_grace_s
    if tick.now <= deadline:
        return
    trip.overdue_raised = True
    pos = trip.position
    raise_alert(
        trip,
        tick.lock_id,
        effects,
        AlertType.OVERDUE,
        "eta",
        ts=deadline,
        lat=pos.lat if pos else None,
        lon=pos.lon if pos else None,
        detail={"eta_ts": format_epoch(trip.eta_ts), "grace_s": ctx.limits.overdue_grace_s},
    )


TimerRule = Callable[[Context, Trip, Tick, Effects], None]

#: The timer rules, in the order they run.
TIMER_RULES: tuple[TimerRule, ...] = (silence_timer, overdue_timer)


def judge_tick(ctx: Context, trip: Trip, tick: Tick, effects: Effects) -> None:
    """Runs every timer rule for the clock passing ``tick.now``."""
    for rule in TIMER_RULES:
        rule(ctx, trip, tick, effects)


def next_deadline(trip: Trip, ctx: Context) -> float | None:
    """Earliest event time at which a timer rule could fire for this trip, if any."""
    state = trip.state
    monitored = state in _MONITORED
    silence = None
    if (
        (monitored or state is TripState.ARRIVED)
        and trip.last_heard_ts is not None
        and not trip.silent
    ):
        silence = trip.last_heard_ts + ctx.limits.silence_limit_s
    if not trip.overdue_raised and (monitored or state is TripState.DECLARED):
        overdue = trip.eta_ts + ctx.limits.overdue_grace_s
        return overdue if silence is None or overdue < silence else silence
    return silence


# --------------------------------------------------------------------------- reading rules


def heard_rule(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """A message from the lock arrived: judge the silence before it, then note it.

    A silence ends only with a *current* message: one whose event time is within the
    silence limit of the clock. Readings the lock stored out of coverage and uploads later
    are older than that; they are judged with their own event time but neither end the
    silence nor start a new one, so one silence raises at most one ``signal_lost``.
    """
    ts = reading.ts
    deadline = next_deadline(trip, ctx)
    if deadline is not None and ts > deadline:  # else no timer rule could fire
        judge_tick(ctx, trip, Tick(reading.lock_id, ts), effects)
    if trip.last_heard_ts is None or ts > trip.last_heard_ts:
        trip.last_heard_ts = ts
    current = reading.clock is None or ts + ctx.limits.silence_limit_s >= reading.clock
    if trip.silent and current:
        trip.silent = False
        close_alert(
            trip,
            alert_id(
                trip.declaration_id,
                reading.lock_id,
                AlertType.SIGNAL_LOST,
                f"{trip.signal_alert_for}",
            ),
        )


def battery_rule(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """Raises low_battery once per trip (a reading below the limit or a low_battery event)."""
    pct = reading.battery_pct
    if pct is None and reading.event is not LockEventType.LOW_BATTERY:
        return
    if trip.battery_alerted:
        return
    if pct is not None and pct >= ctx.limits.low_battery_pct:
        return
    trip.battery_alerted = True
    detail: dict[str, Any] = {"limit_pct": ctx.limits.low_battery_pct}
    if pct is not None:
        detail["battery_pct"] = pct
    raise_alert(
        trip,
        reading.lock_id,
        effects,
        AlertType.LOW_BATTERY,
        f"{reading.seq}",
        ts=reading.ts,
        lat=reading.lat,
        lon=reading.lon,
        detail=detail,
    )


def precision_rule(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """A fix too imprecise to judge anything by is not used (the message still counts as heard)."""
    if reading.fix is not None and reading.hdop is not None and reading.hdop > ctx.limits.max_hdop:
        effects.refused_fix = "imprecise"


def jump_rule(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """Implausible jump: a fix farther from the last plausible one than the lock can travel.

    The first fix of a jump raises ``implausible_jump``; the fixes are not used until the
    lock has reported from the new place ``jump_reanchor_fixes`` times in a row.
    """
    fix = reading.fix if effects.refused_fix is None else None  # usable_fix, inlined
    if fix is None:
        return
    anchor = trip.anchor
    if anchor is None:
        trip.anchor = fix
        return
    dt = fix.ts - anchor.ts
    if dt <= 0:
        return  # older than the reference: judged, but no speed can be derived
    dist = distance_m(ctx, anchor, fix)
    speed_kmh = dist / dt * 3.6
    if dist <= ctx.limits.jump_min_distance_m or speed_kmh <= ctx.limits.jump_speed_kmh:
        trip.anchor = fix
        trip.jump_streak = 0
        return
    trip.jump_streak += 1
    if trip.jump_streak == 1:
        raise_alert(
            trip,
            reading.lock_id,
            effects,
            AlertType.IMPLAUSIBLE_JUMP,
            f"{fix.seq}",
            ts=fix.ts,
            lat=fix.lat,
            lon=fix.lon,
            detail={
                "distance_m": round(dist, 1),
                "seconds": round(dt, 3),
                "speed_kmh": round(speed_kmh, 1),
                "from": {"lat": anchor.lat, "lon": anchor.lon, "ts": format_epoch(anchor.ts)},
            },
        )
    if trip.jump_streak >= ctx.limits.jump_reanchor_fixes:
        # The lock keeps reporting from the new place: accept it as the real position.
        trip.anchor = fix
        trip.jump_streak = 0
        return
    effects.refused_fix = "implausible_jump"


def position_rule(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """A usable fix moves the trip's position (never backwards in event time); a sealed
    trip whose lock has left the origin site is in transit."""
    fix = reading.fix if effects.refused_fix is None else None  # usable_fix, inlined
    if fix is None:
        return
    if trip.position is None or fix.ts >= trip.position.ts:
        trip.position = fix
    if trip.state is TripState.SEALED and not ctx.geofences.in_zone_xy(
        trip.origin_site, *xy(ctx, fix)
    ):
        trip.state = TripState.IN_TRANSIT


def corridor_rule(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """Route deviation after ``deviation_confirm_fixes`` fixes off the corridor (rest areas,
    the origin site and the destination gate count as on it); route_rejoined when back."""
    fix = reading.fix if effects.refused_fix is None else None  # usable_fix, inlined
    if fix is None or trip.state not in _MONITORED:
        return
    geo = ctx.geofences
    zones = _zones(ctx, fix, effects)
    x, y = fix.x, fix.y
    if x is None or y is None:
        x, y = xy(ctx, fix)
    on_route = geo.in_corridor_xy(trip.corridor_id, x, y) or any(
        z.role == "rest_area" or z.id in (trip.origin_site, trip.destination_gate) for z in zones
    )
    if on_route:
        if trip.deviating:
            trip.deviating = False
            trip.state = TripState.IN_TRANSIT
            raise_alert(
                trip,
                reading.lock_id,
                effects,
                AlertType.ROUTE_REJOINED,
                f"{fix.seq}",
                ts=fix.ts,
                lat=fix.lat,
                lon=fix.lon,
                detail={
                    "corridor_id": trip.corridor_id,
                    "deviation_alert_id": trip.excursion_alert,
                },
            )
        trip.outside_streak = 0
        trip.outside_first = None
        return
    trip.outside_streak += 1
    if trip.outside_first is None:
        trip.outside_first = fix
    if trip.deviating or trip.outside_streak < ctx.limits.deviation_confirm_fixes:
        return
    trip.deviating = True
    trip.state = TripState.DEVIATING
    first = trip.outside_first
    trip.excursion_alert = (
        raise_alert(
            trip,
            reading.lock_id,
            effects,
            AlertType.ROUTE_DEVIATION,
            f"{first.seq}",
            ts=fix.ts,
            lat=fix.lat,
            lon=fix.lon,
            detail={
                "corridor_id": trip.corridor_id,
                "distance_m": round(geo.corridor_distance_xy(trip.corridor_id, *xy(ctx, fix)), 1),
                "buffer_m": geo.corridors[trip.corridor_id].buffer_m,
                "left_corridor_ts": format_epoch(first.ts),
                "fixes_outside": trip.outside_streak,
            },
        )
        or trip.excursion_alert
    )


def arrival_rule(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """The newest fix says whether the lock is inside its destination gate's zone; a
    monitored trip that got there has arrived."""
    fix = reading.fix if effects.refused_fix is None else None  # usable_fix, inlined
    if fix is None or not _newest(trip, fix):
        return
    trip.in_destination = any(z.id == trip.destination_gate for z in _zones(ctx, fix, effects))
    if trip.in_destination and trip.monitored:
        trip.state = TripState.ARRIVED


def stop_rule(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """Unauthorized stop: the newest fixes stayed within ``stop_radius_m`` for longer than
    ``stop_limit_s`` outside a rest area, supervised site, origin or destination."""
    fix = reading.fix if effects.refused_fix is None else None  # usable_fix, inlined
    if fix is None or trip.state not in _MONITORED or not _newest(trip, fix):
        return
    anchor = trip.stop_anchor
    limits = ctx.limits
    if anchor is not None and distance_m(ctx, anchor, fix) <= limits.stop_radius_m:
        if (
            trip.stop_alert is None
            and fix.ts - anchor.ts > limits.stop_limit_s
            and not _stop_allowed(trip, _zones(ctx, fix, effects))
        ):
            trip.stop_alert = raise_alert(
                trip,
                reading.lock_id,
                effects,
                AlertType.UNAUTHORIZED_STOP,
                f"{anchor.seq}",
                ts=fix.ts,
                lat=fix.lat,
                lon=fix.lon,
                detail={
                    "stopped_since": format_epoch(anchor.ts),
                    "stopped_s": round(fix.ts - anchor.ts, 3),
                    "stop_limit_s": limits.stop_limit_s,
                },
            )
        return
    close_alert(trip, trip.stop_alert)  # moving again: the stop is over
    trip.stop_alert = None
    trip.stop_anchor = fix


def _stop_allowed(trip: Trip, zones: list[Any]) -> bool:
    return any(
        z.role in _ALLOWED_STOP_ROLES or z.id in (trip.origin_site, trip.destination_gate)
        for z in zones
    )


def seal_rule(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """Applies a seal state read from telemetry or implied by a lock event.

    Runs after the position rules, so a seal reading at the gate is judged where the lock
    is now: unsealed inside the destination after release closes the trip; any other
    opening after sealing is a seal breach (once per breach, until sealed again).
    """
    seal = reading.seal
    if seal is None:
        return
    if seal is SealState.SEALED:
        if trip.state is TripState.DECLARED:
            trip.state = TripState.SEALED
            trip.sealed_ts = reading.ts
        trip.breach_open = False
        return
    if trip.sealed_ts is None or trip.state is TripState.CLOSED:
        return  # not sealed yet (still being loaded) or already written off
    if trip.state is TripState.RELEASED and _inside_destination(ctx, trip, reading):
        trip.state = TripState.CLOSED  # unsealed at the gate after release: the loop is closed
        return
    trip.seal_intact = False
    if trip.breach_open:
        return
    trip.breach_open = True
    raise_alert(
        trip,
        reading.lock_id,
        effects,
        AlertType.SEAL_BREACH,
        f"{reading.seq}",
        ts=reading.ts,
        lat=reading.lat,
        lon=reading.lon,
        detail={"seal": seal.value, "seq": reading.seq},
    )


def _inside_destination(ctx: Context, trip: Trip, reading: Reading) -> bool:
    if reading.lat is None or reading.lon is None:
        return trip.in_destination
    return ctx.geofences.in_zone(trip.destination_gate, reading.lon, reading.lat)


TripRule = Callable[[Context, Trip, Reading, Effects], None]

#: The trip rules, in the order every reading goes through them.
TRIP_RULES: tuple[TripRule, ...] = (
    heard_rule,  # timers due before the reading, then the lock counts as heard
    battery_rule,
    precision_rule,  # a fix with too large an hdop is not used
    jump_rule,  # nor one that jumped farther than the lock can travel
    position_rule,
    corridor_rule,
    arrival_rule,
    stop_rule,
    seal_rule,  # last: a seal reading is judged where the lock is now
)


def judge_reading(ctx: Context, trip: Trip, reading: Reading, effects: Effects) -> None:
    """Runs every trip rule on one reading, in :data:`TRIP_RULES` order."""
    for rule in TRIP_RULES:
        rule(ctx, trip, reading, effects)
