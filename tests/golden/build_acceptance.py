"""Builds the acceptance trace on the shipped G1512 corridors: every alert type and gate case.

Run ``python -m tests.golden.build_acceptance`` to rewrite ``acceptance.jsonl``; then
``smartlock evaluate tests/golden/acceptance.jsonl > tests/golden/acceptance.expected.jsonl``
after checking the differences by hand. The test compares evaluate's output byte for byte.

| lock  | declaration | what happens                                              | expected                          |
|-------|-------------|-----------------------------------------------------------|-----------------------------------|
| LK-01 | DCL-01      | normal trip to Beilun                                     | release                           |
| LK-02 | DCL-02      | 20-minute off-ramp detour 2-3 km from the expressway      | route_deviation, route_rejoined, inspect |
| LK-03 | DCL-03      | tamper event at km 100                                    | seal_breach, inspect              |
| LK-04 | DCL-04      | stops 20 minutes on the hard shoulder at km 130           | unauthorized_stop, release        |
| LK-05 | DCL-05      | no signal for 25 minutes (tunnel), then resumes          | signal_lost, release              |
| LK-06 | DCL-06      | one spoofed fix 40 km off the road                        | implausible_jump, release         |
| LK-07 | DCL-07      | slow: arrives 2 h after its eta                           | overdue, release                  |
| LK-08 | DCL-08      | normal trip to Daxie, but the gate camera reads another plate | inspect (plate)               |
| LK-09 | -           | telemetry from a lock no declaration binds, then a gate arrival | unknown_lock, inspect         |
| LK-10 | DCL-10      | low battery reported                                      | low_battery, release              |
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from smartlock.core.geofence import Geofences, default_geofence_dir
from tests.builders import T0, CorridorRoute, Trip, merge

HERE = Path(__file__).resolve().parent
CONTAINERS = [
    "CSQU3054383",
    "MSCU1234566",
    "TGHU9876542",
    "OOLU1234567",
    "CMAU7654327",
    "HLXU1234561",
    "MAEU5555550",
    "EGHU3030300",
    "TCNU1111110",
    "APZU2222222",
]
STEP_KM, DT = 1.5, 60.0  # one fix a minute at 90 km/h


def build() -> list[tuple[str, dict]]:
    geo = Geofences.load(default_geofence_dir())
    beilun = CorridorRoute(geo, "g1512-yiwu-beilun", "yiwu-origin", "beilun-gate")
    daxie = CorridorRoute(geo, "g1512-yiwu-daxie", "yiwu-origin", "daxie-gate")

    def trip(n: int, route: CorridorRoute = beilun, **kw: object) -> Trip:
        return Trip(
            lock_id=f"LK-{n:02d}",
            declaration_id=f"DCL-{n:02d}",
            plate=f"浙G{n:02d}345",
            container=CONTAINERS[n - 1],
            route=route,
            t=T0 + timedelta(minutes=5 * n),
            **kw,
        )

    def start(t: Trip, eta_h: float = 3.5) -> Trip:
        return t.declare(eta_h=eta_h).event("sealed", at=(0, 0))

    def finish(t: Trip, x0: float) -> Trip:
        return t.drive(x0, t.route.length_km, STEP_KM, dt=DT).arrive()

    trips = []
    trips.append(finish(start(trip(1)).drive(0, 1, 1, dt=DT), 1))
    detour = start(trip(2)).drive(0, 60, STEP_KM, dt=DT)
    for i, y in enumerate(
        [
            250,
            700,
            1300,
            2000,
            2500,
            2800,
            2800,
            2800,
            2800,
            2800,
            2800,
            2800,
            2800,
            2800,
            2700,
            2500,
            2000,
            1400,
            800,
            300,
            100,
        ]
    ):
        detour.fix(60 + 0.2 * (i + 1), y, dt=DT)
    trips.append(finish(detour, 64.2))
    breach = start(trip(3)).drive(0, 100, STEP_KM, dt=DT)
    trips.append(finish(breach.event("tamper", at=(100, 0), dt=DT), 100.5))
    stop = start(trip(4)).drive(0, 130, STEP_KM, dt=DT)
    for _ in range(20):
        stop.fix(130.02, 15, dt=DT)
    trips.append(finish(stop, 131.5))
    silent = start(trip(5)).drive(0, 80, STEP_KM, dt=DT)
    trips.append(finish(silent.fix(110, dt=25 * 60), 111.5))
    jump = start(trip(6)).drive(0, 40, STEP_KM, dt=DT)
    trips.append(finish(jump.fix(41, 40_000, dt=DT), 42))
    slow = start(trip(7), eta_h=2.0).drive(0, beilun.length_km, 0.75, dt=DT)
    trips.append(slow.arrive())
    trips.append(
        start(trip(8, daxie)).drive(0, daxie.length_km, STEP_KM, dt=DT).arrive(plate="浙B88888")
    )
    stray = Trip(
        lock_id="LK-09", container=CONTAINERS[8], route=beilun, t=T0 + timedelta(minutes=7)
    )
    trips.append(stray.drive(150, 203, STEP_KM, dt=DT).arrive())
    low = start(trip(10)).drive(0, 50, STEP_KM, dt=DT)
    trips.append(finish(low.fix(51, battery_pct=15, dt=DT), 52))
    return merge(*trips)


def main() -> None:
    lines = [json.dumps({"topic": t, "payload": p}, ensure_ascii=False) for t, p in build()]
    (HERE / "acceptance.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} messages")


if __name__ == "__main__":
    main()
