"""How a simulated truck moves: expressway speeds, congestion, toll booths, rest stops in
service areas, GPS noise, battery drain, and the scenario that bends its trip.

A :class:`Plan` is drawn up front (departure, ETA, where it will stop and for how long);
its fixes are generated lazily, so a fleet of ten thousand trucks holds plans, not fixes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from smartlock.core.geofence import Geofences
from smartlock.simulators.routes import CorridorRoute
from smartlock.simulators.scenarios import ScenarioSpec

#: Toll stations: leaving Yiwu and before the port, km from each end of the corridor.
TOLL_FROM_START_KM, TOLL_FROM_END_KM = 1.5, 2.0
#: Declared ETA: the corridor at this average speed, plus an hour of slack.
PLANNING_SPEED_KMH = 75.0
LANE_OFFSET_M = -5.0
#: Where a truck of the ``stop`` scenario halts: on the hard shoulder, left of the centre line.
STOP_OFFSET_M = 40.0
REPORT_INTERVALS_S = (30, 30, 45, 60)
#: A scenario strikes at least this far (km along the route) from a service area's centre,
#: and one struck at a time at least this far from a toll station.
REST_AREA_MARGIN_KM, TOLL_MARGIN_KM = 8.0, 10.0


@dataclass(frozen=True)
class FixPlan:
    t: float
    lonlat: tuple[float, float]
    speed_kmh: float
    hdop: float
    seal: str
    battery: float
    event: str | None = None  # a lock event sent just before this reading
    buffered: bool = False  # recorded while out of coverage, uploaded later


@dataclass(frozen=True)
class Dwell:
    """A planned halt: from ``x_km`` on, ``seconds`` long, at ``point`` (lon, lat; None: on the lane)."""

    x_km: float
    seconds: float
    point: tuple[float, float] | None = None


class Motion:
    """Speed and GPS noise draws of one vehicle."""

    def __init__(self, rng: random.Random, speed_kmh: float, sigma_m: float) -> None:
        self.rng, self.cruise, self.sigma = rng, speed_kmh, sigma_m

    def speed(self, limit: float | None = None) -> float:
        base = self.cruise if limit is None else min(self.cruise, limit)
        return max(5.0, self.rng.gauss(base, 3.0))

    def noise_m(self) -> float:
        return self.rng.gauss(0, self.sigma)

    def noise_km(self) -> float:
        return self.rng.gauss(0, self.sigma) / 1000


@dataclass
class Plan:
    """One truck's trip, drawn up front; :meth:`fixes` walks it."""

    rng: random.Random
    geofences: Geofences
    route: CorridorRoute
    depart: float
    eta: float
    interval_s: float
    motion: Motion
    battery: float
    drain_per_h: float
    dwells: list[Dwell] = field(default_factory=list)
    congestion: list[tuple[float, float, float]] = field(default_factory=list)  # (x0, x1, speed)
    scenario: ScenarioSpec | None = None
    incident_x: float = 0.0
    #: None: the scenario strikes at ``incident_x``; a time (epoch seconds): at the first
    #: fix from then on that is clear of the toll stations and service areas (:meth:`_strikes`).
    incident_after: float | None = None
    rest_km: list[float] = field(default_factory=list)
    arrive: float = 0.0  # set when the fixes are exhausted
    unseal: float = 0.0

    @property
    def upload_buffered(self) -> bool:
        return self.scenario is not None and bool(self.scenario.params.get("upload", 0))

    @property
    def gate_point(self) -> tuple[float, float]:
        return self.route.at(self.route.length_km, LANE_OFFSET_M)

    def fixes(self) -> Iterator[FixPlan]:
        """Every reading of the lock from departure to the gate, lazily."""
        name = self.scenario.name if self.scenario else None
        params = self.scenario.params if self.scenario else {}
        t, x, seal = self.depart, 0.0, "sealed"
        dwells = sorted(self.dwells, key=lambda d: d.x_km)
        incident_t: float | None = None
        length = self.route.length_km
        while True:
            t += self.interval_s
            event = None
            if dwells and x >= dwells[0].x_km:
                dwell = dwells.pop(0)
                yield from self._dwell(t, dwell, seal)
                t += dwell.seconds // self.interval_s * self.interval_s
                continue
            limit = next((s for x0, x1, s in self.congestion if x0 <= x <= x1), None)
            speed = self.motion.speed(limit)
            if incident_t is None and name is not None and self._strikes(t, x):
                incident_t = t
                if name == "tamper":
                    seal, event = "tampered", "tamper"
                elif name == "stop" and self.incident_after is not None:  # halts where it is
                    dwell = Dwell(x, params["minutes"] * 60, self.route.at(x, STOP_OFFSET_M))
                    yield from self._dwell(t, dwell, seal)
                    t += dwell.seconds // self.interval_s * self.interval_s
                    continue
            into = t - incident_t if incident_t is not None else -1.0
            lateral = LANE_OFFSET_M
            if name == "detour" and 0 <= into <= params["minutes"] * 60:
                speed = min(speed, 8.0)  # away from the expressway: little progress along it
                lateral += _excursion(into, params["minutes"] * 60, params["distance_km"] * 1000)
            next_x = dwells[0].x_km if dwells else length
            x = min(x + speed * self.interval_s / 3600, max(next_x, x), length)
            lonlat = self.route.at(x + self.motion.noise_km(), lateral + self.motion.noise_m())
            if name == "jump" and 0 <= into < self.interval_s:
                lonlat = self.route.at(x, params["distance_km"] * 1000)
            buffered = name == "signal_loss" and 0 <= into < params["minutes"] * 60
            yield self._fix(t, lonlat, speed, seal, event, buffered)
            if x >= length:
                break
        yield from self._gate_queue(t, seal)

    def _strikes(self, t: float, x: float) -> bool:
        """Whether the scenario strikes at this fix (it strikes once).

        At a time (``incident_after``), it waits until the truck is clear of the toll
        stations (a halt there would interrupt it) and, for a stop or a detour, of the
        service areas (where halting is allowed).
        """
        if self.incident_after is None:
            return x >= self.incident_x
        name = self.scenario.name if self.scenario else None
        length = self.route.length_km
        return (
            t >= self.incident_after
            and TOLL_FROM_START_KM + TOLL_MARGIN_KM
            <= x
            <= length - TOLL_FROM_END_KM - TOLL_MARGIN_KM
            and (
                name not in ("stop", "detour")
                or all(abs(x - r) > REST_AREA_MARGIN_KM for r in self.rest_km)
            )
        )

    def _fix(
        self,
        t: float,
        lonlat: tuple[float, float],
        speed: float,
        seal: str,
        event: str | None = None,
        buffered: bool = False,
    ) -> FixPlan:
        battery = round(self.battery - self.drain_per_h * (t - self.depart) / 3600, 1)
        hdop = round(self.rng.uniform(0.7, 1.6), 1)
        return FixPlan(t, lonlat, speed, hdop, seal, battery, event, buffered)

    def _dwell(self, t: float, dwell: Dwell, seal: str) -> Iterator[FixPlan]:
        for k in range(int(dwell.seconds // self.interval_s)):
            if dwell.point is not None:
                base = self.geofences.to_metric(*dwell.point)
                lonlat = self.geofences.to_lonlat(
                    base[0] + self.motion.noise_m(), base[1] + self.motion.noise_m()
                )
            else:
                lonlat = self.route.at(
                    dwell.x_km + self.motion.noise_km(), LANE_OFFSET_M + self.motion.noise_m()
                )
            yield self._fix(t + k * self.interval_s, lonlat, 0.0, seal)

    def _gate_queue(self, t: float, seal: str) -> Iterator[FixPlan]:
        """Two readings while queueing inside the gate zone, then the arrival and the unsealing."""
        for k in (1, 2):
            yield self._fix(
                t + 60 * k,
                self.route.at(
                    self.route.length_km + self.motion.noise_km(),
                    LANE_OFFSET_M + self.motion.noise_m(),
                ),
                0.0,
                seal,
            )
        self.arrive = t + 150
        self.unseal = self.arrive + round(self.rng.uniform(300, 600))


def _excursion(into: float, total: float, distance: float) -> float:
    """Lateral distance of an off-ramp detour: out over four minutes, away, back over four."""
    ramp = min(240.0, total / 3)
    if into < ramp:
        return distance * into / ramp
    if into > total - ramp:
        return distance * max(0.0, total - into) / ramp
    return distance


def plan_trip(
    rng: random.Random,
    geofences: Geofences,
    route: CorridorRoute,
    depart: float,
    scenario: ScenarioSpec | None,
    *,
    interval_s: float | None = None,
    incidents_from: float | None = None,
    incident_window_s: tuple[float, float] = (30.0, 600.0),
) -> Plan:
    """Draws a truck's trip: its speed, reporting interval, stops, congestion and incident.

    Args:
        interval_s: the lock's reporting interval (None: drawn from ``REPORT_INTERVALS_S``).
        incidents_from: None: the scenario strikes mid-route (:func:`_incident_x`); an event
            time (epoch seconds): it strikes ``incident_window_s`` (drawn) after that time,
            or after departure if the truck leaves later, at the first fix clear of the
            toll stations and (for a stop or a detour) the service areas.
    """
    name = scenario.name if scenario else None
    cruise = scenario.params["speed_kmh"] if name == "slow" and scenario else rng.uniform(78, 95)
    length = route.length_km
    eta = depart + length / PLANNING_SPEED_KMH * 3600 + 3600
    plan = Plan(
        rng=rng,
        geofences=geofences,
        route=route,
        depart=depart,
        eta=round(eta / 60) * 60,
        interval_s=_interval(rng, interval_s),
        motion=Motion(rng, cruise, rng.uniform(10, 20)),
        battery=rng.uniform(60, 100),
        drain_per_h=rng.uniform(1, 3),
        scenario=scenario,
    )
    plan.dwells = [
        Dwell(TOLL_FROM_START_KM, rng.uniform(40, 120)),
        Dwell(length - TOLL_FROM_END_KM, rng.uniform(60, 150)),
    ]
    rest = _rest_areas(geofences, route)
    if rest and rng.random() < 0.35 and name is None:
        x_km, point = rng.choice(rest)
        plan.dwells.append(Dwell(x_km, rng.uniform(20, 40) * 60, point))
    for _ in range(rng.randrange(3)):
        x0 = rng.uniform(10, length - 20)
        plan.congestion.append((x0, x0 + rng.uniform(3, 8), rng.uniform(20, 35)))
    plan.incident_x = _incident_x(rng, length, rest)
    if incidents_from is not None:
        plan.incident_after = max(incidents_from, depart) + rng.uniform(*incident_window_s)
        plan.rest_km = [x for x, _ in rest]
    if name == "stop" and scenario is not None and incidents_from is None:
        plan.dwells.append(
            Dwell(
                plan.incident_x,
                scenario.params["minutes"] * 60,
                route.at(plan.incident_x, STOP_OFFSET_M),
            )
        )
    return plan


def _interval(rng: random.Random, fixed: float | None) -> float:
    """The lock's reporting interval; drawn even when fixed, so the truck's other draws stay."""
    drawn = rng.choice(REPORT_INTERVALS_S)
    return drawn if fixed is None else fixed


def _rest_areas(
    geofences: Geofences, route: CorridorRoute
) -> list[tuple[float, tuple[float, float]]]:
    """(km along the route, centre) of the service areas next to it."""
    found = []
    for zone in geofences.zones.values():
        if zone.role != "rest_area":
            continue
        centre = zone.polygon.centroid
        if route.line.distance(centre) <= 500:
            found.append(
                (route.line.project(centre) / 1000, geofences.to_lonlat(centre.x, centre.y))
            )
    return sorted(found)


def _incident_x(
    rng: random.Random, length: float, rest: list[tuple[float, tuple[float, float]]]
) -> float:
    """Where a scenario strikes: mid-route, well away from toll booths and service areas."""
    while True:
        x = rng.uniform(0.25 * length, 0.7 * length)
        if all(abs(x - r) > REST_AREA_MARGIN_KM for r, _ in rest):
            return x
