"""A minimal fleet for the live demo: trucks already spread along the G1512 corridors.

Departures are staggered from half an hour before the demo's start to an hour after it;
the messages before the start are published as a short catch-up burst, the rest at the
demo's pace. A few trucks leave the expressway for a twenty-minute detour, a few have
their seal tampered with (red), a few stop for twenty minutes outside any rest area and a
few locks fall silent for a quarter of an hour (amber), all within the demo's first minutes
of event time (or soon after a later departure), so coloured trips show up within seconds.
(The full simulator, with every scenario, is :mod:`smartlock.simulators.fleet`; both drive
trucks along :class:`~smartlock.simulators.routes.CorridorRoute`.)
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from smartlock.contract.models import format_ts
from smartlock.contract.topics import DECLARATIONS, arrival_topic, lock_topic
from smartlock.core.geofence import Geofences
from smartlock.simulators.routes import CorridorRoute, container_number

Message = tuple[str, dict[str, Any]]
DEMO_START = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
ROUTES = [("g1512-yiwu-beilun", "beilun-gate"), ("g1512-yiwu-daxie", "daxie-gate")]


def demo_fleet(
    geofences: Geofences,
    trucks: int = 300,
    seed: int = 7,
    detour_pct: float = 3.0,
    breach_pct: float = 2.0,
    interval_s: float = 30.0,
    stop_pct: float = 2.0,
    silence_pct: float = 2.0,
) -> list[Message]:
    """Every message of the fleet, in publish order (event time; declarations first)."""
    rng = random.Random(seed)
    routes = [CorridorRoute(geofences, c, "yiwu-origin", g) for c, g in ROUTES]
    messages: list[tuple[float, int, Message]] = []
    for n in range(trucks):
        route = routes[n % len(routes)]
        kind = _kind(rng, detour_pct, breach_pct, stop_pct, silence_pct)
        depart = DEMO_START + timedelta(seconds=round(rng.uniform(-30, 60) * 60))
        for order, (t, msg) in enumerate(_truck(n, route, depart, kind, rng, interval_s)):
            messages.append((t, order, msg))
    messages.sort(key=lambda m: (m[0], m[2][1].get("lock_id", ""), m[1]))
    return [m for _, _, m in messages]


#: How long an incident lasts (event time, seconds): longer than the limits that flag them
#: (stop 900 s, silence 600 s by default).
DETOUR_S, STOP_S, SILENCE_S = 1200, 1200, 900


def _kind(rng: random.Random, detour: float, breach: float, stop: float, silence: float) -> str:
    # One draw per kind, in this order, so the seed keeps giving the same detours and
    # breaches as before stops and silences were added.
    for kind, pct in (("detour", detour), ("breach", breach)):
        if rng.random() * 100 < pct:
            return kind
    roll = rng.random() * 100
    return "stop" if roll < stop else "silent" if roll < stop + silence else "normal"


def _truck(
    n: int, route: CorridorRoute, depart: datetime, kind: str, rng: random.Random, interval_s: float
) -> list[tuple[float, Message]]:
    lock, decl = f"SL-{n:05d}", f"DEMO-{n:05d}"
    speed_ms = rng.uniform(75, 95) / 3.6
    trip_s = route.line.length / speed_ms
    incident_at = max(
        (DEMO_START - depart).total_seconds() + rng.uniform(30, 600), rng.uniform(120, 600)
    )
    out: list[tuple[float, Message]] = []
    t0 = depart.timestamp()
    out.append(
        (
            t0 - 1,
            (
                DECLARATIONS.topic(),
                {
                    "declaration_id": decl,
                    "lock_id": lock,
                    "container_no": container_number(n),
                    "vehicle_plate": f"浙G{n:05d}",
                    "mode": "road",
                    "corridor_id": route.corridor_id,
                    "origin_site": route.origin,
                    "destination_gate": route.gate,
                    "departure_ts": format_ts(depart),
                    "eta_ts": format_ts(depart + timedelta(seconds=trip_s + 3600)),
                    "cargo": [
                        {
                            "description": "polyester knitted scarves, 180x70 cm, 200 g",
                            "quantity": 2000,
                            "unit": "pcs",
                            "value": 9000.0,
                            "currency": "USD",
                        }
                    ],
                },
            ),
        )
    )
    seq = 0

    def emit(t: float, topic: str, payload: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        t = round(t)
        out.append(
            (
                t,
                (
                    topic,
                    {"lock_id": lock, "seq": seq, "ts": format_ts(datetime.fromtimestamp(t, UTC))}
                    | payload,
                ),
            )
        )

    lon, lat = route.at(0)
    emit(
        t0,
        lock_topic(lock, "events"),
        {"type": "sealed", "lat": round(lat, 6), "lon": round(lon, 6)},
    )
    t, x_km, seal = interval_s, 0.0, "sealed"
    while x_km < route.length_km:
        into = t - incident_at
        detouring = kind == "detour" and 0 <= into <= DETOUR_S
        stopped = kind == "stop" and 0 <= into <= STOP_S
        if kind == "silent" and 0 <= into <= SILENCE_S:  # out of coverage: nothing is heard
            t += interval_s
            continue
        # Off the expressway (or stopped) the truck makes no progress along it (and its
        # offset never sweeps round a bend of the corridor, which would look like a spoof).
        paused = {"detour": DETOUR_S, "stop": STOP_S}.get(kind, 0)
        driven_s = t - min(max(into, 0), paused)
        x_km = min(route.length_km, driven_s * speed_ms / 1000)
        y = rng.gauss(0, 8)
        if detouring:
            y += 2600 * math.sin(math.pi * into / 1200) ** 0.5  # off the ramp, 2-3 km out, back
        if kind == "breach" and into >= 0:
            seal = "tampered"
        lon, lat = route.at(x_km, y)
        emit(
            t0 + t,
            lock_topic(lock, "telemetry"),
            {
                "lat": round(lat, 6),
                "lon": round(lon, 6),
                "speed_kmh": 0.0 if stopped else round(speed_ms * 3.6, 1),
                "hdop": 0.9,
                "seal": seal,
            },
        )
        t += interval_s
    out.append(
        (
            t0 + t,
            (
                arrival_topic(route.gate),
                {
                    "gate_id": route.gate,
                    "ts": format_ts(datetime.fromtimestamp(t0 + t, UTC)),
                    "vehicle_plate": f"浙G{n:05d}",
                    "lock_id": lock,
                    "container_no": container_number(n),
                },
            ),
        )
    )
    return out
