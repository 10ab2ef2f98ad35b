"""The demo's fleet is a preset of the one fleet generator: red within the demo's first
minutes, every alert type (amber included) soon after, nothing stray; and the generator's
options the preset uses (incidents timed after a given event time, a fixed report interval)."""

from __future__ import annotations

import argparse
import io
import itertools
import json
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from smartlock.cli.commands import demo as demo_command
from smartlock.contract.timestamps import epoch
from smartlock.core.evaluate import EvaluationSummary, evaluate
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.runtime import build_detector
from smartlock.settings import load_settings
from smartlock.simulators.fleet import (
    DEFAULT_START,
    DEMO_START,
    Fleet,
    FleetConfig,
    demo_preset,
    trace_line,
    truck_ids,
)
from smartlock.simulators.scenarios import KINDS, parse_scenario

#: What the demo's scenarios raise: red (detour, seal breach), amber (stop, signal loss),
#: and the detour's return (info).
DEMO_ALERTS = {
    "route_deviation": "red",
    "route_rejoined": "info",
    "seal_breach": "red",
    "unauthorized_stop": "amber",
    "signal_lost": "amber",
}


@pytest.fixture(scope="module")
def geo() -> Geofences:
    return Geofences.load(default_geofence_dir())


def judge(
    messages: list[tuple[str, Any]], geo: Geofences
) -> tuple[EvaluationSummary, list[dict[str, Any]], list[dict[str, Any]]]:
    """Evaluates messages with the core, no servers: (summary, alerts, verdicts)."""
    trace = "".join(trace_line(topic, payload) for topic, payload in messages)
    out = io.StringIO()
    summary = evaluate(build_detector(load_settings(), geo), io.StringIO(trace), out, io.StringIO())
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    alerts = [r["payload"] for r in records if r["topic"].startswith("monitoring/alerts/")]
    verdicts = [r["payload"] for r in records if r["topic"].startswith("gates/")]
    return summary, alerts, verdicts


def test_the_demo_turns_a_truck_red_within_three_minutes_and_shows_every_alert_type_in_half_an_hour(
    geo: Geofences,
) -> None:
    # The fleet `smartlock demo` runs by default (its options' defaults are the preset's).
    defaults = argparse.ArgumentParser()
    demo_command.configure(defaults)
    args = defaults.parse_args([])
    config = demo_preset(
        args.trucks,
        args.seed,
        detour_pct=args.detour_pct,
        tamper_pct=args.breach_pct,
        stop_pct=args.stop_pct,
        signal_loss_pct=args.silence_pct,
    )
    assert config == demo_preset()
    start = DEMO_START.timestamp()
    first_half_hour = itertools.takewhile(
        lambda m: m[0] <= start + 1800, Fleet(config, geo).messages()
    )
    summary, alerts, _ = judge([(topic, p) for _, topic, p in first_half_hour], geo)
    assert summary.rejected == 0 and summary.malformed == 0
    assert {a["type"] for a in alerts} == set(DEMO_ALERTS), "every alert type, nothing stray"
    assert all(a["severity"] == DEMO_ALERTS[a["type"]] for a in alerts)
    assert all(epoch(a["ts"]) >= start for a in alerts), "nothing before the demo starts"
    first_red = min(epoch(a["ts"]) for a in alerts if a["severity"] == "red")
    assert first_red - start <= 180, "at 30x, red within six seconds of the start"
    reds = {a["lock_id"] for a in alerts if a["severity"] == "red"}
    ambers = {a["lock_id"] for a in alerts if a["severity"] == "amber"}
    assert len(reds) >= 3 and len(ambers) >= 3, (reds, ambers)


def test_every_demo_truck_raises_its_scenario_and_nothing_else_over_the_whole_trip(
    geo: Geofences,
) -> None:
    config = demo_preset(80, seed=11, detour_pct=15, tamper_pct=10, stop_pct=15, signal_loss_pct=15)
    fleet = Fleet(config, geo)
    summary, alerts, verdicts = judge(fleet.message_list(), geo)
    assert summary.rejected == 0 and summary.malformed == 0
    raised: dict[str, set[str]] = defaultdict(set)
    for alert in alerts:
        raised[alert["lock_id"]].add(alert["type"])
    expected = {
        truck_ids(n)["lock_id"]: set(spec.kind.alerts) for n, spec in fleet.assigned.items()
    }
    assert dict(raised) == expected
    assert {t for kinds in expected.values() for t in kinds} == set(DEMO_ALERTS)
    verdict = {v["lock_id"]: v["verdict"] for v in verdicts}
    assert len(verdict) == config.trucks, "every truck reaches its gate"
    for n in range(config.trucks):
        spec = fleet.assigned.get(n)
        assert verdict[truck_ids(n)["lock_id"]] == (spec.kind.verdict if spec else "release")


def test_the_demo_preset_is_deterministic(geo: Geofences) -> None:
    assert (
        Fleet(demo_preset(12, 5), geo).message_list()
        == Fleet(demo_preset(12, 5), geo).message_list()
    )
    assert (
        Fleet(demo_preset(12, 5), geo).message_list()
        != Fleet(demo_preset(12, 6), geo).message_list()
    )


def test_incidents_timed_after_an_event_time_strike_then_not_mid_route(geo: Geofences) -> None:
    after = DEFAULT_START + timedelta(minutes=20)
    mid_route = FleetConfig(
        trucks=4, seed=3, spread_min=10, scenarios=(parse_scenario("tamper:25%"),)
    )
    timed = replace(mid_route, incidents_from=after, incident_window_min=(1.0, 2.0))

    def breach(config: FleetConfig) -> float:
        _, alerts, _ = judge(Fleet(config, geo).message_list(), geo)
        [alert] = alerts
        assert alert["type"] == "seal_breach"
        return epoch(alert["ts"]) - after.timestamp()

    assert 60 <= breach(timed) <= 120 + 60  # within the window, at the lock's next fix
    assert breach(mid_route) > 15 * 60  # a quarter of the corridor in at the earliest


@pytest.mark.parametrize("name", ["detour", "stop", "signal_loss", "jump"])
def test_a_timed_scenario_causes_what_it_is_meant_to_after_its_time_and_nothing_else(
    name: str, geo: Geofences
) -> None:
    after = DEFAULT_START + timedelta(minutes=20)
    config = FleetConfig(
        trucks=6,
        seed=31,
        scenarios=(parse_scenario(f"{name}:1%"),),
        incidents_from=after,
        report_interval_s=30.0,
    )
    fleet = Fleet(config, geo)
    [(n, _)] = fleet.assigned.items()
    summary, alerts, verdicts = judge(fleet.message_list(), geo)
    assert summary.rejected == 0
    assert {a["lock_id"] for a in alerts} == {truck_ids(n)["lock_id"]}, "only the scenario truck"
    assert {a["type"] for a in alerts} == set(KINDS[name].alerts)
    assert min(epoch(a["ts"]) for a in alerts) >= after.timestamp()
    assert {v["verdict"] for v in verdicts if v["lock_id"] == truck_ids(n)["lock_id"]} == {
        KINDS[name].verdict
    }


def test_a_fixed_report_interval_puts_every_lock_on_its_grid(geo: Geofences) -> None:
    def gaps(config: FleetConfig) -> set[float]:
        last: dict[str, float] = {}
        found = set()
        for topic, payload in Fleet(config, geo).message_list():
            if topic.endswith("/telemetry"):
                t = epoch(payload["ts"])
                if payload["lock_id"] in last:
                    found.add(t - last[payload["lock_id"]])
                last[payload["lock_id"]] = t
        return found

    own = FleetConfig(trucks=8, seed=2)
    assert 45 in gaps(own)  # each lock its own interval: 30, 45 or 60 s
    assert all(gap % 30 == 0 for gap in gaps(replace(own, report_interval_s=30.0)))


def test_simulate_writes_the_demo_preset_as_a_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], geo: Geofences
) -> None:
    from smartlock.cli.main import main

    out = tmp_path / "demo.jsonl"
    assert main(["simulate", "--preset", "demo", "--trucks", "12", "--trace", str(out)]) == 0
    assert "simulated 12 trucks" in capsys.readouterr().err
    expected = io.StringIO()
    Fleet(demo_preset(12), geo).write_trace(expected)
    assert out.read_text(encoding="utf-8") == expected.getvalue()
    assert main(["simulate", "--preset", "demo", "--spread", "5", "--trace", str(out)]) == 2
    assert "sets its own departures" in capsys.readouterr().err
