"""Gate verdict rules (CONTRACT section 4)."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from smartlock.contract.codec import RefusedArrival
from smartlock.contract.models import (
    GateArrival,
    GateVerdict,
    Severity,
    Verdict,
    format_epoch,
    iso6346_check_digit,
    normalise_plate,
)
from smartlock.core.state import Trip

_ISO6346 = re.compile(r"^[A-Z]{3}[UJZ][0-9]{7}$")


def refused_arrival_verdict(refused: RefusedArrival, ts: float) -> dict[str, Any]:
    """The ``inspect`` verdict payload for an arrival that could not be accepted.

    CONTRACT section 4: unknown or malformed arrivals get ``inspect``, never silence. The
    verdict names the gate from the topic, the lock if the payload named one, and why.
    """
    return GateVerdict(
        gate_id=refused.gate_id,
        declaration_id=None,
        lock_id=refused.lock_id or "",
        ts=datetime.fromtimestamp(ts, UTC),
        verdict=Verdict.INSPECT,
        reasons=[f"arrival message refused ({refused.reason}): {refused.detail[:500]}"],
    ).to_payload()


def _container_read_error(container_no: str) -> str | None:
    """Why a container number read at the gate is not a valid ISO 6346 number, if it is not."""
    if not _ISO6346.match(container_no):
        return f"container number {container_no} read at the gate is not an ISO 6346 number"
    expected = iso6346_check_digit(container_no[:10])
    if int(container_no[10]) != expected:
        return (
            f"container number {container_no} read at the gate has check digit "
            f"{container_no[10]}, expected {expected}"
        )
    return None


def judge_arrival(
    trip: Trip | None, arrival: GateArrival, known_gates: Collection[str] | None = None
) -> tuple[Verdict, list[str]]:
    """Decides release or inspect for a gate arrival, with every reason for inspect.

    ``release`` only if the lock and container match an open declaration for this gate,
    the plate matches, the seal stayed sealed from sealing to arrival, no red alert is
    unresolved, and the trip's newest fix lies inside the destination gate zone.

    Args:
        trip: the lock's current trip, or None if no declaration ever bound the lock.
        arrival: what the gate read.
        known_gates: the destination gate zones; an arrival at another gate id is a reason
            too (None: not checked).
    """
    if trip is None or not trip.is_open:
        # Every reason at once: an unknown gate, no declaration and a misread container.
        unknown: list[str] = []
        if known_gates is not None and arrival.gate_id not in known_gates:
            unknown.append(f"gate {arrival.gate_id} is not a known destination gate")
        unknown.append(f"no open declaration binds lock {arrival.lock_id}")
        misread = _container_read_error(arrival.container_no)
        if misread is not None:
            unknown.append(misread)
        return Verdict.INSPECT, unknown
    reasons: list[str] = []
    if trip.destination_gate != arrival.gate_id:
        reasons.append(
            f"declaration {trip.declaration_id} is for gate {trip.destination_gate}, "
            f"not {arrival.gate_id}"
        )
    if arrival.container_no != trip.container_no:
        reasons.append(
            f"container read at gate {arrival.container_no} does not match declared {trip.container_no}"
        )
    if normalise_plate(arrival.vehicle_plate) != normalise_plate(trip.vehicle_plate):
        reasons.append(
            f"vehicle plate {arrival.vehicle_plate} does not match declared {trip.vehicle_plate}"
        )
    if trip.sealed_ts is None:
        reasons.append("lock was never sealed")
    elif not trip.seal_intact:
        reasons.append("seal was opened or tampered with after sealing")
    for record in trip.alerts:
        if record.open and record.severity is Severity.RED:
            reasons.append(
                f"unresolved red alert {record.alert_id} ({record.type.value} at {format_epoch(record.ts)})"
            )
    if trip.position is None:
        reasons.append(
            f"no position received; arrival inside gate zone {trip.destination_gate} not shown"
        )
    elif not trip.in_destination:
        reasons.append(
            f"last fix ({format_epoch(trip.position.ts)}) is not inside gate zone {trip.destination_gate}"
        )
    return (Verdict.INSPECT, reasons) if reasons else (Verdict.RELEASE, [])
