"""'Declared once' on real servers: the origin office approves a bound declaration, the
transfer record reaches the destination office's topic, the truck is sealed and driven, the
gate releases it, and the destination's write-off notice comes back on the origin's topic."""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from smartlock.adapters.credentials import CredentialStore
from smartlock.contract.models import TransferRecord, WriteOffNotice
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


def test_transfer_to_the_destination_and_write_off_back_to_the_origin(
    pipeline: Pipeline,  # noqa: F811
    tmp_path: Path,
    unique: str,
) -> None:
    p = pipeline
    truck = Trip(
        f"LK-{unique}-t",
        f"DCL-{unique}-t",
        plate="浙G01345",
        container="CSQU3054383",
        t=DEPART,
        route=BEILUN,
    )
    out = io.StringIO()
    recorder = Recorder(
        p.mqtt_host,
        p.mqtt_port,
        out,
        topics=("customs/transfers/beilun-gate", "customs/writeoffs/yiwu-origin"),
        login=p.mqtt.login("recorder"),
    )
    recorder.start()
    try:
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
        settings = settings_of(p)
        office = CredentialStore(settings.credentials_dir).ensure("customs", f"{p.prefix}-yiwu")
        auth = {"Authorization": f"Bearer {office.secret.get_secret_value()}"}

        async def approve() -> dict:
            app = create_app(settings, clock=lambda: datetime(2026, 11, 23, 7, 30, tzinfo=UTC))
            client = TestClient(TestServer(app), headers=auth)
            await client.start_server()
            try:
                resp = await client.post(f"/declarations/{reference}/approve", json={})
                assert resp.status == 200, await resp.text()
                return dict(await resp.json())
            finally:
                await client.close()

        approved = asyncio.run(approve())
        assert approved["approval"]["office"] == f"{p.prefix}-yiwu"

        truck.event("sealed", at=(0, 0)).drive(0, BEILUN.length_km)
        publish(p.mqtt, merge(truck))
        wait_heard(p, truck)
        client = gate(p, "beilun-gate", tmp_path)
        try:
            released = client.arrive(arrival_after(truck, "beilun-gate"))
        finally:
            client.close()
        assert released.verdict is not None and released.verdict["verdict"] == "release"

        deadline = time.monotonic() + 30
        while out.getvalue().count("\n") < 2:
            assert time.monotonic() < deadline, out.getvalue() + p.log("worker-1")
            time.sleep(0.2)
    finally:
        recorder.stop()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    by_topic = {line["topic"]: line["payload"] for line in lines}
    transfer = TransferRecord.model_validate(by_topic["customs/transfers/beilun-gate"])
    assert (transfer.declaration_id, transfer.approving_office) == (
        truck.declaration_id,
        f"{p.prefix}-yiwu",
    )
    assert [s.seal_no for s in transfer.seals] == [truck.lock_id]
    notice = WriteOffNotice.model_validate(by_topic["customs/writeoffs/yiwu-origin"])
    assert (notice.declaration_id, notice.lock_id, notice.gate_id) == (
        truck.declaration_id,
        truck.lock_id,
        "beilun-gate",
    )
    assert notice.decided_by.startswith("smartlock automatic gate verification")
