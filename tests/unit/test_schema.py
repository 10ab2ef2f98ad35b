"""The committed AsyncAPI document and JSON Schemas match the models."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from smartlock.contract.schema import asyncapi, asyncapi_yaml, json_schemas

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_committed_asyncapi_document_is_current() -> None:
    committed = (DOCS / "asyncapi.yaml").read_text(encoding="utf-8")
    assert committed == asyncapi_yaml(), (
        "docs/asyncapi.yaml is stale: run `make schema` and commit it"
    )


def test_committed_json_schemas_are_current() -> None:
    for name, schema in json_schemas().items():
        committed = json.loads((DOCS / "schemas" / f"{name}.json").read_text(encoding="utf-8"))
        assert committed == schema, f"docs/schemas/{name}.json is stale: run `make schema`"


def test_asyncapi_document_is_well_formed() -> None:
    doc = yaml.safe_load(asyncapi_yaml())
    assert doc["asyncapi"] == "3.0.0"
    for key, op in doc["operations"].items():
        channel = op["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in doc["channels"], key
    for channel in doc["channels"].values():
        for msg in channel["messages"].values():
            name = msg["$ref"].removeprefix("#/components/messages/")
            ref = doc["components"]["messages"][name]["payload"]["$ref"]
            assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]
    addresses = {c["address"] for c in doc["channels"].values()}
    assert {
        "customs/declarations",
        "locks/{lock_id}/telemetry",
        "locks/{lock_id}/events",
        "gates/{gate_id}/arrivals",
        "gates/{gate_id}/verdicts",
        "monitoring/alerts/{declaration_id}",
        "monitoring/status/{declaration_id}",
    } <= addresses


def test_schema_accepts_a_contract_example_and_refuses_a_bad_one() -> None:
    schema = json_schemas()["LockTelemetry"]
    good = {
        "lock_id": "L1",
        "seq": 3,
        "ts": "2026-11-22T08:15:00Z",
        "lat": 29.3,
        "lon": 120.1,
        "seal": "sealed",
    }
    jsonschema.validate(good, schema)
    bad = dict(good, seal="open")
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("schema accepted seal 'open'")
    assert asyncapi()["channels"]["status"]["address"] == "monitoring/status/{declaration_id}"
