"""Builders of lock traffic for tests of the detection core.

Positions are given in kilometres along, and metres beside, the synthetic corridor of
:func:`synthetic_geofences` (a straight line due east from 120.0 E, 29.5 N), so a test
says "2 km off the corridor" instead of spelling coordinates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smartlock.contract.codec import decode, sign
from smartlock.contract.models import format_ts
from smartlock.core.detector import Detector, Output, Rejection
from smartlock.core.engine import Engine
from smartlock.core.geofence import Geofences
from smartlock.core.limits import DetectionSettings
from smartlock.simulators.routes import CorridorRoute

#: The stream key of the unit tests (authenticates inbound records: smartlock.stream.inbound).
STREAM_KEY = bytes(range(32))

LON0, LAT0 = 120.0, 29.5
M_PER_DEG_LAT = 110_860.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(LAT0))
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
CONTAINER = "CSQU3054383"


def lonlat(x_km: float, y_m: float = 0.0) -> tuple[float, float]:
    """WGS84 position x km east of the corridor start and y metres north of the centre line."""
    return LON0 + x_km * 1000 / M_PER_DEG_LON, LAT0 + y_m / M_PER_DEG_LAT


def _box(x0_km: float, x1_km: float, y0_m: float, y1_m: float) -> list[list[list[float]]]:
    a, b = lonlat(x0_km, y0_m), lonlat(x1_km, y1_m)
    return [[[a[0], a[1]], [b[0], a[1]], [b[0], b[1]], [a[0], b[1]], [a[0], a[1]]]]


def synthetic_collections() -> dict[str, dict[str, Any]]:
    """A 50 km straight road corridor (buffer 300 m) with origin, gates and a rest area."""
    line = [list(lonlat(x)) for x in range(0, 51, 5)]
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": line},
            "properties": {"kind": "corridor", "id": "test-road", "buffer_m": 300, "mode": "road"},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": _box(-1, 1, -1000, 1000)},
            "properties": {"kind": "zone", "id": "test-origin", "role": "origin_site"},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": _box(49, 51, -1000, 1000)},
            "properties": {"kind": "zone", "id": "test-gate", "role": "destination_gate"},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": _box(20, 20.6, 250, 700)},
            "properties": {"kind": "zone", "id": "test-rest", "role": "rest_area"},
        },
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": _box(30, 31, 5000, 6000)},
            "properties": {"kind": "zone", "id": "other-gate", "role": "destination_gate"},
        },
    ]
    return {"synthetic.geojson": {"type": "FeatureCollection", "features": features}}


def synthetic_geofences() -> Geofences:
    return Geofences.from_feature_collections(synthetic_collections())


@dataclass
class Trip:
    """Builds the messages of one lock's trip on the synthetic corridor (or a real route)."""

    lock_id: str = "L1"
    declaration_id: str = "D1"
    plate: str = "浙G12345"
    container: str = CONTAINER
    t: datetime = T0
    seq: int = 0
    key: str | None = None
    route: CorridorRoute | None = None
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def where(self, x_km: float, y_m: float = 0.0) -> tuple[float, float]:
        return self.route.at(x_km, y_m) if self.route is not None else lonlat(x_km, y_m)

    def declare(self, eta_h: float = 3.0, **overrides: Any) -> Trip:
        payload = {
            "declaration_id": self.declaration_id,
            "lock_id": self.lock_id,
            "container_no": self.container,
            "vehicle_plate": self.plate,
            "mode": "road",
            "corridor_id": self.route.corridor_id if self.route else "test-road",
            "origin_site": self.route.origin if self.route else "test-origin",
            "destination_gate": self.route.gate if self.route else "test-gate",
            "departure_ts": format_ts(self.t),
            "eta_ts": format_ts(self.t + timedelta(hours=eta_h)),
            "cargo": [
                {
                    "description": "polyester knitted scarves, 180x70 cm",
                    "quantity": 1200,
                    "unit": "pcs",
                    "value": 5400.0,
                    "currency": "USD",
                }
            ],
        } | overrides
        self.messages.append(("customs/declarations", payload))
        return self

    def _signed(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.key is not None:
            payload["sig"] = sign(payload, self.key)
        return payload

    def fix(
        self, x_km: float, y_m: float = 0.0, dt: float = 30.0, seal: str = "sealed", **extra: Any
    ) -> Trip:
        """Telemetry ``dt`` seconds after the previous message."""
        self.t += timedelta(seconds=dt)
        self.seq += 1
        lon, lat = self.where(x_km, y_m)
        payload = {
            "lock_id": self.lock_id,
            "seq": self.seq,
            "ts": format_ts(self.t),
            "lat": round(lat, 7),
            "lon": round(lon, 7),
            "seal": seal,
        } | extra
        self.messages.append((f"locks/{self.lock_id}/telemetry", self._signed(payload)))
        return self

    def drive(
        self,
        x0_km: float,
        x1_km: float,
        step_km: float = 0.75,
        y_m: float = 0.0,
        dt: float = 30.0,
        seal: str = "sealed",
    ) -> Trip:
        """Fixes every ``dt`` seconds from x0 to x1 (inclusive), ``step_km`` apart (90 km/h)."""
        n = max(1, round(abs(x1_km - x0_km) / step_km))
        for i in range(n + 1):
            self.fix(x0_km + (x1_km - x0_km) * i / n, y_m, dt=dt, seal=seal)
        return self

    def event(self, type_: str, dt: float = 30.0, at: tuple[float, float] | None = None) -> Trip:
        self.t += timedelta(seconds=dt)
        self.seq += 1
        payload: dict[str, Any] = {
            "lock_id": self.lock_id,
            "seq": self.seq,
            "ts": format_ts(self.t),
            "type": type_,
        }
        if at is not None:
            lon, lat = self.where(*at)
            payload |= {"lat": round(lat, 7), "lon": round(lon, 7)}
        self.messages.append((f"locks/{self.lock_id}/events", self._signed(payload)))
        return self

    def arrive(
        self,
        gate: str | None = None,
        plate: str | None = None,
        container: str | None = None,
        dt: float = 30.0,
    ) -> Trip:
        self.t += timedelta(seconds=dt)
        gate = gate or (self.route.gate if self.route else "test-gate")
        payload = {
            "gate_id": gate,
            "ts": format_ts(self.t),
            "vehicle_plate": plate or self.plate,
            "lock_id": self.lock_id,
            "container_no": container or self.container,
        }
        self.messages.append((f"gates/{gate}/arrivals", payload))
        return self

    def normal(self) -> Trip:
        """Declare, seal at origin, drive the whole corridor, arrive at the gate."""
        end = self.route.length_km if self.route else 50
        self.declare().event("sealed", at=(0, 0)).drive(0, end)
        return self


@dataclass
class Run:
    outputs: list[Output]
    rejections: list[tuple[str, Rejection]]
    engine: Engine

    def alerts(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [
            o.payload
            for o in self.outputs
            if o.kind == "alert" and (type_ is None or o.payload["type"] == type_)
        ]

    def alert_types(self) -> list[str]:
        return [a["type"] for a in self.alerts()]

    def verdicts(self) -> list[dict[str, Any]]:
        return [o.payload for o in self.outputs if o.kind == "verdict"]

    def statuses(self) -> list[dict[str, Any]]:
        return [o.payload for o in self.outputs if o.kind == "status"]

    def reasons(self) -> list[str]:
        return [r.reason for _, r in self.rejections]


def run(
    messages: list[tuple[str, dict[str, Any]]],
    limits: DetectionSettings | None = None,
    geofences: Geofences | None = None,
    keys: dict[str, str] | None = None,
    engine: Engine | None = None,
) -> Run:
    """Feeds messages through a fresh (or the given) engine and collects what came out."""
    if engine is None:
        detector = Detector(limits or DetectionSettings(), geofences or synthetic_geofences(), keys)
        engine = Engine(detector)
    outputs: list[Output] = []
    rejections: list[tuple[str, Rejection]] = []
    for topic, payload in messages:
        outcome = engine.feed(decode(topic, payload))
        outputs += outcome.outputs
        rejections += outcome.rejections
    return Run(outputs, rejections, engine)


def merge(*trips: Trip) -> list[tuple[str, dict[str, Any]]]:
    """Interleaves the messages of several trips by event time (declarations first), stably."""

    def when(item: tuple[int, int, tuple[str, dict[str, Any]]]) -> tuple[str, int, int]:
        _, _, (_, payload) = item
        return (payload.get("ts", ""), item[0], item[1])

    tagged = [(i, j, m) for i, trip in enumerate(trips) for j, m in enumerate(trip.messages)]
    return [m for *_, m in sorted(tagged, key=when)]


def telemetry_trace(
    path: Path, prefix: str, count: int, locks: int = 200, step_s: int = 30
) -> None:
    """``count`` telemetry messages from ``locks`` locks (ids ``<prefix>-LK-NNN``), one round of
    fixes every ``step_s`` seconds, on the contract's ``locks/{lock_id}/telemetry`` topics."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            lock, seq = f"{prefix}-LK-{i % locks:03d}", i // locks + 1
            t = seq * step_s
            payload = {
                "lock_id": lock,
                "seq": seq,
                "ts": f"2026-11-22T{8 + t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}Z",
                "lat": 29.3 + seq * 1e-4,
                "lon": 120.1,
                "seal": "sealed",
                "battery_pct": 90.0,
            }
            out.write(
                json.dumps(
                    {"topic": f"locks/{lock}/telemetry", "payload": payload},
                    separators=(",", ":"),
                )
                + "\n"
            )
