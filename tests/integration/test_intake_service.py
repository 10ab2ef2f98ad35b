"""The intake service on real Redis and Mosquitto: declare, bind, and the declaration
arrives on MQTT ``customs/declarations``; a late bind is refused and publishes nothing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.mqtt import MqttClient, Received
from smartlock.services.intake.service import create_app
from smartlock.settings import load_settings
from tests.servers import Endpoint
from tests.unit.test_intake_rules import road_form

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


class Clock:
    """A settable clock for the service."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Declarations:
    """Collects what arrives on customs/declarations, from a unique client."""

    def __init__(self, mqtt: Endpoint, unique: str) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.client = MqttClient(
            mqtt.host, mqtt.port, f"test-intake-sub-{unique}", login=mqtt.login("recorder")
        )
        self.client.subscribe(["customs/declarations"], self._on)
        self.client.connect()

    def _on(self, msg: Received) -> None:
        with self._lock:
            self.payloads.append(json.loads(msg.payload))

    def of(self, declaration_id: str, wait: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                found = [p for p in self.payloads if p["declaration_id"] == declaration_id]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _settings(mqtt: Endpoint, redis_server: Endpoint, prefix: str, store: CredentialStore) -> Any:
    return load_settings(
        credentials={"dir": store.directory},
        mqtt={"host": mqtt.host, "port": mqtt.port},
        redis={"url": redis_server.url, "prefix": prefix},
    )


async def _run(settings: Any, clock: Clock, scenario: Any, token: str) -> Any:
    client = TestClient(
        TestServer(create_app(settings, clock=clock)), headers={"Authorization": f"Bearer {token}"}
    )
    await client.start_server()
    try:
        return await scenario(client)
    finally:
        await client.close()


def test_declare_bind_and_the_declaration_arrives_on_mqtt(
    mqtt_server: Endpoint, redis_server: Endpoint, unique: str, credentials: CredentialStore
) -> None:
    listener = Declarations(mqtt_server, unique)
    token = credentials.issue("declarant", f"decl-{unique}").secret.get_secret_value()
    clock = Clock(NOW)
    prefix = f"test-{unique}"
    form = road_form(declaration_id=f"DCL-{unique}", lock_id=f"LK-{unique}")

    async def scenario(client: TestClient) -> tuple[str, dict[str, Any]]:
        assert (await client.get("/healthz")).status == 200
        refused = await client.post(
            "/declarations", json=road_form(cargo=[dict(form["cargo"][0], description="goods")])
        )
        assert refused.status == 422
        assert (await refused.json())["errors"][0]["field"] == "cargo[0].description"
        bad = await client.post(
            "/declarations", data="{not json", headers={"Content-Type": "application/json"}
        )
        assert bad.status == 400 and "not valid JSON" in (await bad.json())["error"]
        resp = await client.post("/declarations", json=form)
        assert resp.status == 201, await resp.text()
        accepted = await resp.json()
        reference = accepted["reference"]
        assert accepted["declaration_id"] == f"DCL-{unique}" and accepted["fee"]["total"] == "0.50"
        assert (await (await client.get(f"/declarations/{reference}")).json())[
            "status"
        ] == "accepted"
        assert (await client.post("/declarations", json=form)).status == 409
        clock.now = NOW + timedelta(hours=9)  # 11:00Z, 35 minutes before arrival
        mismatch = await client.post(
            f"/declarations/{reference}/bind", json={"vehicle_plate": "浙B88888"}
        )
        assert mismatch.status == 422
        bound = await client.post(
            f"/declarations/{reference}/bind", json={"vehicle_plate": "浙g 01345"}
        )
        assert bound.status == 200, await bound.text()
        record = await bound.json()
        assert record["status"] == "bound" and record["bound_at"] == "2026-11-23T11:00:00Z"
        again = await client.post(
            f"/declarations/{reference}/bind", json={"vehicle_plate": "浙G01345"}
        )
        assert again.status == 409
        assert (await client.get("/declarations/CCRN-2611-0000-0000-0")).status == 404
        fees = await client.post("/fees", json={"cargo": [{"value": 47001, "currency": "HKD"}]})
        assert (await fees.json())["total"] == "1.00"
        assert (await (await client.get("/openapi.json")).json())["openapi"] == "3.1.0"
        return reference, accepted["declaration"]

    try:
        reference, declaration = asyncio.run(
            _run(_settings(mqtt_server, redis_server, prefix, credentials), clock, scenario, token)
        )
        arrived = listener.of(f"DCL-{unique}")
        assert arrived == [declaration]
        assert (
            arrived[0]["lock_id"] == f"LK-{unique}"
            and arrived[0]["eta_ts"] == "2026-11-23T11:35:00Z"
        )
        r = redis_server.client()
        assert r.hget(RedisKeys(prefix).intake(reference), "status") == "bound"
        assert r.get(RedisKeys(prefix).intake_by_declaration(f"DCL-{unique}")) == reference
        assert (
            json.loads(r.hget(RedisKeys(prefix).intake(reference), "record"))["declaration"]
            == declaration
        )
    finally:
        listener.client.disconnect()


def test_a_late_bind_is_refused_and_publishes_nothing(
    mqtt_server: Endpoint, redis_server: Endpoint, unique: str, credentials: CredentialStore
) -> None:
    listener = Declarations(mqtt_server, unique)
    token = credentials.issue("declarant", f"decl-{unique}").secret.get_secret_value()
    clock = Clock(NOW)
    form = road_form(lock_id=f"LK-{unique}")

    async def scenario(client: TestClient) -> str:
        resp = await client.post("/declarations", json=form)
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert body["declaration_id"] == body["reference"]
        clock.now = datetime(2026, 11, 23, 11, 6, tzinfo=UTC)  # 29 minutes before arrival
        late = await client.post(
            f"/declarations/{body['reference']}/bind", json={"vehicle_plate": "浙G01345"}
        )
        assert late.status == 422
        assert (await late.json())["errors"] == [
            {
                "field": "arrival",
                "message": (
                    "arrival: too late to bind; the driver binds at least 30 minutes before arrival at the control point, "
                    "i.e. by 2026-11-23 19:05 Asia/Shanghai; declare again with a later arrival."
                ),
            }
        ]
        assert (await (await client.get(f"/declarations/{body['reference']}")).json())[
            "status"
        ] == "accepted"
        return str(body["declaration_id"])

    try:
        declaration_id = asyncio.run(
            _run(
                _settings(mqtt_server, redis_server, f"test-{unique}", credentials),
                clock,
                scenario,
                token,
            )
        )
        assert listener.of(declaration_id, wait=1.0) == []
    finally:
        listener.client.disconnect()


def test_a_redis_outage_is_a_503_with_a_reason_and_healthz_says_so(
    mqtt_server: Endpoint, unique: str, credentials: CredentialStore, tmp_path: Any
) -> None:
    from smartlock.local import stack

    run_dir = tmp_path / "redis"
    (port,) = stack.free_ports(1)
    server = stack.redis_server(run_dir, port, credentials=credentials, prefix="*")
    stack.start_servers(run_dir, [server])
    own_redis = Endpoint("redis", "127.0.0.1", port, credentials_dir=credentials.directory)
    token = credentials.issue("declarant", f"decl-{unique}").secret.get_secret_value()
    settings = _settings(mqtt_server, own_redis, f"test-{unique}", credentials)
    form = road_form(declaration_id=f"DCL-{unique}", lock_id=f"LK-{unique}")

    async def scenario(client: TestClient) -> None:
        healthy = await client.get("/healthz")
        assert (healthy.status, await healthy.json()) == (
            200,
            {"status": "ok", "mqtt": "ok", "writeoff_notices": "ok", "redis": "ok"},
        )
        stack.stop_servers(run_dir)  # Redis goes away
        down = await client.get("/healthz")
        body = await down.json()
        assert down.status == 503 and body["status"] == "degraded", body
        assert body["redis"].startswith("down: ") and body["mqtt"] == "ok"
        refused = await client.post("/declarations", json=form)
        assert refused.status == 503, await refused.text()
        assert refused.headers["Retry-After"] == "5"
        assert "nothing was stored" in (await refused.json())["error"]
        stack.start_servers(run_dir, [server])  # back: the same request goes through
        assert (await client.get("/healthz")).status == 200
        accepted = await client.post("/declarations", json=form)
        assert accepted.status == 201, await accepted.text()

    try:
        asyncio.run(_run(settings, Clock(NOW), scenario, token))
    finally:
        stack.stop_servers(run_dir)
