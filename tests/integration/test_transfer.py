"""'Declared once' on real servers, security on: the origin office approves a bound declaration
and records its seal; the transfer record reaches the destination office (the gate's own MQTT
identity, which alone may read its gate's transfers); the truck is driven and released while the
intake is down; the destination's write-off notice waits in the intake's MQTT session and, once
the intake is back, writes the declaration off for the declarant, without the pipeline's
write-off record in Redis."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.mqtt import Received, client_for
from smartlock.contract.models import TransferRecord, WriteOffNotice
from smartlock.errors import InfrastructureError
from smartlock.services.intake.service import create_app
from smartlock.simulators.recorder import Recorder
from tests.builders import Trip, merge
from tests.integration.procs import Pipeline
from tests.integration.test_gate_loop import (
    BEILUN,
    DEPART,
    arrival_after,
    declare_and_bind,
    gate,
    settings_of,
    wait_heard,
)
from tests.integration.test_gate_loop import pipeline as pipeline  # noqa: F401  (fixture)
from tests.integration.test_pipeline_live import publish
from tests.unit.test_intake_rules import road_form

pytestmark = pytest.mark.integration


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_transfer_to_the_destination_and_write_off_back_to_the_origin_while_the_intake_was_down(
    pipeline: Pipeline,  # noqa: F811
    tmp_path: Path,
    unique: str,
) -> None:
    p = pipeline
    settings = settings_of(p)
    truck = Trip(
        f"LK-{unique}-t",
        f"DCL-{unique}-t",
        plate="浙G01345",
        container="CSQU3054383",
        t=DEPART,
        route=BEILUN,
    )
    # The destination office at Beilun reads its transfers with the gate's own login ...
    p.mqtt.login("gate", "beilun-gate")
    transfers: list[Received] = []
    got = threading.Event()
    office = client_for(settings, "beilun-gate", "beilun-gate")
    office.subscribe(["customs/transfers/beilun-gate"], lambda m: (transfers.append(m), got.set()))
    office.connect()
    # ... and no other gate may read them.
    p.mqtt.login("gate", "daxie-gate")
    nosy = client_for(settings, "daxie-gate", "daxie-gate")
    nosy.subscribe(["customs/transfers/beilun-gate"], lambda m: None)
    refused: list[str] = []
    try:  # the refusal (SUBACK) may already come back while connect waits for the CONNACK
        nosy.connect()
    except InfrastructureError as exc:
        refused.append(str(exc))
    # A witness of what the worker sends back to the origin.
    witnessed = io.StringIO()
    witness = Recorder(
        p.mqtt_host,
        p.mqtt_port,
        witnessed,
        topics=("customs/writeoffs/yiwu-origin",),
        login=p.mqtt.login("recorder"),
    )
    witness.start()
    try:

        def nosy_refused() -> bool:
            try:
                nosy.raise_if_failed()
            except InfrastructureError as exc:
                refused.append(str(exc))
            return bool(refused)

        _until(nosy_refused, "the broker let daxie-gate read beilun-gate's transfers", 5.0)
        assert "refused the subscription" in refused[0]

        # The intake runs (declare, bind), then stops: its write-off session stays on the broker.
        [reference] = declare_and_bind(
            p,
            [
                road_form(
                    declaration_id=truck.declaration_id,
                    lock_id=truck.lock_id,
                    container_no=truck.container,
                    vehicle_plate=truck.plate,
                )
            ],
        )
        store = CredentialStore(settings.credentials_dir)
        yiwu = store.ensure("customs", f"{p.prefix}-yiwu")
        declarant = store.ensure("declarant", f"{p.prefix}-forwarder")

        async def intake(requests: Callable[[TestClient], Any]) -> Any:
            app = create_app(settings, clock=lambda: datetime(2026, 11, 23, 7, 30, tzinfo=UTC))
            client = TestClient(TestServer(app))
            await client.start_server()
            try:
                return await requests(client)
            finally:
                await client.close()

        async def approve(client: TestClient) -> dict[str, Any]:
            resp = await client.post(
                f"/declarations/{reference}/approve",
                json={"seals": {truck.lock_id: "YW-2611-000123"}},
                headers=_bearer(yiwu),
            )
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

        approved = asyncio.run(intake(approve))
        assert approved["approval"]["office"] == f"{p.prefix}-yiwu"
        assert got.wait(10), "the transfer record did not reach the destination office"
        transfer = TransferRecord.model_validate(json.loads(transfers[0].payload))
        assert (transfer.declaration_id, transfer.reference, transfer.approving_office) == (
            truck.declaration_id,
            reference,
            f"{p.prefix}-yiwu",
        )
        assert [(s.lock_id, s.seal_no) for s in transfer.seals] == [
            (truck.lock_id, "YW-2611-000123")
        ]
        assert transfer.approved_at == datetime(2026, 11, 23, 7, 30, tzinfo=UTC)

        # Sealed, driven and released while the intake is down.
        truck.event("sealed", at=(0, 0)).drive(0, BEILUN.length_km)
        publish(p.mqtt, merge(truck))
        wait_heard(p, truck)
        client = gate(p, "beilun-gate", tmp_path)
        try:
            released = client.arrive(arrival_after(truck, "beilun-gate"))
        finally:
            client.close()
        assert released.verdict is not None and released.verdict["verdict"] == "release"
        _until(lambda: bool(witnessed.getvalue()), "no write-off notice\n" + p.log("worker-1"))
        [line] = [json.loads(x) for x in witnessed.getvalue().splitlines()]
        notice = WriteOffNotice.model_validate(line["payload"])
        assert (notice.declaration_id, notice.lock_id, notice.gate_id, notice.origin_site) == (
            truck.declaration_id,
            truck.lock_id,
            "beilun-gate",
            "yiwu-origin",
        )
        # The declarant's status must come from the notice, not the pipeline's own record.
        p.redis().delete(RedisKeys(p.prefix).writeoff(truck.declaration_id))

        async def follow(client: TestClient) -> dict[str, Any]:
            deadline = time.monotonic() + 30
            while True:
                resp = await client.get(f"/declarations/{reference}", headers=_bearer(declarant))
                record = dict(await resp.json())
                if record["status"] == "written_off" or time.monotonic() > deadline:
                    return record
                await asyncio.sleep(0.2)

        record = asyncio.run(intake(follow))
        assert record["status"] == "written_off", record
        [container] = record["containers"]
        assert (container["gate_id"], container["written_off_at"]) == (
            "beilun-gate",
            line["payload"]["written_off_at"],
        )
        assert container["decided_by"].startswith("smartlock automatic gate verification")
        assert [e["event"] for e in record["history"]] == [
            "submitted",
            "bound",
            "approved",
            "written_off",
        ]
    finally:
        witness.stop()
        office.disconnect()
        nosy.disconnect()


def _bearer(identity: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {identity.secret.get_secret_value()}"}
