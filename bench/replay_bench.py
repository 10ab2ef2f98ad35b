"""Sustained publish rate of `smartlock replay --speed max` (and of the live fleet) on this machine.

Starts its own Mosquitto (the pipeline's configuration, local process, free port) and prints
JSON lines:

* ``replay``: messages/s of ``smartlock replay TRACE --speed max`` on a 100,000-message
  telemetry trace (200 locks), median of 3 runs, every message acknowledged (QoS 1);
* ``replay_fleet``: the same on a trace written by ``smartlock simulate --trace`` (real trip
  payloads: declarations, telemetry, events, gate arrivals), median of 3;
* ``simulate``: messages/s of ``smartlock simulate --speed max`` publishing live, median of 3.

The rates are the commands' own summaries (acknowledged messages over the time from the
first publish to the last PUBACK), with one subscriber-free broker.

Run: ``python bench/replay_bench.py [--messages N] [--trucks N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: tests.servers starts the broker

from tests.builders import telemetry_trace  # noqa: E402
from tests.servers import LocalBackend  # noqa: E402

RATE = re.compile(r"(\d+) sent, (\d+) acknowledged in ([\d.]+) s \((\d+) msg/s\)")


CREDENTIALS: dict[str, str] = {}  # SMARTLOCK_CREDENTIALS__DIR of the bench's broker


def run_cli(*args: str) -> dict[str, Any]:
    """Runs a smartlock command and reads the counts and rate from its summary line."""
    result = subprocess.run(
        [sys.executable, "-m", "smartlock.cli.main", *args],
        cwd=ROOT,
        env={**os.environ, **CREDENTIALS},
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = RATE.search(result.stdout)
    if result.returncode != 0 or not found:
        raise SystemExit(
            f"`smartlock {' '.join(args)}` failed ({result.returncode}): {result.stdout}{result.stderr}"
        )
    sent, acked, seconds, rate = found.groups()
    return {"sent": int(sent), "acked": int(acked), "seconds": float(seconds), "rate": int(rate)}


def median_of(rounds: int, *args: str) -> dict[str, Any]:
    runs = [run_cli(*args) for _ in range(rounds)]
    return {"msg_per_s": statistics.median(r["rate"] for r in runs), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--trucks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as tmp:
        work = Path(tmp)
        backend = LocalBackend(work / "servers")
        try:
            mqtt = backend.start("mqtt")
            CREDENTIALS["SMARTLOCK_CREDENTIALS__DIR"] = str(mqtt.credentials_dir)
            server = ["--mqtt-host", mqtt.host, "--mqtt-port", str(mqtt.port)]
            trace = work / "telemetry.jsonl"
            telemetry_trace(trace, "bench", args.messages)
            result = median_of(args.rounds, "replay", str(trace), "--speed", "max", *server)
            print(json.dumps({"bench": "replay", "messages": args.messages, **result}), flush=True)
            fleet = work / "fleet.jsonl"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "smartlock.cli.main",
                    "simulate",
                    "--trucks",
                    str(args.trucks),
                    "--trace",
                    str(fleet),
                ],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            result = median_of(args.rounds, "replay", str(fleet), "--speed", "max", *server)
            print(
                json.dumps({"bench": "replay_fleet", "trucks": args.trucks, **result}), flush=True
            )
            result = median_of(
                args.rounds, "simulate", "--trucks", str(args.trucks), "--speed", "max", *server
            )
            print(json.dumps({"bench": "simulate", "trucks": args.trucks, **result}), flush=True)
        finally:
            backend.close()


if __name__ == "__main__":
    main()
