"""`smartlock evaluate` against `json.loads` of the same lines, and memory per active trip.

Issue 13's target: evaluating a trace costs at most three times parsing its lines with the
standard library's ``json.loads``. Both are measured side by side in one run, over one
fleet trace held in memory, alternating, and the figures are medians of the repetitions,
so a machine shared with other jobs moves both alike.

Prints JSON lines:

* ``evaluate_vs_json``: messages, msg/s of ``evaluate`` (outputs written to a StringIO),
  lines/s of ``json.loads``, and ``ratio`` = evaluate time / json.loads time (median of
  the per-repetition ratios), with the load average (``os.getloadavg``) at the start;
* ``memory_per_trip``: bytes of core state per open trip (tracemalloc, after feeding the
  first part of the trace, when every truck is declared and most are on the road), and
  what a million such trips take.

Run: ``python bench/evaluate_bench.py [--trucks 200] [--trace FILE] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import time
import tracemalloc
from typing import Any

from smartlock.contract.codec import decode
from smartlock.core.engine import Engine
from smartlock.core.evaluate import evaluate, iter_trace
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.runtime import build_detector
from smartlock.settings import load_settings
from smartlock.simulators.fleet import Fleet, FleetConfig, trace_line
from smartlock.simulators.scenarios import parse_scenario

#: The scenario mix of the benchmark fleet: every rule fires somewhere.
SCENARIOS = (
    "detour:5%",
    "tamper:3%",
    "stop:3%",
    "signal_loss:3%",
    "jump:3%",
    "slow:3%",
    "undeclared:2%",
    "plate_mismatch:2%",
    "duplicates:2%",
    "out_of_order:2%",
    "malformed:1%",
)


def fleet_trace(trucks: int) -> str:
    config = FleetConfig(
        trucks=trucks,
        seed=1,
        rail_containers=20,
        scenarios=tuple(parse_scenario(s) for s in SCENARIOS),
    )
    fleet = Fleet(config, Geofences.load(default_geofence_dir()))
    return "".join(trace_line(topic, payload) for _, topic, payload in fleet.messages())


def evaluate_vs_json(trace: str, repeat: int) -> dict[str, Any]:
    detector = build_detector(load_settings())
    lines = trace.splitlines(keepends=True)
    loads_s, eval_s, ratios = [], [], []
    messages = 0
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        for line in lines:
            json.loads(line)
        loads = time.process_time() - start
        gc.collect()
        start = time.process_time()
        summary = evaluate(detector, io.StringIO(trace), io.StringIO(), io.StringIO())
        spent = time.process_time() - start
        messages = summary.messages
        loads_s.append(loads)
        eval_s.append(spent)
        ratios.append(spent / loads)
    return {
        "bench": "evaluate_vs_json",
        "lines": len(lines),
        "messages": messages,
        "repeat": repeat,
        "evaluate_msg_per_s": round(messages / statistics.median(eval_s)),
        "json_loads_per_s": round(len(lines) / statistics.median(loads_s)),
        "ratio": round(statistics.median(ratios), 2),
        "ratios": [round(r, 2) for r in ratios],
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def memory_per_trip(trace: str) -> dict[str, Any]:
    """Core state per open trip, by tracemalloc, a third of the way into the trace."""
    detector = build_detector(load_settings())
    lines = trace.splitlines()
    head = lines[: len(lines) // 3]
    gc.collect()
    tracemalloc.start()
    engine = Engine(detector)
    before = tracemalloc.get_traced_memory()[0]
    for _, topic, payload in iter_trace(head):
        try:
            engine.feed(
                decode(topic, payload if isinstance(payload, dict | str) else json.dumps(payload))
            )
        except Exception:  # noqa: BLE001, S112 - malformed lines of the trace are skipped
            continue
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    trips = sum(1 for s in engine.store.values() if s.trip is not None and s.trip.is_open)
    per_lock = (after - before) / max(len(engine.store), 1)
    return {
        "bench": "memory_per_trip",
        "locks": len(engine.store),
        "open_trips": trips,
        "bytes_per_lock": round(per_lock),
        "gib_per_million_locks": round(per_lock * 1e6 / 2**30, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trucks", type=int, default=200, help="fleet size (default 200)")
    parser.add_argument("--trace", default=None, help="use this trace file instead of a fleet")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    args = parser.parse_args()
    if args.trace:
        with open(args.trace, encoding="utf-8") as f:
            trace = f.read()
    else:
        trace = fleet_trace(args.trucks)
    print(json.dumps(evaluate_vs_json(trace, args.repeat)), flush=True)
    print(json.dumps(memory_per_trip(trace)), flush=True)


if __name__ == "__main__":
    main()
