"""The console's live feed over HTTP on a real Redis: snapshot, live updates, Last-Event-ID resume."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from smartlock.adapters.keys import RedisKeys
from smartlock.services.console.app import ConsoleConfig, create_app
from smartlock.services.console.auth import COOKIE, Principal
from tests.servers import Endpoint

pytestmark = pytest.mark.integration


def verify(name: str, password: str) -> Principal | None:
    return Principal("op", "operator") if (name, password) == ("op", "op-password") else None


def config(server: Endpoint, prefix: str) -> ConsoleConfig:
    def no_broker(*args: str) -> dict[str, Any]:
        raise AssertionError("this test resolves nothing")

    return ConsoleConfig(
        redis=lambda: server.client("console", asynchronous=True),
        prefix=prefix,
        geofences={"type": "FeatureCollection", "features": []},
        verify=verify,
        publish_resolution=no_broker,
        probe=dict,
    )


def alert(n: int) -> dict[str, str]:
    return {
        "json": json.dumps(
            {
                "alert_id": f"al-{n}",
                "declaration_id": "D-1",
                "lock_id": "LK-1",
                "type": "seal_breach",
                "severity": "red",
                "ts": f"2026-11-22T08:{n:02d}:00Z",
                "lat": 29.5,
                "lon": 120.5,
                "detail": {},
            }
        )
    }


async def events(
    client: TestClient, last_id: str | None, want: int
) -> list[tuple[str, str | None, Any]]:
    """The first ``want`` named events (event, id, data) of a fresh SSE connection."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    resp = await client.get("/api/events", headers=headers)
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    out: list[tuple[str, str | None, Any]] = []
    event, event_id = None, None
    try:
        while len(out) < want:
            line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: ") and event != "health":
                out.append((event or "", event_id, json.loads(line[6:])))
                event_id = None
    finally:
        resp.close()
    return out


def test_snapshot_then_updates_and_resume_with_last_event_id(
    redis_server: Any, unique: str
) -> None:
    prefix = f"c{unique}"
    r = redis_server.client()
    r.xadd(RedisKeys(prefix).alerts, alert(1))

    async def scenario() -> None:
        client = TestClient(TestServer(create_app(config(redis_server, prefix))))
        await client.start_server()
        try:
            assert (await client.get("/api/events")).status == 401
            signed = await client.post(
                "/login", data={"name": "op", "password": "op-password"}, allow_redirects=False
            )
            assert signed.status == 302 and COOKIE in signed.cookies
            [(kind, first_id, snap)] = await events(client, None, 1)
            assert kind == "snapshot" and [a["alert_id"] for a in snap["alerts"]] == ["al-1"]
            r.xadd(RedisKeys(prefix).alerts, alert(2))  # while nobody is connected
            r.xadd(RedisKeys(prefix).alerts, alert(3))
            await asyncio.sleep(0.5)
            resumed = await events(client, first_id, 1)
            assert resumed[0][0] == "update"  # not a new snapshot: only what was missed
            got = [a["alert_id"] for _, _, u in resumed for a in u["alerts"]]
            last_id = resumed[0][1]
            assert got[0] == "al-2"
            if len(got) == 1:  # the feed may have read the two entries in one or two batches
                more = await events(client, resumed[0][1], 1)
                got += [a["alert_id"] for _, _, u in more for a in u["alerts"]]
                last_id = more[0][1]
            assert got == ["al-2", "al-3"]
            # What a gate client records (a manual fallback) comes live, with Redis's time.
            manual = {"kind": "manual", "lock_id": "LK-1", "reason": "no signed verdict within 1 s"}
            entry_id = r.xadd(RedisKeys(prefix).gate_events, {"json": json.dumps(manual)})
            [(kind, _, update)] = await events(client, last_id, 1)
            assert kind == "update" and update["gate"] == [
                manual | {"recorded_ms": int(entry_id.split("-")[0])}
            ]
            [(kind, _, snap)] = await events(client, "from-an-earlier-console-7", 1)
            assert kind == "snapshot" and len(snap["alerts"]) == 3
            assert [e["reason"] for e in snap["gate_events"]] == [manual["reason"]]
        finally:
            await client.close()

    asyncio.run(scenario())
