"""End-to-end throughput and publish-to-alert latency of the live pipeline on this machine.

Runs the demo headless (local servers, one bridge, one worker, the demo fleet) at several
speeds and prints, per run: messages published and their rate, alerts received, and the
median and p99 wall time from publishing the message that raised an alert to receiving
that alert on MQTT. Run: ``python bench/pipeline_bench.py [--trucks N] [--speeds 30,120]``.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path

from rich.console import Console

from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.local.demo import run_demo
from smartlock.simulators.fleet import DEMO_START, Fleet, demo_preset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trucks", type=int, default=1000)
    parser.add_argument("--speeds", default="30,120")
    parser.add_argument("--duration", type=float, default=45.0)
    args = parser.parse_args()
    geo = Geofences.load(default_geofence_dir())
    for speed in [float(s) for s in args.speeds.split(",")]:
        with tempfile.TemporaryDirectory() as run_dir:
            figures = run_demo(
                lambda: Fleet(
                    demo_preset(args.trucks, 11, detour_pct=5, tamper_pct=5), geo
                ).message_list(),
                run_dir=Path(run_dir),
                duration=args.duration,
                speed=speed,
                paced_from=DEMO_START.timestamp(),
                console=Console(file=io.StringIO()),
            )
        print(json.dumps({"trucks": args.trucks, "speed": speed, **figures}))


if __name__ == "__main__":
    main()
