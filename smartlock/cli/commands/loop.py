"""`smartlock loop`: the closed loop from declaration to write-off, on local servers, narrated."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run-dir", type=Path, default=Path(".run/loop"), help="servers' data and logs"
    )


def run(args: argparse.Namespace) -> int:
    from smartlock.local.loop import run_loop

    result = run_loop(args.run_dir)
    released = [lock for lock, v in result["verdicts"].items() if v.get("verdict") == "release"]
    return 0 if len(released) == len(result["verdicts"]) else 1
