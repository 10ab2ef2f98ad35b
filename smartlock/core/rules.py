"""Trip rules: the event-time state machine of one sealed container in transit.

Every function here is pure with respect to the outside world: it reads the event, the
trip and the geofences, mutates only the :class:`~smartlock.core.state.Trip` it is given
and appends alerts to an :class:`Effects` collector. Time is the event time stamped by
the lock or the gate, never the wall clock.

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
from dataclasses import dataclass, field
from typing import Any

from smartlock.contract.models import (
    SEVERITY,
    AlertType,
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


def alert_id(declaration_id: str, lock_id: str, type_: AlertType, cause: str) -> str:
    """Deterministic alert id: the same cause always yields the same id."""
    digest = hashlib.sha256(
        f"{declaration_id}|{lock_id}|{type_.value}|{cause}".encode()
    ).hexdigest()
    return f"al-{digest[:20]}"


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


@dataclass
class Effects:
    """What one step produced besides the new state."""

    alerts: list[RaisedAlert] = field(default_factory=list)


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
        RaisedAlert(aid, trip.declaration_id, lock_id, type_, ts, lat, lon, dict(detail or {}))
    )
    return aid


def close_alert(trip: Trip, aid: str | None) -> None:
    """Marks an alert as no longer open because its condition ended (amber conditions only)."""
    if aid is None:
        return
    record = trip.alert(aid)
    if record is not None and record.severity is Severity.AMBER:
        record.open = False


# --------------------------------------------------------------------------- heard / timers


def heard(
    trip: Trip, lock_id: str, ts: float, clock: float | None, ctx: Context, effects: Effects
) -> None:
    """A message from the lock arrived: judge the silence before it, then note it.

    Args:
        ts: the message's event time.
        clock: the clock when it was published (largest event time published before it,
            CONTRACT section 3); None if nothing was published before.

    A silence ends only with a *current* message: one whose event time is within the
    silence limit of the clock. Readings the lock stored out of coverage and uploads later
    are older than that; they are judged with their own event time but neither end the
    silence nor start a new one, so one silence raises at most one ``signal_lost``.
    """
    check_silence(trip, lock_id, ts, ctx, effects)
    check_overdue(trip, lock_id, ts, ctx, effects)
    if trip.last_heard_ts is None or ts > trip.last_heard_ts:
        trip.last_heard_ts = ts
    current = clock is None or ts + ctx.limits.silence_limit_s >= clock
    if trip.silent and current:
        trip.silent = False
        close_alert(trip, _signal_alert_id(trip, lock_id))


def _signal_alert_id(trip: Trip, lock_id: str) -> str:
    return alert_id(trip.declaration_id, lock_id, AlertType.SIGNAL_LOST, f"{trip.signal_alert_for}")


def check_silence(trip: Trip, lock_id: str, now: float, ctx: Context, effects: Effects) -> None:
    """Raises signal_lost if, at event time ``now``, the lock has been silent too long.

    Called when the clock passes the lock's deadline (the lock is still silent) and when
    the lock is heard again after a gap in its own event times; either way the alert is
    stamped at the deadline and its id names the last message heard before the silence.
    """
    if not trip.monitored and trip.state is not TripState.ARRIVED:
        return
    last = trip.last_heard_ts
    if last is None or trip.silent:
        return
    deadline = last + ctx.limits.silence_limit_s
    if now <= deadline:
        return
    trip.signal_alert_for = last
    trip.silent = True
    pos = trip.position
    raise_alert(
        trip,
        lock_id,
        effects,
        AlertType.SIGNAL_LOST,
        f"{last}",
        deadline,
        pos.lat if pos else None,
        pos.lon if pos else None,
        {"last_heard_ts": format_epoch(last), "silence_limit_s": ctx.limits.silence_limit_s},
    )


def check_overdue(trip: Trip, lock_id: str, now: float, ctx: Context, effects: Effects) -> None:
    """Raises overdue once if, at event time ``now``, the trip is past eta plus grace."""
    if trip.overdue_raised or not (trip.monitored or trip.state is TripState.DECLARED):
        return
    deadline = trip.eta_ts + ctx.limits.overdue_grace_s
    if now <= deadline:
        return
    trip.overdue_raised = True
    pos = trip.position
    raise_alert(
        trip,
        lock_id,
        effects,
        AlertType.OVERDUE,
        "eta",
        deadline,
        pos.lat if pos else None,
        pos.lon if pos else None,
        {"eta_ts": format_epoch(trip.eta_ts), "grace_s": ctx.limits.overdue_grace_s},
    )


def next_deadline(trip: Trip, ctx: Context) -> float | None:
    """Earliest event time at which a timer rule could fire for this trip, if any."""
    deadlines = []
    listening = trip.monitored or trip.state is TripState.ARRIVED
    if listening and trip.last_heard_ts is not None and not trip.silent:
        deadlines.append(trip.last_heard_ts + ctx.limits.silence_limit_s)
    if not trip.overdue_raised and (trip.monitored or trip.state is TripState.DECLARED):
        deadlines.append(trip.eta_ts + ctx.limits.overdue_grace_s)
    return min(deadlines) if deadlines else None


# --------------------------------------------------------------------------- seal


def seal_reading(
    trip: Trip,
    lock_id: str,
    seal: SealState,
    ts: float,
    lat: float | None,
    lon: float | None,
    seq: int,
    ctx: Context,
    effects: Effects,
) -> None:
    """Applies a seal state read from telemetry or implied by a lock event."""
    if seal is SealState.SEALED:
        if trip.state is TripState.DECLARED:
            trip.state = TripState.SEALED
            trip.sealed_ts = ts
        trip.breach_open = False
        return
    if trip.sealed_ts is None or trip.state is TripState.CLOSED:
        return  # not sealed yet (still being loaded) or already written off
    if trip.state is TripState.RELEASED and _inside_destination(trip, lat, lon, ctx):
        trip.state = TripState.CLOSED  # unsealed at the gate after release: the loop is closed
        return
    trip.seal_intact = False
    if trip.breach_open:
        return
    trip.breach_open = True
    raise_alert(
        trip,
        lock_id,
        effects,
        AlertType.SEAL_BREACH,
        f"{seq}",
        ts,
        lat,
        lon,
        {"seal": seal.value, "seq": seq},
    )


def _inside_destination(trip: Trip, lat: float | None, lon: float | None, ctx: Context) -> bool:
    if lat is None or lon is None:
        return trip.in_destination
    return ctx.geofences.in_zone(trip.destination_gate, lon, lat)


# --------------------------------------------------------------------------- position


def position_fix(
    trip: Trip, lock_id: str, fix: Fix, hdop: float | None, ctx: Context, effects: Effects
) -> None:
    """Judges one position fix: jump, corridor, arrival and stop rules."""
    if hdop is not None and hdop > ctx.limits.max_hdop:
        return  # too imprecise to judge anything by; the message still counts as heard
    if not _plausible(trip, lock_id, fix, ctx, effects):
        return
    newest = trip.position is None or fix.ts >= trip.position.ts
    if newest:
        trip.position = fix
    if trip.state is TripState.SEALED and not ctx.geofences.in_zone(
        trip.origin_site, fix.lon, fix.lat
    ):
        trip.state = TripState.IN_TRANSIT
    zones = ctx.geofences.zones_at(fix.lon, fix.lat)
    zone_ids = {z.id for z in zones}
    if trip.monitored:
        _judge_corridor(trip, lock_id, fix, zones, ctx, effects)
    if newest:
        trip.in_destination = trip.destination_gate in zone_ids
        if trip.in_destination and trip.monitored:
            trip.state = TripState.ARRIVED
        if trip.monitored:
            _judge_stop(trip, lock_id, fix, zones, ctx, effects)


def _plausible(trip: Trip, lock_id: str, fix: Fix, ctx: Context, effects: Effects) -> bool:
    """Implausible-jump rule. Returns False for a fix that must not be used."""
    anchor = trip.anchor
    if anchor is None:
        trip.anchor = fix
        return True
    dt = fix.ts - anchor.ts
    if dt <= 0:
        return True  # older than the reference: judged, but no speed can be derived
    dist = ctx.geofences.distance_m(anchor.lon, anchor.lat, fix.lon, fix.lat)
    speed_kmh = dist / dt * 3.6
    if dist <= ctx.limits.jump_min_distance_m or speed_kmh <= ctx.limits.jump_speed_kmh:
        trip.anchor = fix
        trip.jump_streak = 0
        return True
    trip.jump_streak += 1
    if trip.jump_streak == 1:
        raise_alert(
            trip,
            lock_id,
            effects,
            AlertType.IMPLAUSIBLE_JUMP,
            f"{fix.seq}",
            fix.ts,
            fix.lat,
            fix.lon,
            {
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
        return True
    return False


def _judge_corridor(
    trip: Trip, lock_id: str, fix: Fix, zones: list[Any], ctx: Context, effects: Effects
) -> None:
    geo = ctx.geofences
    on_route = geo.in_corridor(trip.corridor_id, fix.lon, fix.lat) or any(
        z.role == "rest_area" or z.id in (trip.origin_site, trip.destination_gate) for z in zones
    )
    if on_route:
        if trip.deviating:
            trip.deviating = False
            trip.state = TripState.IN_TRANSIT
            raise_alert(
                trip,
                lock_id,
                effects,
                AlertType.ROUTE_REJOINED,
                f"{fix.seq}",
                fix.ts,
                fix.lat,
                fix.lon,
                {"corridor_id": trip.corridor_id, "deviation_alert_id": trip.excursion_alert},
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
            lock_id,
            effects,
            AlertType.ROUTE_DEVIATION,
            f"{first.seq}",
            fix.ts,
            fix.lat,
            fix.lon,
            {
                "corridor_id": trip.corridor_id,
                "distance_m": round(geo.corridor_distance_m(trip.corridor_id, fix.lon, fix.lat), 1),
                "buffer_m": geo.corridors[trip.corridor_id].buffer_m,
                "left_corridor_ts": format_epoch(first.ts),
                "fixes_outside": trip.outside_streak,
            },
        )
        or trip.excursion_alert
    )


def _judge_stop(
    trip: Trip, lock_id: str, fix: Fix, zones: list[Any], ctx: Context, effects: Effects
) -> None:
    anchor = trip.stop_anchor
    limits = ctx.limits
    if (
        anchor is not None
        and ctx.geofences.distance_m(anchor.lon, anchor.lat, fix.lon, fix.lat)
        <= limits.stop_radius_m
    ):
        if (
            trip.stop_alert is None
            and fix.ts - anchor.ts > limits.stop_limit_s
            and not _stop_allowed(trip, zones)
        ):
            trip.stop_alert = raise_alert(
                trip,
                lock_id,
                effects,
                AlertType.UNAUTHORIZED_STOP,
                f"{anchor.seq}",
                fix.ts,
                fix.lat,
                fix.lon,
                {
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


# --------------------------------------------------------------------------- battery


def battery(
    trip: Trip,
    lock_id: str,
    ts: float,
    lat: float | None,
    lon: float | None,
    pct: float | None,
    cause: str,
    ctx: Context,
    effects: Effects,
) -> None:
    """Raises low_battery once per trip (from a reading below the limit or a low_battery event)."""
    if trip.battery_alerted:
        return
    if pct is not None and pct >= ctx.limits.low_battery_pct:
        return
    trip.battery_alerted = True
    detail: dict[str, Any] = {"limit_pct": ctx.limits.low_battery_pct}
    if pct is not None:
        detail["battery_pct"] = pct
    raise_alert(trip, lock_id, effects, AlertType.LOW_BATTERY, cause, ts, lat, lon, detail)
