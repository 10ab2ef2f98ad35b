"""The demo's fleet raises what the demo promises: detours and seal breaches (red), stops and
signal losses (amber), nothing stray."""

from __future__ import annotations

import io
import json
from collections import Counter

from smartlock.core.evaluate import evaluate
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.runtime import build_detector
from smartlock.settings import load_settings
from smartlock.simulators.demo_fleet import demo_fleet


def test_the_demo_fleet_raises_every_colour_and_nothing_stray() -> None:
    geo = Geofences.load(default_geofence_dir())
    messages = demo_fleet(
        geo, trucks=120, seed=11, detour_pct=20, breach_pct=10, stop_pct=15, silence_pct=15
    )
    trace = "".join(
        json.dumps({"topic": t, "payload": p}, ensure_ascii=False) + "\n" for t, p in messages
    )
    out = io.StringIO()
    summary = evaluate(build_detector(load_settings(), geo), io.StringIO(trace), out, io.StringIO())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    alerts = Counter(
        x["payload"]["type"] for x in lines if x["topic"].startswith("monitoring/alerts/")
    )
    assert summary.rejected == 0 and summary.malformed == 0
    assert set(alerts) == {
        "route_deviation",
        "route_rejoined",
        "seal_breach",
        "unauthorized_stop",
        "signal_lost",
    }, alerts
    assert alerts["route_deviation"] == alerts["route_rejoined"] > 10
    assert alerts["unauthorized_stop"] > 3 and alerts["signal_lost"] > 3, alerts
