"""An officer's hand inspection at the gate, recorded with `smartlock gate ... --outcome`, on
real servers: a container that was never sealed is cleared and written off in the officer's
name; a plate-swapped one is seized, closed without a write-off; both are in the audit trail.
In fallback mode (the worker stopped) the outcome is queued on disk and recorded once the
pipeline is back, under the declaration, even though the pipeline judged the queued arrival
first."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.contract.models import format_ts
from smartlock.services.gate.queue import FallbackQueue
from smartlock.services.intake.service import create_app
from tests.builders import Trip, merge
from tests.integration.procs import Pipeline
from tests.integration.test_gate_loop import (
    BEILUN,
    DEPART,
    arrival_after,
    audit,
    declare_trips,
    gate,
    reconcile_until_settled,
    settings_of,
    smartlock,
    wait_heard,
    writeoffs,
)
from tests.integration.test_gate_loop import pipeline as pipeline  # noqa: F401  (fixture)
from tests.integration.test_pipeline_live import publish

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
    declare_trips(p, [unsealed, swapped])
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
    assert shown.startswith(
        f"Recorded: officer chen.wei cleared container {unsealed.container} (lock "
        f"{unsealed.lock_id}); declaration {unsealed.declaration_id} is written off."
    )
    [record] = writeoffs(p, unsealed.declaration_id).values()
    assert record["decided_by"] == "officer chen.wei (manual inspection, cleared)"
    assert record["manual_outcome"]["note"] == "opened: scarves as declared"
    trail = audit(p, unsealed.declaration_id)
    assert [e["kind"] for e in trail] == ["verdict", "manual_outcome"]

    code, shown = outcome(swapped, "浙B88888", "seized", "tractor swapped, goods not as declared")
    assert code == 1, shown
    assert "is closed: the container is seized, not released" in shown
    assert writeoffs(p, swapped.declaration_id) == {}
    trail = audit(p, swapped.declaration_id)
    assert trail[-1]["manual_outcome"]["outcome"] == "seized"
    assert p.redis().hget(RedisKeys(p.prefix).trip(swapped.lock_id), "state") == "closed"


def declarant_reads(p: Pipeline, reference: str, expect: str) -> dict[str, Any]:
    """The declaration as its declarant reads it over HTTP (GET /declarations/{reference}),
    once its status is ``expect`` or after 30 s (the write-off notice reaches the intake
    asynchronously, from its MQTT session, after it starts)."""
    settings = settings_of(p)
    token = CredentialStore(settings.credentials_dir).get(f"{p.prefix}-forwarder").secret

    async def read() -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {token.get_secret_value()}"}
        client = TestClient(TestServer(create_app(settings)), headers=auth)
        await client.start_server()
        try:
            deadline = time.monotonic() + 30
            while True:
                resp = await client.get(f"/declarations/{reference}")
                assert resp.status == 200, await resp.text()
                body: dict[str, Any] = await resp.json()
                if body["status"] == expect or time.monotonic() > deadline:
                    return body
                await asyncio.sleep(0.2)
        finally:
            await client.close()

    return asyncio.run(read())


def test_fallback_the_officers_outcome_is_queued_and_recorded_once_the_pipeline_is_back(
    pipeline: Pipeline,  # noqa: F811
    tmp_path: Path,
    unique: str,
) -> None:
    p = pipeline
    kept = Trip(f"LK-{unique}-k", f"DCL-{unique}-k", plate="浙G01347", t=DEPART, route=BEILUN)
    fine = Trip(
        f"LK-{unique}-f", f"DCL-{unique}-f", plate="浙G01348", container="MSCU1234566",
        t=DEPART, route=BEILUN,
    )  # fmt: skip
    kept_ref, fine_ref = declare_trips(p, [kept, fine])
    for t in (kept, fine):  # clean trips: the pipeline would release both
        t.event("sealed", at=(0, 0)).drive(0, BEILUN.length_km)
    assert p.mqtt is not None
    publish(p.mqtt, merge(kept, fine))
    wait_heard(p, kept)
    wait_heard(p, fine)

    p.stop("worker-1")  # the pipeline is down: the gate falls back to manual inspection
    queue_dir = tmp_path / "queue-beilun-gate"
    client = gate(p, "beilun-gate", tmp_path)
    try:
        for t in (kept, fine):
            assert client.arrive(arrival_after(t, "beilun-gate")).manual
    finally:
        client.close()
    p.mqtt.login("officer", "chen.wei")

    def outcome(t: Trip, result: str, note: str) -> tuple[int, str]:
        done = smartlock(
            p, "gate", "beilun-gate", "--plate", t.plate, "--lock", t.lock_id,
            "--container", t.container, "--outcome", result, "--officer", "chen.wei",
            "--note", note, "--ts", format_ts(t.t + timedelta(minutes=20)),
            "--queue-dir", str(queue_dir),
        )  # fmt: skip
        return done.returncode, done.stdout + done.stderr

    code, shown = outcome(kept, "seized", "undeclared lithium batteries behind the cartons")
    assert code == 3, shown
    assert "It is queued on disk and will be recorded when the pipeline is back" in shown
    assert "do not record it again" in shown
    code, shown = outcome(fine, "cleared", "opened: scarves as declared")
    assert code == 3, shown
    pending = FallbackQueue(queue_dir).pending()
    assert sorted("outcome" in e for e in pending) == [False, False, True, True]

    p.start("worker")
    p.wait_worker_ready()
    told = reconcile_until_settled(p, "beilun-gate", queue_dir)
    assert FallbackQueue(queue_dir).pending() == []
    assert told.count("Reconciled: the outcome of the hand inspection at ") == 2, told
    assert (
        f"is recorded: officer chen.wei seized container {kept.container} (lock {kept.lock_id}); "
        f"declaration {kept.declaration_id} is closed" in told
    )

    # The pipeline judged the queued arrival first (release, written off), then the outcome:
    # it belongs to the declaration, never to an "undeclared" consignment.
    trail = audit(p, kept.declaration_id)
    assert [(e["kind"], e["verdict"]) for e in trail] == [
        ("verdict", "release"),
        ("manual_outcome", "inspect"),
    ]
    assert trail[-1]["decided_by"] == "officer chen.wei (manual inspection, seized)"
    assert trail[-1]["manual_outcome"]["after_release"] is True
    assert audit(p, "undeclared") == []
    assert p.redis().hget(RedisKeys(p.prefix).trip(kept.lock_id), "state") == "closed"
    seized = declarant_reads(p, kept_ref, "inspect")
    assert seized["status"] == "inspect"
    assert seized["reasons"] == [
        "officer chen.wei seized the container by hand: undeclared lithium batteries behind the "
        "cartons"
    ]

    assert [e["kind"] for e in audit(p, fine.declaration_id)] == ["verdict", "manual_outcome"]
    [written] = writeoffs(p, fine.declaration_id).values()  # one write-off, not two
    assert written["decided_by"].startswith("smartlock automatic gate verification")
    assert declarant_reads(p, fine_ref, "written_off")["status"] == "written_off"
