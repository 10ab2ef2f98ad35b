"""Cost of the detection core on this machine: geofence point checks and `smartlock evaluate`.

Prints JSON lines:

* ``point_check``: microseconds per call of ``in_corridor`` and ``zones_at`` on the shipped
  G1512 data, for points on the corridor and 2 km off it (median of 5 rounds of 20,000 calls);
* ``evaluate``: messages per second of the offline evaluator (the same code the Faust
  worker runs) on the golden acceptance trace repeated under fresh lock ids, median of 3.

Run: ``python bench/core_bench.py``.
"""

from __future__ import annotations

import io
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from smartlock.core.evaluate import evaluate
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.runtime import build_detector
from smartlock.settings import load_settings
from smartlock.simulators.routes import CorridorRoute

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "acceptance.jsonl"


def _per_call_us(fn: Any, points: list[tuple[float, float]], rounds: int = 5) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for lon, lat in points:
            fn(lon, lat)
        samples.append((time.perf_counter() - start) / len(points) * 1e6)
    return round(statistics.median(samples), 2)


def point_checks(geo: Geofences) -> dict[str, Any]:
    rng = random.Random(1)
    route = CorridorRoute(geo, "g1512-yiwu-beilun", "yiwu-origin", "beilun-gate")
    on = [route.at(rng.uniform(0, route.length_km), rng.gauss(0, 15)) for _ in range(20_000)]
    off = [route.at(rng.uniform(0, route.length_km), 2000) for _ in range(20_000)]
    corridor = "g1512-yiwu-beilun"
    return {
        "bench": "point_check",
        "in_corridor_on_us": _per_call_us(lambda lon, lat: geo.in_corridor(corridor, lon, lat), on),
        "in_corridor_off_us": _per_call_us(
            lambda lon, lat: geo.in_corridor(corridor, lon, lat), off
        ),
        "zones_at_us": _per_call_us(geo.zones_at, on),
    }


def _scaled_trace(copies: int) -> str:
    """The golden trace ``copies`` times, each copy under its own lock and declaration ids,
    interleaved line by line so event time still advances as in one trace."""
    lines = GOLDEN.read_text(encoding="utf-8").splitlines(keepends=True)
    renamed = [
        [line.replace("LK-", f"C{n}LK-").replace("DCL-", f"C{n}DCL-") for line in lines]
        for n in range(copies)
    ]
    return "".join(line for group in zip(*renamed, strict=True) for line in group)


def evaluate_rate(copies: int = 5, rounds: int = 3) -> dict[str, Any]:
    detector = build_detector(load_settings())
    trace = _scaled_trace(copies)
    samples, messages = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        summary = evaluate(detector, io.StringIO(trace), io.StringIO(), io.StringIO())
        samples.append(time.perf_counter() - start)
        messages = summary.messages
    return {
        "bench": "evaluate",
        "messages": messages,
        "median_s": round(statistics.median(samples), 3),
        "msg_per_s": round(messages / statistics.median(samples)),
    }


def main() -> None:
    geo = Geofences.load(default_geofence_dir())
    print(json.dumps(point_checks(geo)))
    print(json.dumps(evaluate_rate()))


if __name__ == "__main__":
    main()
