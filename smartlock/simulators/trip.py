"""The trip of one given declaration: sealing at its origin site, then a fix a minute along
its corridor to its destination gate, with or without a detour off the road.

Used by ``smartlock simulate --declaration`` (the README's hand-run loop) and ``smartlock loop``.
Pure: messages are built, not published.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smartlock.contract.timestamps import parse_rfc3339
from smartlock.core.geofence import Geofences
from smartlock.simulators.fleet import Lock
from smartlock.simulators.routes import CorridorRoute

Message = tuple[str, dict[str, Any]]
#: Where a detour leaves the road (km from the origin) and how many fixes it lasts.
DEFAULT_DETOUR = (60.0, 20)


def drive(
    route: CorridorRoute,
    lock_id: str,
    depart: datetime,
    detour: tuple[float, int] | None = None,
    speed_kmh: float = 85.0,
    first_seq: int = 1,
) -> list[Message]:
    """Sealing at the origin, then a fix a minute at ``speed_kmh`` to the gate.

    Args:
        route: the corridor from origin site to gate.
        lock_id: the lock.
        depart: sealing time (event time of the first message).
        detour: (km where the truck leaves the road, fixes spent 2.5 km off it), or None.
        speed_kmh: cruising speed.
        first_seq: the sealing message's ``seq`` (the lock counts on from there). A lock's
            ``seq`` never goes back (CONTRACT section 6), so a lock driven again, after an
            earlier trip, must start above that trip's last ``seq``.
    """
    lock, t, messages = Lock(lock_id, None, first_seq - 1), depart.timestamp(), []
    lon, lat = route.at(0)
    messages.append(
        lock.message("events", t, {"type": "sealed", "lat": round(lat, 6), "lon": round(lon, 6)})
    )
    x = 0.0
    while x < route.length_km:
        t += 60
        y = 0.0
        if detour is not None and detour[0] <= x < detour[0] + 2:  # off the ramp and back
            y, step = 2500.0, 2.0 / detour[1]
        else:
            step = speed_kmh / 60
        x = min(route.length_km, x + step)
        lon, lat = route.at(x, y)
        body = {
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "speed_kmh": speed_kmh,
            "seal": "sealed",
        }
        messages.append(lock.message("telemetry", t, body))
    return messages


@dataclass(frozen=True)
class DeclaredTrip:
    """What a declaration says about its trip (from a contract payload or an intake form)."""

    lock_ids: tuple[str, ...]
    containers: tuple[str, ...]
    plate: str
    corridor_id: str
    origin_site: str
    destination_gate: str
    departure: datetime

    @classmethod
    def from_declaration(
        cls, data: dict[str, Any], departure: datetime | None = None
    ) -> DeclaredTrip:
        """From a TransitDeclaration payload, an intake record (``declaration`` inside) or a
        declaration form (then ``departure``, its local time parsed by the caller).

        Raises:
            ValueError: a field is missing.
        """
        decl = data.get("declaration", data)
        locks = decl.get("locks") or [
            {"lock_id": decl.get("lock_id"), "container_no": decl.get("container_no")}
        ]
        if departure is None:
            if "departure_ts" not in decl:
                raise ValueError("the declaration has no departure_ts")
            departure = parse_rfc3339(str(decl["departure_ts"]))
        try:
            return cls(
                tuple(str(c["lock_id"]) for c in locks),
                tuple(str(c["container_no"]) for c in locks),
                str(decl.get("vehicle_plate") or decl.get("train_id") or ""),
                str(decl["corridor_id"]),
                str(decl["origin_site"]),
                str(decl["destination_gate"]),
                departure,
            )
        except KeyError as exc:
            raise ValueError(f"the declaration has no {exc.args[0]}") from None


def declaration_trip(
    trip: DeclaredTrip,
    geofences: Geofences,
    detour: bool = False,
    lock_id: str | None = None,
    first_seq: int = 1,
) -> list[Message]:
    """Every lock of a declaration sealed at its origin and driven along its corridor,
    time-ordered (a train's locks travel together); each lock's ``seq`` starts at
    ``first_seq``."""
    route = CorridorRoute(geofences, trip.corridor_id, trip.origin_site, trip.destination_gate)
    locks = (lock_id,) if lock_id else trip.lock_ids
    messages = [
        m
        for lock in locks
        for m in drive(
            route, lock, trip.departure, DEFAULT_DETOUR if detour else None, first_seq=first_seq
        )
    ]
    messages.sort(key=lambda m: m[1]["ts"])
    return messages
