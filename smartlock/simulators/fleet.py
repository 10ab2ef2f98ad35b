"""A fleet of simulated smart locks on the corridors in ``geofences/``.

Each truck is a generator of the messages its lock, its declarant and its gate send, in
the order they are sent: the declaration half an hour before departure, sealing at the
Yiwu origin site, telemetry at the lock's own reporting interval (expressway speeds,
congestion, toll booths, rest stops inside service areas, GPS noise, battery drain), the
gate arrival inside the port gate zone, and unsealing after release. The fleet merges the
trucks (and, with ``rail_containers``, one train on the sea-rail corridor) by send time.
Everything derives from the seed: the same configuration gives the same messages, byte
for byte; the wall clock is never read. The live demo's fleet is a preset of this one
(:func:`demo_preset`).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from smartlock.contract.codec import sign
from smartlock.contract.models import format_epoch
from smartlock.contract.topics import DECLARATIONS, arrival_topic, lock_topic
from smartlock.core.geofence import Geofences
from smartlock.simulators.motion import Motion, Plan, plan_trip
from smartlock.simulators.publisher import Payload
from smartlock.simulators.routes import CorridorRoute, container_number
from smartlock.simulators.scenarios import ScenarioSpec, assign, scenario

DEFAULT_START = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
ROAD_ROUTES = (
    ("g1512-yiwu-beilun", "yiwu-origin", "beilun-gate"),
    ("g1512-yiwu-daxie", "yiwu-origin", "daxie-gate"),
)
RAIL_ROUTE = ("rail-yiwu-beilun", "yiwu-rail-origin", "beilun-rail-gate")
TRAIN_ID = "X8001"

#: (send time in epoch seconds, tie-breaker, topic, payload)
Timed = tuple[float, int, str, Payload]


@dataclass(frozen=True)
class FleetConfig:
    """What to simulate.

    Args:
        trucks: road trucks, alternating between the Beilun and Daxie corridors.
        seed: every random choice derives from it.
        start: event time of the first departure.
        spread_min: departures spread over this many minutes.
        scenarios: what goes wrong, and for which share of the trucks.
        sign: locks sign their messages with per-lock keys (:meth:`Fleet.keys`).
        rail_containers: also run one train carrying this many sealed containers.
        report_interval_s: every lock reports at this interval (None: each lock its own,
            30 to 60 s).
        incidents_from: None: scenarios strike mid-route, at a quarter to 70 % of the
            corridor; an event time: each strikes ``incident_window_min`` (drawn) after it,
            or after the truck's departure if later, away from toll stations and service
            areas (a truck already near its gate by then has no incident).
        incident_window_min: see ``incidents_from``.
    """

    trucks: int = 100
    seed: int = 1
    start: datetime = DEFAULT_START
    spread_min: float = 60.0
    scenarios: tuple[ScenarioSpec, ...] = ()
    sign: bool = False
    rail_containers: int = 0
    report_interval_s: float | None = None
    incidents_from: datetime | None = None
    incident_window_min: tuple[float, float] = (0.5, 10.0)


#: The live demo's "now" in event time: its fleet is already on the road then.
DEMO_START = DEFAULT_START


def demo_preset(
    trucks: int = 300,
    seed: int = 7,
    *,
    detour_pct: float = 3.0,
    tamper_pct: float = 2.0,
    stop_pct: float = 2.0,
    signal_loss_pct: float = 2.0,
) -> FleetConfig:
    """The live demo's fleet (``smartlock demo``, ``smartlock simulate --preset demo``).

    Trucks already spread along the corridors at :data:`DEMO_START` (departures from half an
    hour before it to an hour after; the demo publishes what happened before it as a
    catch-up burst), every lock reporting every 30 s. Within five minutes of event time
    after the start (or soon after a later departure) a few trucks leave the expressway for
    twenty minutes or have their seal forced (red), a few stop twenty minutes on the hard
    shoulder or lose signal for a quarter of an hour (amber): at the demo's 30x, red trips
    show up within seconds, amber ones within a minute.

    Raises:
        ConfigError: a percentage out of range.
    """
    return FleetConfig(
        trucks=trucks,
        seed=seed,
        start=DEMO_START - timedelta(minutes=30),
        spread_min=90.0,
        scenarios=(
            scenario("detour", detour_pct),
            scenario("tamper", tamper_pct),
            scenario("stop", stop_pct, minutes=20),
            scenario("signal_loss", signal_loss_pct),
        ),
        report_interval_s=30.0,
        incidents_from=DEMO_START,
        incident_window_min=(0.5, 5.0),
    )


def truck_ids(n: int) -> dict[str, str]:
    """Lock, declaration, plate and container of truck ``n``."""
    return {
        "lock_id": f"SL-{n:05d}",
        "declaration_id": f"DCL-{n:05d}",
        "vehicle_plate": f"浙G{n:05d}",
        "container_no": container_number(n),
    }


def lock_key(seed: int, lock_id: str) -> str:
    """The per-lock signing key, derived from the seed (a real lock holds a random one)."""
    return hmac.new(f"smartlock-sim:{seed}".encode(), lock_id.encode(), hashlib.sha256).hexdigest()[
        :32
    ]


@dataclass
class Lock:
    """Stamps a lock's messages: strictly increasing ``seq``, event time, optional signature."""

    lock_id: str
    key: str | None
    seq: int = 0

    def message(self, kind: str, ts: float, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.seq += 1
        payload = {"lock_id": self.lock_id, "seq": self.seq, "ts": format_epoch(round(ts))} | body
        if self.key is not None:
            payload["sig"] = sign(payload, self.key)
        return lock_topic(self.lock_id, kind), payload


@dataclass
class Fleet:
    """The simulated fleet for a configuration."""

    config: FleetConfig
    geofences: Geofences
    routes: list[CorridorRoute] = field(init=False)
    assigned: dict[int, ScenarioSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.routes = [CorridorRoute(self.geofences, *r) for r in ROAD_ROUTES]
        self.assigned = assign(list(self.config.scenarios), self.config.trucks, self.config.seed)

    # ----------------------------------------------------------------- public

    def messages(self) -> Iterator[tuple[float, str, Payload]]:
        """Every message of the fleet as (send time, topic, payload), in send order."""
        streams: list[Iterable[Timed]] = [self._truck(n) for n in range(self.config.trucks)]
        if self.config.rail_containers:
            streams.append(self._train())
        for t, _, topic, payload in heapq.merge(*streams, key=lambda m: (m[0], m[1])):
            yield t, topic, payload

    def message_list(self) -> list[tuple[str, Payload]]:
        """Every message as (topic, payload), in send order (for a publisher that paces by ``ts``)."""
        return [(topic, payload) for _, topic, payload in self.messages()]

    def keys(self) -> dict[str, str]:
        """lock id -> signing key, for ``[signing] keys_file`` (empty unless signing)."""
        if not self.config.sign:
            return {}
        ids = [truck_ids(n)["lock_id"] for n in range(self.config.trucks)]
        ids += [_rail_lock(k) for k in range(self.config.rail_containers)]
        return {lock: lock_key(self.config.seed, lock) for lock in ids}

    def write_trace(self, out: TextIO) -> int:
        """Writes the trace (CONTRACT section 5); returns the number of messages."""
        count = 0
        for _, topic, payload in self.messages():
            out.write(trace_line(topic, payload))
            count += 1
        return count

    # ----------------------------------------------------------------- trucks

    def _truck(self, n: int) -> Iterator[Timed]:
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:truck:{n}")
        spec = self.assigned.get(n)
        ids = truck_ids(n)
        route = self.routes[n % len(self.routes)]
        depart = round(cfg.start.timestamp() + rng.uniform(0, cfg.spread_min * 60))
        incidents_from = cfg.incidents_from.timestamp() if cfg.incidents_from else None
        plan = plan_trip(
            rng,
            self.geofences,
            route,
            depart,
            spec,
            interval_s=cfg.report_interval_s,
            incidents_from=incidents_from,
            incident_window_s=(cfg.incident_window_min[0] * 60, cfg.incident_window_min[1] * 60),
        )
        lock = Lock(ids["lock_id"], lock_key(cfg.seed, ids["lock_id"]) if cfg.sign else None)
        stream = _trip_messages(n, ids, route, plan, lock, spec)
        if spec is not None:
            stream = _delivery(stream, spec, rng, lock)
        yield from stream

    def _train(self) -> Iterator[Timed]:
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:train")
        route = CorridorRoute(self.geofences, *RAIL_ROUTE)
        depart = round(cfg.start.timestamp() + 600)
        locks = [
            Lock(_rail_lock(k), lock_key(cfg.seed, _rail_lock(k)) if cfg.sign else None)
            for k in range(cfg.rail_containers)
        ]
        containers = [container_number(900_000 + k) for k in range(cfg.rail_containers)]
        yield from _train_messages(rng, route, depart, locks, containers)


def trace_line(topic: str, payload: Payload) -> str:
    """One trace line (byte-stable: compact separators, UTF-8 characters kept)."""
    return (
        json.dumps({"topic": topic, "payload": payload}, ensure_ascii=False, separators=(",", ":"))
        + "\n"
    )


def _rail_lock(k: int) -> str:
    return f"RL-{k + 1:04d}"


def _declaration(
    ids: dict[str, str],
    route: CorridorRoute,
    mode: str,
    depart: float,
    eta: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload = {
        "declaration_id": ids["declaration_id"],
        "lock_id": ids["lock_id"],
        "container_no": ids["container_no"],
        "vehicle_plate": ids["vehicle_plate"],
        "mode": mode,
        "corridor_id": route.corridor_id,
        "origin_site": route.origin,
        "destination_gate": route.gate,
        "departure_ts": format_epoch(depart),
        "eta_ts": format_epoch(eta),
        "cargo": [
            {
                "description": "polyester knitted scarves, 180x70 cm, 200 g",
                "quantity": 2000,
                "unit": "pcs",
                "value": 9000.0,
                "currency": "USD",
            }
        ],
    }
    return payload | (extra or {})


def _position(lonlat: tuple[float, float]) -> dict[str, float]:
    return {"lat": round(lonlat[1], 6), "lon": round(lonlat[0], 6)}


def _trip_messages(
    n: int,
    ids: dict[str, str],
    route: CorridorRoute,
    plan: Plan,
    lock: Lock,
    spec: ScenarioSpec | None,
) -> Iterator[Timed]:
    """The trip of one truck, from declaration to unsealing, in send order."""
    name = spec.name if spec else None
    order = 0

    def timed(t: float, topic: str, payload: Payload) -> Timed:
        nonlocal order
        order += 1
        return (t, n * 1_000_000 + order, topic, payload)

    if name != "undeclared":
        yield timed(
            plan.depart - 1800,
            DECLARATIONS.topic(),
            _declaration(ids, route, "road", plan.depart, plan.eta),
        )
    yield timed(
        plan.depart,
        *lock.message("events", plan.depart, {"type": "sealed", **_position(route.at(0, -5))}),
    )
    buffered: list[tuple[str, Payload]] = []
    for fix in plan.fixes():
        readings = []
        if fix.event is not None:  # e.g. the tamper event, just before the reading that shows it
            readings.append(
                lock.message("events", fix.t, {"type": fix.event, **_position(fix.lonlat)})
            )
        readings.append(
            lock.message(
                "telemetry",
                fix.t,
                {
                    **_position(fix.lonlat),
                    "speed_kmh": round(fix.speed_kmh, 1),
                    "hdop": fix.hdop,
                    "seal": fix.seal,
                    "battery_pct": fix.battery,
                },
            )
        )
        if fix.buffered:  # out of coverage: the lock stores the readings
            buffered.extend(readings)
            continue
        if buffered and plan.upload_buffered:  # store and forward: a burst, oldest first
            for b_topic, b_payload in buffered:
                yield timed(fix.t, b_topic, b_payload)
        buffered = []
        for topic, payload in readings:
            yield timed(fix.t, topic, payload)
    plate = ids["vehicle_plate"] if name != "plate_mismatch" else "浙B" + ids["vehicle_plate"][2:]
    yield timed(
        plan.arrive,
        arrival_topic(route.gate),
        {
            "gate_id": route.gate,
            "ts": format_epoch(plan.arrive),
            "vehicle_plate": plate,
            "lock_id": ids["lock_id"],
            "container_no": ids["container_no"],
        },
    )
    if spec is None or spec.kind.verdict == "release":  # after inspect, officers open the container
        yield timed(
            plan.unseal,
            *lock.message(
                "events", plan.unseal, {"type": "unsealed", **_position(plan.gate_point)}
            ),
        )


def _train_messages(
    rng: random.Random,
    route: CorridorRoute,
    depart: float,
    locks: list[Lock],
    containers: list[str],
) -> Iterator[Timed]:
    """One train carrying many sealed containers, each with its own lock, on the sea-rail corridor."""
    base = 2_000_000_000
    eta = depart + route.length_km / 60 * 3600 + 3600
    first = {"lock_id": locks[0].lock_id, "container_no": containers[0]}
    decl = _declaration(
        {"declaration_id": f"DCL-RAIL-{TRAIN_ID}", "vehicle_plate": TRAIN_ID, **first},
        route,
        "rail",
        depart,
        round(eta / 60) * 60,
        {
            "train_id": TRAIN_ID,
            "locks": [
                {"lock_id": lk.lock_id, "container_no": c}
                for lk, c in zip(locks, containers, strict=True)
            ],
        },
    )
    yield (depart - 1800, base, DECLARATIONS.topic(), decl)
    motion = Motion(rng, speed_kmh=70.0, sigma_m=8.0)
    k = 1
    for i, lk in enumerate(locks):
        yield (
            depart + i,
            base + k,
            *lk.message("events", depart + i, {"type": "sealed", **_position(route.at(0))}),
        )
        k += 1
    t, x = depart, 0.0
    while x < route.length_km:
        t += 60
        x = min(route.length_km, x + motion.speed() * 60 / 3600)
        for i, lk in enumerate(locks):  # wagons a few dozen metres apart, the last ones behind
            lonlat = route.at(max(0.0, x - i * 0.02) + motion.noise_km(), motion.noise_m())
            yield (
                t,
                base + k,
                *lk.message(
                    "telemetry",
                    t,
                    {**_position(lonlat), "speed_kmh": 70.0, "hdop": 0.9, "seal": "sealed"},
                ),
            )
            k += 1
    for i, (lk, container) in enumerate(zip(locks, containers, strict=True)):
        t_arr = t + 120 + 10 * i
        yield (
            t_arr,
            base + k,
            arrival_topic(route.gate),
            {
                "gate_id": route.gate,
                "ts": format_epoch(t_arr),
                "vehicle_plate": TRAIN_ID,
                "lock_id": lk.lock_id,
                "container_no": container,
            },
        )
        k += 1


def _delivery(
    stream: Iterator[Timed], spec: ScenarioSpec, rng: random.Random, lock: Lock
) -> Iterator[Timed]:
    """What the network (or a forger) does to a truck's messages on their way to the broker."""
    rate = spec.params.get("rate", 0.0)
    held: Timed | None = None
    for item in stream:
        t, order, topic, payload = item
        in_transit = (
            topic.endswith("/telemetry") and isinstance(payload, dict) and payload["seq"] > 5
        )
        if spec.name == "out_of_order" and in_transit:
            if held is not None:
                yield (t, order, topic, payload)
                yield (t, order, held[2], held[3])  # the older fix arrives after the newer one
                held = None
                continue
            if rng.random() < rate:
                held = item
                continue
        yield item
        if spec.name == "duplicates" and rng.random() < rate:
            yield item
        elif spec.name == "malformed" and rng.random() < rate:
            yield (t, order, topic, _garbled(rng, topic, payload))
        elif spec.name == "unsigned" and in_transit and rng.random() < rate:
            assert isinstance(payload, dict)
            forged = {k: v for k, v in payload.items() if k != "sig"} | {
                "seq": payload["seq"] + 1,
                "seal": "unsealed",
            }
            yield (t, order, topic, forged)
    if held is not None:
        yield held


def _garbled(rng: random.Random, topic: str, payload: Payload) -> Payload:
    """A broken copy of a message: cut short, a field out of range, or a field missing."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    choice = rng.randrange(3)
    if choice == 0 or not isinstance(payload, dict):
        return text[: max(1, len(text) // 2)]  # raw text, not JSON
    if choice == 1 and "lat" in payload:
        return payload | {"lat": 123.456}
    return {k: v for k, v in payload.items() if k != "ts"}
