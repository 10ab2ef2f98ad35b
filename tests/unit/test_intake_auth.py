"""The intake's HTTP guard on the real aiohttp app (in-memory store): tokens, roles,
ownership, JSON-only bodies and the body-size limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from smartlock.adapters.credentials import CredentialStore
from smartlock.services.intake.auth import MAX_BODY_BYTES, store_authenticator
from smartlock.services.intake.service import memory_app
from tests.unit.test_intake_rules import NOW, road_form


def _run(
    tmp_path: Path, scenario: Callable[[TestClient[Any, Any], CredentialStore], Awaitable[None]]
) -> list[Any]:
    store = CredentialStore(tmp_path)
    sent: list[Any] = []

    async def publish(topic: str, payload: bytes) -> None:
        sent.append((topic, payload))

    async def main() -> None:
        app = memory_app(publish, store_authenticator(store), lambda: NOW)
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            await scenario(client, store)
        finally:
            await client.close()

    asyncio.run(main())
    return sent


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_anonymous_and_forged_tokens_get_401(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], store: CredentialStore) -> None:
        for headers in ({}, _auth("slt_forged"), {"Authorization": "Basic YTpi"}):
            resp = await client.post("/declarations", json=road_form(), headers=headers)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "API token" in (await resp.json())["error"]
            assert (
                await client.get("/declarations/CCRN-2611-0000-0000-0", headers=headers)
            ).status == 401
        # a lock's MQTT password is no intake token
        lock = store.issue("lock", "LK-01")
        assert (
            await client.get("/declarations/X", headers=_auth(lock.secret.get_secret_value()))
        ).status == 401
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/openapi.json")).status == 200

    assert _run(tmp_path, scenario) == []


def test_declarant_sees_and_binds_only_its_own_customs_sees_all(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], store: CredentialStore) -> None:
        acme = _auth(store.issue("declarant", "acme").secret.get_secret_value())
        rival = _auth(store.issue("declarant", "rival").secret.get_secret_value())
        customs = _auth(store.issue("customs", "officer-li").secret.get_secret_value())
        resp = await client.post("/declarations", json=road_form(), headers=acme)
        assert resp.status == 201
        reference = (await resp.json())["reference"]
        assert (await client.get(f"/declarations/{reference}", headers=acme)).status == 200
        record = await (await client.get(f"/declarations/{reference}", headers=customs)).json()
        assert record["declarant"] == "acme"
        other = await client.get(f"/declarations/{reference}", headers=rival)
        assert other.status == 404  # not even its existence is disclosed
        bind = {"vehicle_plate": "浙G01345"}
        assert (
            await client.post(f"/declarations/{reference}/bind", json=bind, headers=rival)
        ).status == 404
        assert (
            await client.post(f"/declarations/{reference}/bind", json=bind, headers=customs)
        ).status == 403
        assert (await client.post("/declarations", json=road_form(), headers=customs)).status == 403
        assert (
            await client.post(f"/declarations/{reference}/bind", json=bind, headers=acme)
        ).status == 200
        approve = f"/declarations/{reference}/approve"
        assert (await client.post(approve, json={}, headers=customs)).status == 200
        assert (await client.get("/transfers?gate=beilun-gate", headers=acme)).status == 403
        inbox = await (await client.get("/transfers?gate=beilun-gate", headers=customs)).json()
        assert [row["transfer"]["reference"] for row in inbox["transfers"]] == [reference]
        store.revoke("acme")  # takes effect on the next request, no restart
        assert (await client.get(f"/declarations/{reference}", headers=acme)).status == 401

    sent = _run(tmp_path, scenario)
    assert [topic for topic, _ in sent] == ["customs/declarations", "customs/transfers/beilun-gate"]


def test_bodies_are_json_only_and_limited(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], store: CredentialStore) -> None:
        acme = _auth(store.issue("declarant", "acme").secret.get_secret_value())
        # What a form on another site's page can send without a CORS preflight:
        for content_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            resp = await client.post(
                "/declarations", data=b'{"a": 1}', headers={**acme, "Content-Type": content_type}
            )
            assert resp.status == 415, content_type
        big = b'{"x": "' + b"a" * MAX_BODY_BYTES + b'"}'
        resp = await client.post(
            "/declarations", data=big, headers={**acme, "Content-Type": "application/json"}
        )
        assert resp.status == 413 and "larger than" in (await resp.json())["error"]

        async def chunks() -> Any:  # no Content-Length: the limit still holds while reading
            for _ in range(40):
                yield b"a" * 4096

        resp = await client.post(
            "/fees", data=chunks(), headers={**acme, "Content-Type": "application/json"}
        )
        assert resp.status == 413

    assert _run(tmp_path, scenario) == []


def test_every_refusal_a_person_reads_is_a_sentence(tmp_path: Path) -> None:
    async def scenario(client: TestClient[Any, Any], store: CredentialStore) -> None:
        token = _auth(store.issue("declarant", "acme").secret.get_secret_value())
        json_type = {"Content-Type": "application/json"}
        answers = [
            await client.post("/declarations", json=road_form()),  # 401
            await client.post("/declarations", data="x=1", headers=token),  # 415
            await client.post("/declarations", data="{bad", headers=token | json_type),  # 400
            await client.post("/declarations", json=[1], headers=token),  # 400
            await client.get("/declarations/CCRN-2611-0000-0000-0", headers=token),  # 404
            await client.get("/declarations?status=foo", headers=token),  # 422
            await client.delete("/declarations/CCRN-2611-0000-0000-0", headers=token),  # 405
            await client.get("/nothing/here", headers=token),  # 404
            await client.post("/declarations", json={}, headers=token),  # 422
        ]
        assert [a.status for a in answers] == [401, 415, 400, 400, 404, 422, 405, 404, 422]
        for answer in answers:
            body = await answer.json()
            said = [body["error"]] if "error" in body else [e["message"] for e in body["errors"]]
            for text in said:
                assert text.endswith("."), text
                assert "'" not in text.split(";")[0] or "Bearer" in text, text  # no Python repr
            if "error" in body:
                assert body["error"][0].isupper(), body["error"]
        assert answers[6].headers["Allow"]

    _run(tmp_path, scenario)
