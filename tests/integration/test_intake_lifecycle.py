"""The declarant's side of the loop on real servers: the status follows the trip to the
write-off, a plate amended mid-trip is republished and released at the gate, a detour ends in
inspect with the verdict's reason, a bound declaration cancelled before sealing is withdrawn
from the pipeline, another declarant sees nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.services.intake.service import create_app
from tests.builders import Trip, merge
from tests.integration.procs import Pipeline
from tests.integration.test_gate_loop import (
    BEILUN,
    DEPART,
    arrival_after,
    gate,
    settings_of,
    wait_heard,
)
from tests.integration.test_gate_loop import pipeline as pipeline  # noqa: F401  (fixture)
from tests.integration.test_pipeline_live import publish
from tests.unit.test_intake_rules import road_form

pytestmark = pytest.mark.integration


def _wait(check: Callable[[], bool], p: Pipeline, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}\n" + p.log("worker-1")
        time.sleep(0.2)


def test_status_amend_cancel_and_write_off_reach_the_declarant(
    pipeline: Pipeline, tmp_path: Path, unique: str
) -> None:
    p = pipeline
    settings = settings_of(p)
    store = CredentialStore(settings.credentials_dir)
    mine = store.ensure("declarant", f"{p.prefix}-acme")
    theirs = store.ensure("declarant", f"{p.prefix}-other")
    now = [datetime(2026, 11, 23, 2, 0, tzinfo=UTC)]
    clean = Trip(
        f"LK-{unique}-a",
        f"DCL-{unique}-a",
        plate="浙G01345",
        container="CSQU3054383",
        t=DEPART,
        route=BEILUN,
    )
    withdrawn = Trip(
        f"LK-{unique}-c",
        f"DCL-{unique}-c",
        plate="浙G01346",
        container="MSCU1234566",
        t=DEPART,
        route=BEILUN,
    )
    detoured = Trip(
        f"LK-{unique}-d",
        f"DCL-{unique}-d",
        plate="浙G01347",
        container="TGHU1234567",
        t=DEPART,
        route=BEILUN,
    )
    new_plate = "浙G07777"

    def form(t: Trip) -> dict[str, Any]:
        return road_form(
            declaration_id=t.declaration_id,
            lock_id=t.lock_id,
            container_no=t.container,
            vehicle_plate=t.plate,
        )

    async def scenario() -> None:
        app = create_app(settings, clock=lambda: now[0])
        me = TestClient(TestServer(app), headers=_bearer(mine))
        await me.start_server()
        other = TestClient(me.server, headers=_bearer(theirs))
        try:
            refs = {}
            for t in (clean, withdrawn, detoured):
                resp = await me.post("/declarations", json=form(t))
                assert resp.status == 201, await resp.text()
                refs[t.lock_id] = (await resp.json())["reference"]
            now[0] = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
            for t in (clean, withdrawn, detoured):
                bound = await me.post(
                    f"/declarations/{refs[t.lock_id]}/bind", json={"vehicle_plate": t.plate}
                )
                assert bound.status == 200, await bound.text()

            async def status(t: Trip) -> dict[str, Any]:
                resp = await me.get(f"/declarations/{refs[t.lock_id]}")
                assert resp.status == 200, await resp.text()
                return dict(await resp.json())

            # Withdrawn before sealing: the pipeline closes the trip and frees the lock.
            cancelled = await me.post(
                f"/declarations/{refs[withdrawn.lock_id]}/cancel",
                json={"reason": "order withdrawn"},
            )
            assert cancelled.status == 200, await cancelled.text()
            assert (await cancelled.json())["status"] == "cancelled"
            r = p.redis()
            _wait(
                lambda: r.hget(RedisKeys(p.prefix).trip(withdrawn.lock_id), "state") == "closed",
                p,
                "the cancellation did not reach the worker",
            )

            # Half the way, then the truck is swapped: the plate is amended and republished.
            clean.event("sealed", at=(0, 0)).drive(0, 40)
            await asyncio.to_thread(publish, p.mqtt, merge(clean))
            wait_heard(p, clean)
            assert (await status(clean))["status"] == "in_transit"
            amended = await me.patch(
                f"/declarations/{refs[clean.lock_id]}", json={"vehicle_plate": new_plate}
            )
            assert amended.status == 200, await amended.text()
            body = await amended.json()
            assert (body["version"], body["vehicle_plate"]) == (2, new_plate)
            refused = await me.patch(
                f"/declarations/{refs[clean.lock_id]}", json={"arrival": "2026-11-23 21:00 +08:00"}
            )
            assert refused.status == 409
            _wait(
                lambda: (
                    r.hget(RedisKeys(p.prefix).trip(clean.lock_id), "vehicle_plate") == new_plate
                ),
                p,
                "the amended plate did not reach the worker",
            )
            clean.plate = new_plate
            clean.messages.clear()
            clean.drive(40, BEILUN.length_km)
            await asyncio.to_thread(publish, p.mqtt, merge(clean))
            wait_heard(p, clean)

            # A detour off the expressway and back: the declarant reads the verdict's reason.
            detoured.event("sealed", at=(0, 0)).drive(0, 60)
            for i, y in enumerate((700, 1500, 2500, 2500, 2500, 1500, 700, 50)):
                detoured.fix(60 + 0.5 * (i + 1), y, dt=150)
            detoured.drive(64.5, BEILUN.length_km)
            await asyncio.to_thread(publish, p.mqtt, merge(detoured))
            wait_heard(p, detoured)
            assert (await status(detoured))["status"] == "in_transit"

            client = gate(p, "beilun-gate", tmp_path)
            try:
                held = client.arrive(arrival_after(detoured, "beilun-gate"))
                assert held.verdict is not None and held.verdict["verdict"] == "inspect"
                inspected = await status(detoured)
                assert inspected["status"] == "inspect"
                assert inspected["reasons"] == held.verdict["reasons"]
                assert "route_deviation" in inspected["reasons"][0]
                released = client.arrive(arrival_after(clean, "beilun-gate"))
                assert released.verdict is not None and released.verdict["verdict"] == "release", (
                    released.verdict
                )
                late = client.arrive(arrival_after(withdrawn, "beilun-gate"))
                assert late.verdict is not None
                assert late.verdict["reasons"] == [
                    f"no open declaration binds lock {withdrawn.lock_id}"
                ]
            finally:
                client.close()

            deadline = time.monotonic() + 30
            while (current := await status(clean))["status"] != "written_off":
                assert time.monotonic() < deadline, current
                await asyncio.sleep(0.2)
            [container] = current["containers"]
            assert container["gate_id"] == "beilun-gate" and container["written_off_at"]
            listed = await (await me.get("/declarations?status=written_off")).json()
            assert [d["reference"] for d in listed["declarations"]] == [refs[clean.lock_id]]
            listed = await (await me.get("/declarations?status=cancelled")).json()
            assert [d["reference"] for d in listed["declarations"]] == [refs[withdrawn.lock_id]]
            listed = await (await me.get("/declarations?status=inspect")).json()
            assert [d["reference"] for d in listed["declarations"]] == [refs[detoured.lock_id]]
            # Arrived and written off: no more amendments, no cancellation.
            late = await me.patch(
                f"/declarations/{refs[clean.lock_id]}", json={"vehicle_plate": "浙G01111"}
            )
            assert late.status == 409
            assert "already reached the gate (status written_off)" in (await late.json())["error"]
            gone = await me.post(f"/declarations/{refs[clean.lock_id]}/cancel", json={})
            assert gone.status == 409
            assert "the lock was sealed and the container departed" in (await gone.json())["error"]
            assert (await other.get(f"/declarations/{refs[clean.lock_id]}")).status == 404
            for refused in (
                await other.patch(
                    f"/declarations/{refs[detoured.lock_id]}", json={"vehicle_plate": "浙G01111"}
                ),
                await other.post(f"/declarations/{refs[detoured.lock_id]}/cancel", json={}),
            ):
                assert refused.status == 404
            assert (await (await other.get("/declarations")).json())["declarations"] == []
        finally:
            await other.close()
            await me.close()

    asyncio.run(scenario())


def _bearer(identity: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {identity.secret.get_secret_value()}"}
