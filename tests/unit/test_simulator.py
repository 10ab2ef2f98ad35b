"""The simulated fleet: scenarios cause what they should (judged by `smartlock evaluate`'s
code), a clean fleet causes nothing, the same seed gives the same bytes, and the example
traces are what the generator and the evaluator say they are."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from smartlock.core.evaluate import EvaluationSummary, evaluate
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.errors import ConfigError
from smartlock.runtime import build_detector
from smartlock.settings import load_settings
from smartlock.simulators.fleet import Fleet, FleetConfig, truck_ids
from smartlock.simulators.scenarios import KINDS, assign, load_scenarios, parse_scenario
from smartlock.simulators.traces import build as traces


@pytest.fixture(scope="module")
def geo() -> Geofences:
    return Geofences.load(default_geofence_dir())


@dataclass
class Judged:
    summary: EvaluationSummary
    alerts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    rejections: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    malformed: list[str] = field(default_factory=list)


def judge(fleet: Fleet, geo: Geofences) -> Judged:
    trace = io.StringIO()
    fleet.write_trace(trace)
    keys = fleet.keys()
    settings = load_settings(signing={"keys": keys}) if keys else load_settings()
    out, err = io.StringIO(), io.StringIO()
    summary = evaluate(build_detector(settings, geo), io.StringIO(trace.getvalue()), out, err)
    judged = Judged(summary)
    for line in out.getvalue().splitlines():
        record = json.loads(line)
        payload = record["payload"]
        if record["topic"].startswith("monitoring/alerts/"):
            judged.alerts[payload["lock_id"]].append(payload["type"])
        elif record["topic"].startswith("gates/"):
            judged.verdicts[payload["lock_id"]].append(payload)
    for line in err.getvalue().splitlines():
        if ": rejected (" in line:
            lock = line.split("rejected (", 1)[1].split(")", 1)[0]
            judged.rejections[lock].add(line.split("): ", 1)[1].split(":", 1)[0])
        elif ": malformed: " in line:
            judged.malformed.append(line)
    return judged


def test_a_fleet_without_scenarios_raises_nothing_and_every_arrival_is_released(
    geo: Geofences,
) -> None:
    fleet = Fleet(FleetConfig(trucks=16, seed=21, rail_containers=3), geo)
    judged = judge(fleet, geo)
    assert dict(judged.alerts) == {}
    assert judged.summary.rejected == 0 and judged.summary.malformed == 0
    locks = [truck_ids(n)["lock_id"] for n in range(16)] + ["RL-0001", "RL-0002", "RL-0003"]
    assert sorted(judged.verdicts) == sorted(locks)
    assert all(v["verdict"] == "release" for vs in judged.verdicts.values() for v in vs)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_scenario_causes_what_it_is_meant_to_and_nothing_else(
    name: str, geo: Geofences
) -> None:
    kind = KINDS[name]
    fleet = Fleet(
        FleetConfig(
            trucks=6, seed=31, scenarios=(parse_scenario(f"{name}:1%"),), sign=kind.needs_signing
        ),
        geo,
    )
    [(n, _)] = fleet.assigned.items()
    lock = truck_ids(n)["lock_id"]
    judged = judge(fleet, geo)
    assert set(judged.alerts.pop(lock, [])) == set(kind.alerts)
    assert dict(judged.alerts) == {}, "the trucks without a scenario raised alerts"
    [verdict] = judged.verdicts.pop(lock)
    assert verdict["verdict"] == kind.verdict, verdict["reasons"]
    assert all(v["verdict"] == "release" for vs in judged.verdicts.values() for v in vs)
    assert kind.rejects <= judged.rejections.pop(lock, set())
    assert dict(judged.rejections) == {}
    assert bool(judged.malformed) == kind.malformed


def test_the_detour_is_flagged_and_the_gate_says_why(geo: Geofences) -> None:
    fleet = Fleet(
        FleetConfig(
            trucks=4, seed=5, scenarios=(parse_scenario("detour:25%:minutes=25,distance_km=3"),)
        ),
        geo,
    )
    [(n, spec)] = fleet.assigned.items()
    assert spec.params == {"minutes": 25.0, "distance_km": 3.0}
    judged = judge(fleet, geo)
    lock = truck_ids(n)["lock_id"]
    assert judged.alerts[lock] == ["route_deviation", "route_rejoined"]
    assert any("route_deviation" in r for r in judged.verdicts[lock][0]["reasons"])


def test_same_seed_same_trace_byte_for_byte_and_another_seed_differs(geo: Geofences) -> None:
    def trace(seed: int) -> str:
        out = io.StringIO()
        config = FleetConfig(
            trucks=5,
            seed=seed,
            scenarios=(parse_scenario("tamper:20%"),),
            sign=True,
            rail_containers=2,
        )
        Fleet(config, geo).write_trace(out)
        return out.getvalue()

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_messages_are_in_send_order_and_seq_strictly_increases_per_lock(geo: Geofences) -> None:
    last_seq: dict[str, int] = {}
    last_t = float("-inf")
    for t, topic, payload in Fleet(
        FleetConfig(trucks=6, seed=8, rail_containers=2), geo
    ).messages():
        assert t >= last_t
        last_t = t
        if topic.startswith("locks/"):
            assert isinstance(payload, dict)
            assert payload["seq"] > last_seq.get(payload["lock_id"], 0)
            last_seq[payload["lock_id"]] = payload["seq"]


def test_percentages_pick_a_share_of_the_fleet_and_at_least_one_truck() -> None:
    chosen = assign([parse_scenario("detour:2%"), parse_scenario("tamper:0.5%")], 1000, seed=1)
    names = [spec.name for spec in chosen.values()]
    assert names.count("detour") == 20 and names.count("tamper") == 5
    assert len(assign([parse_scenario("stop:1%")], 10, seed=1)) == 1
    assert assign([parse_scenario("detour:2%")], 1000, seed=1) == assign(
        [parse_scenario("detour:2%")], 1000, seed=1
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("teleport:2%", "unknown scenario 'teleport'"),
        ("detour:two%", "is not a percentage"),
        ("detour:2%:speed=3", "has no parameter 'speed'"),
        ("detour:2%:minutes", "expected key=value"),
        ("detour:2%:minutes=soon", "must be a number"),
        ("detour:200%", "between 0 and 100"),
    ],
)
def test_bad_scenarios_are_refused_with_a_message(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_scenario(text)


def test_more_scenario_trucks_than_the_fleet_is_refused() -> None:
    with pytest.raises(ConfigError, match="more trucks"):
        assign([parse_scenario("detour:60%"), parse_scenario("stop:60%")], 10, seed=1)


def test_scenarios_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "scenarios:\n  - {name: detour, pct: 2}\n  - {name: stop, pct: '1%', minutes: 40}\n"
    )
    specs = load_scenarios(path)
    assert [(s.name, s.pct) for s in specs] == [("detour", 2.0), ("stop", 1.0)]
    assert specs[1].params["minutes"] == 40.0
    path.write_text("- detour\n")
    with pytest.raises(ConfigError, match="'scenarios:' list"):
        load_scenarios(path)


@pytest.mark.parametrize("name", sorted(traces.CONFIGS))
def test_example_traces_are_what_the_generator_and_evaluate_make(name: str, geo: Geofences) -> None:
    for file, content in traces.build(name, geo).items():
        committed = (traces.HERE / file).read_text(encoding="utf-8")
        assert committed == content, (
            f"{file} is stale: run python -m smartlock.simulators.traces.build"
        )


def test_the_scenario_example_trace_holds_every_scenario_alert() -> None:
    expected = (traces.HERE / "scenarios.expected.jsonl").read_text(encoding="utf-8").splitlines()
    types = {
        json.loads(line)["payload"]["type"] for line in expected if '"monitoring/alerts/' in line
    }
    assert types == set().union(*(KINDS[n].alerts for n in traces.SCENARIO_NAMES))


def test_simulate_to_a_trace_then_evaluate_shows_the_deviations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from smartlock.cli.main import main

    out = tmp_path / "out.jsonl"
    assert main(["simulate", "--trucks", "50", "--scenario", "detour:2%", "--trace", str(out)]) == 0
    assert "detour 1" in capsys.readouterr().err
    assert main(["evaluate", str(out)]) == 0
    alerts = [
        json.loads(line)["payload"]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"payload":{"alert_id"')
    ]
    assert [a["type"] for a in alerts] == ["route_deviation", "route_rejoined"]
    assert (
        main(["simulate", "--trucks", "5", "--scenario", "unsigned:20%", "--trace", str(out)]) == 2
    )
    assert "only means something with --sign" in capsys.readouterr().err
