"""Builds the example traces in this folder, each with the output it must produce.

``python -m smartlock.simulators.traces.build`` rewrites them; a test rebuilds them in memory and
compares byte for byte, and checks that ``smartlock evaluate`` on each committed trace
prints exactly its ``.expected.jsonl``.

* ``clean``: three trucks and a train of two containers, nothing goes wrong: no alert,
  every gate arrival released.
* ``scenarios``: thirteen trucks; eleven each carry one scenario (every one but
  ``unsigned``), two are clean.
* ``signed``: three signed trucks, one of which receives forged unsigned messages; evaluate
  it with the keys in ``signed.keys.json`` (``[signing] keys_file``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from smartlock.core.evaluate import evaluate
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.runtime import build_detector
from smartlock.settings import load_settings
from smartlock.simulators.fleet import Fleet, FleetConfig
from smartlock.simulators.scenarios import KINDS, parse_scenario

HERE = Path(__file__).resolve().parent
SCENARIO_NAMES = [name for name, kind in KINDS.items() if not kind.needs_signing]

CONFIGS: dict[str, FleetConfig] = {
    "clean": FleetConfig(trucks=3, seed=11, rail_containers=2),
    "scenarios": FleetConfig(
        trucks=len(SCENARIO_NAMES) + 2,
        seed=12,
        scenarios=tuple(parse_scenario(f"{name}:1%") for name in SCENARIO_NAMES),
    ),
    "signed": FleetConfig(
        trucks=3, seed=13, sign=True, scenarios=(parse_scenario("unsigned:1%:rate=0.1"),)
    ),
}


def build(name: str, geofences: Geofences) -> dict[str, str]:
    """file name -> content of the example ``name``."""
    fleet = Fleet(CONFIGS[name], geofences)
    trace = io.StringIO()
    fleet.write_trace(trace)
    keys = fleet.keys()
    settings = load_settings(signing={"keys": keys}) if keys else load_settings()
    expected = io.StringIO()
    evaluate(
        build_detector(settings, geofences), io.StringIO(trace.getvalue()), expected, io.StringIO()
    )
    files = {f"{name}.jsonl": trace.getvalue(), f"{name}.expected.jsonl": expected.getvalue()}
    if keys:
        files[f"{name}.keys.json"] = json.dumps(keys, indent=1, sort_keys=True) + "\n"
    return files


def main() -> None:
    geofences = Geofences.load(default_geofence_dir())
    for name in CONFIGS:
        for file, content in build(name, geofences).items():
            (HERE / file).write_text(content, encoding="utf-8")
            print(f"wrote {HERE / file} ({content.count(chr(10))} lines)")


if __name__ == "__main__":
    main()
