"""How fast the simulated fleet generates messages (no broker), and its memory.

Prints one JSON line per fleet size: messages generated per second (median of 3 for 1,000
trucks; one run over the first 300,000 messages for 10,000 trucks) and the peak resident
memory of this process. Run: ``python bench/fleet_bench.py``.
"""

from __future__ import annotations

import itertools
import json
import resource
import statistics
import time

from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.simulators.fleet import Fleet, FleetConfig, trace_line
from smartlock.simulators.scenarios import parse_scenario


def rate(geo: Geofences, trucks: int, limit: int | None) -> tuple[int, float]:
    config = FleetConfig(trucks=trucks, seed=1, scenarios=(parse_scenario("detour:2%"),))
    start = time.perf_counter()
    count = 0
    for _, topic, payload in itertools.islice(Fleet(config, geo).messages(), limit):
        trace_line(topic, payload)
        count += 1
    return count, count / (time.perf_counter() - start)


def main() -> None:
    geo = Geofences.load(default_geofence_dir())
    runs = [rate(geo, 1000, None) for _ in range(3)]
    print(
        json.dumps(
            {
                "trucks": 1000,
                "messages": runs[0][0],
                "msg_per_s": round(statistics.median(r for _, r in runs)),
            }
        )
    )
    count, per_s = rate(geo, 10_000, 300_000)
    print(
        json.dumps(
            {
                "trucks": 10_000,
                "messages": count,
                "msg_per_s": round(per_s),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    main()
