"""Issue 14 as its author tried it, on real servers (Redis, Mosquitto; the pipeline for
``customs/declarations``): special goods without a permit, with one of the wrong kind and with
the right one; the vague examples, over HTTP and on MQTT; a late declaration and ``POST /fees``
at every boundary of the late-charge schedule; an undeclared container at an unknown gate, read
with a bad check digit: all three reasons, and the detain/fine flag in the audit trail."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from smartlock.adapters.credentials import CredentialStore
from smartlock.services.intake.rules import Accepted, validate_submission
from tests.integration.procs import Pipeline
from tests.integration.test_gate_loop import audit, smartlock
from tests.integration.test_gate_loop import pipeline as pipeline  # noqa: F401  (fixture)
from tests.integration.test_intake_service import NOW, Clock, _run, _settings
from tests.integration.test_pipeline_live import publish
from tests.servers import Endpoint
from tests.unit.test_intake_rules import road_form

pytestmark = pytest.mark.integration

SCARVES = road_form()["cargo"][0]
VAGUE = ["goods for sale", "FAK freight all kinds", "plastic toys and related items"]
# The issue's three examples, one per class: (description, the permit kind it needs).
SPECIAL = [
    ("carved elephant ivory figurines, 10 cm", "cites"),
    ("amoxicillin capsules 500 mg, blister packs", "medicine"),
    ("lithium-ion batteries UN3480, 18650 cells, 3.7 V", "dangerous_goods"),
]
#: Days late -> times the fee is charged on top (every started 14 days, at most 10).
SCHEDULE = [(0, 0), (1, 1), (14, 1), (15, 2), (28, 2), (29, 3), (126, 9), (127, 10), (140, 10),
            (141, 10), (1000, 10)]  # fmt: skip
TITLES = {"cites": "endangered species (CITES)", "medicine": "medicines",
          "dangerous_goods": "dangerous goods"}  # fmt: skip
DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)
#: A declaration submitted this long after its deadline -> times the fee is charged on top.
LATE_BY = [(timedelta(0), 0), (MINUTE, 1), (DAY, 1), (14 * DAY, 1), (14 * DAY + MINUTE, 2),
           (15 * DAY, 2), (28 * DAY, 2), (28 * DAY + MINUTE, 3), (29 * DAY, 3),
           (126 * DAY + MINUTE, 10), (140 * DAY, 10), (1000 * DAY, 10)]  # fmt: skip
DEADLINE = datetime(2026, 11, 23, 11, 5, tzinfo=UTC)  # road_form: arrival 19:35 +08:00, less 30 min


def _line(description: str, permits: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return dict(SCARVES, description=description) | ({"permits": permits} if permits else {})


def _intake(
    mqtt_server: Endpoint, redis_server: Endpoint, unique: str, store: CredentialStore, clock: Clock
) -> Any:
    token = store.issue("declarant", f"decl-{unique}").secret.get_secret_value()
    settings = _settings(mqtt_server, redis_server, f"test-{unique}", store)
    return lambda scenario: asyncio.run(_run(settings, clock, scenario, token))


def test_special_goods_need_a_permit_of_their_own_kind_and_vague_cargo_is_refused_over_http(
    mqtt_server: Endpoint, redis_server: Endpoint, unique: str, credentials: CredentialStore
) -> None:
    run = _intake(mqtt_server, redis_server, unique, credentials, Clock(NOW))
    kinds = [kind for _, kind in SPECIAL]

    async def scenario(client: TestClient) -> None:
        for n, (description, kind) in enumerate(SPECIAL):
            wrong = kinds[(n + 1) % len(kinds)]
            for permits, status in (
                (None, 422),
                ([{"kind": wrong, "reference": "PERMIT-2026-0001"}], 422),
                ([{"kind": kind, "reference": "PERMIT-2026-0002"}], 201),
            ):
                form = road_form(lock_id=f"LK-{unique}-{n}-{status}-{permits is None}")
                form["cargo"] = [_line(description, permits)]
                resp = await client.post("/declarations", json=form)
                body = await resp.json()
                assert resp.status == status, body
                if status == 201:
                    assert body["status"] == "accepted"
                    continue
                [error] = body["errors"]
                assert error["field"] == "cargo[0].permits"
                assert error["message"].startswith(f'cargo[0].permits: "{description}" names ')
                assert (
                    f'falls under {TITLES[kind]} and needs a permit of kind "{kind}"'
                    in (error["message"])
                )
                assert f'Add {{"kind": "{kind}", "reference": ' in error["message"]
                if permits is not None:
                    assert f'the permit given is of kind "{wrong}"' in error["message"]
        for description in VAGUE:
            form = road_form(lock_id=f"LK-{unique}-vague")
            form["cargo"] = [_line(description)]
            resp = await client.post("/declarations", json=form)
            assert resp.status == 422
            [error] = (await resp.json())["errors"]
            assert error["field"] == "cargo[0].description"
            assert error["message"].startswith(
                f'cargo[0].description: "{description}" is too vague'
            )
            assert error["message"].endswith(".")

    run(scenario)


def test_a_late_declaration_is_accepted_with_its_late_charge_at_every_boundary(
    mqtt_server: Endpoint, redis_server: Endpoint, unique: str, credentials: CredentialStore
) -> None:
    clock = Clock(NOW)
    run = _intake(mqtt_server, redis_server, unique, credentials, clock)

    async def scenario(client: TestClient) -> None:
        for n, (late_by, times) in enumerate(LATE_BY):
            clock.now = DEADLINE + late_by
            resp = await client.post("/declarations", json=road_form(lock_id=f"LK-{unique}-{n}"))
            body = await resp.json()
            assert resp.status == 201, body  # a late declaration is no longer refused
            fee = body["fee"]
            assert (fee["late_charge"], fee["total"]) == (
                f"{0.5 * times:.2f}",
                f"{0.5 * (1 + times):.2f}",
            ), late_by
            if times:
                assert fee["late"]["multiplier"] == times
                assert fee["late"]["message"].endswith(f"a late charge of HK${0.5 * times:.2f}.")
            else:
                assert "late" not in fee
        for days, times in SCHEDULE:
            priced = await client.post("/fees", json={"cargo": [SCARVES], "days_late": days})
            assert priced.status == 200
            assert (await priced.json())["late_charge"] == f"{0.5 * times:.2f}", days

    run(scenario)


def test_vague_cargo_published_on_customs_declarations_is_dead_lettered(
    pipeline: Pipeline,  # noqa: F811
    unique: str,
) -> None:
    p = pipeline
    assert p.mqtt is not None
    payloads = []
    for n, description in enumerate(VAGUE):
        form = road_form(declaration_id=f"DCL-{unique}-{n}", lock_id=f"LK-{unique}-{n}")
        accepted = validate_submission(form, NOW)
        assert isinstance(accepted, Accepted)
        payload = accepted.declaration.to_payload()
        payload["cargo"][0]["description"] = description
        payloads.append(("customs/declarations", payload))
    publish(p.mqtt, payloads, role="intake")  # the identity that may publish there
    deadline = time.monotonic() + 30
    while True:
        refused = {
            json.loads(d["original_text"])["declaration_id"]: d
            for d in p.dead_letters_in_redis()
            if d["reason"] == "declaration_rules"
        }
        if len(refused) == len(VAGUE) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for n, description in enumerate(VAGUE):
        letter = refused[f"DCL-{unique}-{n}"]
        assert letter["topic"] == "customs/declarations"
        assert f'"{description}" is too vague' in letter["detail"]


def test_an_undeclared_container_at_an_unknown_gate_is_detained_with_all_three_reasons(
    pipeline: Pipeline,  # noqa: F811
    tmp_path: Path,
    unique: str,
) -> None:
    p = pipeline
    assert p.mqtt is not None
    p.mqtt.login("gate", "nowhere-gate")  # a gate identity whose id is no destination gate
    lock = f"LK-{unique}-x"
    shown = smartlock(
        p, "gate", "nowhere-gate", "--plate", "浙B99999", "--lock", lock,
        "--container", "CSQU3054384", "--timeout", "10", "--queue-dir", str(tmp_path / "q"),
    )  # fmt: skip
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert shown.stdout.splitlines()[1:5] == [
        "  • Gate nowhere-gate is not a known destination gate.",
        f"  • No open declaration binds lock {lock}.",
        "  • Container number CSQU3054384 read at the gate has check digit 4, expected 3.",
        f"  The container under lock {lock} arrived at nowhere-gate with no open declaration: "
        "detain the goods; the consignor faces a fine of up to HK$50,000.",
    ]
    [entry] = [e for e in audit(p, "undeclared") if e["lock_id"] == lock]
    assert entry["verdict"] == "inspect" and len(entry["reasons"]) == 3
    assert entry["penalty"]["kind"] == "undeclared_consignment"
    assert (entry["penalty"]["action"], entry["penalty"]["max_fine_hkd"]) == ("detain", "50000.00")
