"""An officer's hand inspection at the gate, recorded with `smartlock gate ... --outcome`, on
real servers: a container that was never sealed is cleared and written off in the officer's
name; a plate-swapped one is seized, closed without a write-off; both are in the audit trail."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartlock.adapters.keys import RedisKeys
from tests.builders import Trip
from tests.integration.procs import Pipeline
from tests.integration.test_gate_loop import (
    BEILUN,
    DEPART,
    arrival_after,
    audit,
    declare_and_bind,
    gate,
    smartlock,
    writeoffs,
)
from tests.integration.test_gate_loop import pipeline as pipeline  # noqa: F401  (fixture)
from tests.unit.test_intake_rules import road_form

pytestmark = pytest.mark.integration


def test_an_officer_clears_one_container_and_seizes_another(
    pipeline: Pipeline,  # noqa: F811
    tmp_path: Path,
    unique: str,
) -> None:
    p = pipeline
    unsealed = Trip(
        f"LK-{unique}-u",
        f"DCL-{unique}-u",
        plate="浙G01345",
        container="CSQU3054383",
        t=DEPART,
        route=BEILUN,
    )
    swapped = Trip(
        f"LK-{unique}-s",
        f"DCL-{unique}-s",
        plate="浙G01346",
        container="MSCU1234566",
        t=DEPART,
        route=BEILUN,
    )
    declare_and_bind(
        p,
        [
            road_form(
                declaration_id=t.declaration_id,
                lock_id=t.lock_id,
                container_no=t.container,
                vehicle_plate=t.plate,
            )
            for t in (unsealed, swapped)
        ],
    )
    client = gate(p, "beilun-gate", tmp_path)
    try:
        first = client.arrive(arrival_after(unsealed, "beilun-gate"))
        assert first.verdict is not None and "lock was never sealed" in first.verdict["reasons"]
        swapped_arrival = arrival_after(swapped, "beilun-gate") | {"vehicle_plate": "浙B88888"}
        second = client.arrive(swapped_arrival)
        assert second.verdict is not None and second.verdict["verdict"] == "inspect"
    finally:
        client.close()

    assert p.mqtt is not None
    p.mqtt.login("officer", "chen.wei")  # the officer's own identity, admitted by the broker

    def outcome(t: Trip, plate: str, result: str, note: str) -> tuple[int, str]:
        done = smartlock(
            p,
            "gate",
            "beilun-gate",
            "--plate",
            plate,
            "--lock",
            t.lock_id,
            "--container",
            t.container,
            "--outcome",
            result,
            "--officer",
            "chen.wei",
            "--note",
            note,
            "--queue-dir",
            str(tmp_path / "q"),
        )
        return done.returncode, done.stdout + done.stderr

    code, shown = outcome(unsealed, unsealed.plate, "cleared", "opened: scarves as declared")
    assert code == 0, shown
    assert f"declaration {unsealed.declaration_id} is written off in the officer's name" in shown
    [record] = writeoffs(p, unsealed.declaration_id).values()
    assert record["decided_by"] == "officer chen.wei (manual inspection, cleared)"
    assert record["manual_outcome"]["note"] == "opened: scarves as declared"
    trail = audit(p, unsealed.declaration_id)
    assert [e["kind"] for e in trail] == ["verdict", "manual_outcome"]

    code, shown = outcome(swapped, "浙B88888", "seized", "tractor swapped, goods not as declared")
    assert code == 1, shown
    assert "closed without a write-off" in shown
    assert writeoffs(p, swapped.declaration_id) == {}
    trail = audit(p, swapped.declaration_id)
    assert trail[-1]["manual_outcome"]["outcome"] == "seized"
    assert p.redis().hget(RedisKeys(p.prefix).trip(swapped.lock_id), "state") == "closed"
