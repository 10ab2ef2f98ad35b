"""The intake refuses hostile bodies with 400/422, never 500 (CONTRACT section 7, issue 11)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from smartlock.adapters.credentials import CredentialStore
from tests.unit.test_intake_auth import _auth, _run
from tests.unit.test_intake_rules import road_form


def _with_value(value: Any) -> str:
    form = road_form()
    form["cargo"][0]["value"] = "@@"
    return json.dumps(form).replace('"@@"', value)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("[" * 20_000 + "]" * 20_000, 400),  # nested far past the depth limit, under 64 KiB
        ('{"a":' * 40 + "1" + "}" * 40, 400),
        (json.dumps(road_form())[:-1] + ', "consignor": {}}', 400),  # repeated key
        (_with_value("1" * 4000), 400),  # an integer longer than any amount
        (_with_value("NaN"), 400),
        (_with_value("1e28"), 422),
        (_with_value('"1e28"'), 422),
        (_with_value("1e400"), 422),  # parses to infinity: not a number
        (_with_value("true"), 422),
    ],
)
def test_hostile_bodies_get_a_client_error(tmp_path: Path, body: str, status: int) -> None:
    async def scenario(client: TestClient[Any, Any], store: CredentialStore) -> None:
        acme = _auth(store.issue("declarant", "acme").secret.get_secret_value())
        headers = {**acme, "Content-Type": "application/json"}
        resp = await client.post("/declarations", data=body.encode(), headers=headers)
        assert resp.status == status, await resp.text()
        assert await resp.json()  # a JSON explanation, not a bare error page

    assert _run(tmp_path, scenario) == []  # nothing published
