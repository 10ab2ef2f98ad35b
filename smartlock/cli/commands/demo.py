"""`smartlock demo`: the local demo (servers, bridge, worker, a simulated fleet, a live view)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.local.demo import run_demo
from smartlock.simulators.fleet import DEMO_START, Fleet, demo_preset
from smartlock.simulators.publisher import Payload


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trucks", type=int, default=300, help="fleet size (default 300)")
    parser.add_argument(
        "--speed",
        type=float,
        default=30.0,
        help="event time runs this many times faster (default 30)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: Ctrl-C, or fleet done)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--detour-pct", type=float, default=3.0, help="trucks that detour 20 min (red)"
    )
    parser.add_argument(
        "--breach-pct", type=float, default=2.0, help="seals forced open in transit (red)"
    )
    parser.add_argument(
        "--stop-pct", type=float, default=2.0, help="trucks that stop 20 min (amber)"
    )
    parser.add_argument(
        "--silence-pct", type=float, default=2.0, help="locks silent for 15 min (amber)"
    )
    parser.add_argument("--run-dir", type=Path, default=Path(".run/demo"))
    parser.add_argument(
        "--figures", type=Path, default=None, help="write the measured figures here as JSON"
    )


def run(args: argparse.Namespace) -> int:
    config = demo_preset(
        args.trucks,
        args.seed,
        detour_pct=args.detour_pct,
        tamper_pct=args.breach_pct,
        stop_pct=args.stop_pct,
        signal_loss_pct=args.silence_pct,
    )

    def messages() -> list[tuple[str, Payload]]:
        return Fleet(config, Geofences.load(default_geofence_dir())).message_list()

    figures = run_demo(
        messages,
        run_dir=args.run_dir,
        duration=args.duration,
        speed=args.speed,
        paced_from=DEMO_START.timestamp(),
    )
    if args.figures is not None:
        args.figures.write_text(json.dumps(figures, indent=2) + "\n")
    return 0
