"""JSON Schemas of the payload models and the AsyncAPI 3 document of the MQTT interface.

Both are generated from :mod:`smartlock.contract.models`, so they cannot drift from the code; a test
fails when the committed ``docs/asyncapi.yaml`` is stale (regenerate with ``make schema``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from smartlock import __version__
from smartlock.contract.models import (
    Alert,
    AlertResolution,
    GateArrival,
    GateVerdict,
    LockEvent,
    LockTelemetry,
    TransitDeclaration,
    TripStatus,
)

#: (channel key, address, message model, direction seen from the pipeline, retained, description)
CHANNELS: list[tuple[str, str, type[BaseModel], str, bool, str]] = [
    (
        "declarations",
        "customs/declarations",
        TransitDeclaration,
        "receive",
        False,
        "Transit declarations, bound to a lock before departure.",
    ),
    (
        "lockTelemetry",
        "locks/{lock_id}/telemetry",
        LockTelemetry,
        "receive",
        False,
        "Position, seal state and battery reported by a smart lock.",
    ),
    (
        "lockEvents",
        "locks/{lock_id}/events",
        LockEvent,
        "receive",
        False,
        "Seal and battery events reported by a smart lock.",
    ),
    (
        "gateArrivals",
        "gates/{gate_id}/arrivals",
        GateArrival,
        "receive",
        False,
        "A truck arriving at a port gate, as read by the gate's camera and readers.",
    ),
    (
        "resolutions",
        "monitoring/resolutions/{operator_id}",
        AlertResolution,
        "receive",
        False,
        "An operator resolving an alert (CONTRACT v2): only operator {operator_id} may publish here, "
        "and the audit trail records that operator; a resolved red alert no longer blocks release.",
    ),
    (
        "gateVerdicts",
        "gates/{gate_id}/verdicts",
        GateVerdict,
        "send",
        False,
        "Release or inspect, with every reason, within one second of an arrival.",
    ),
    (
        "alerts",
        "monitoring/alerts/{declaration_id}",
        Alert,
        "send",
        False,
        "Alerts of CONTRACT section 3; declaration_id UNDECLARED for locks no declaration binds.",
    ),
    (
        "status",
        "monitoring/status/{declaration_id}",
        TripStatus,
        "send",
        True,
        "Trip status, retained; published when state, colour or open alerts change.",
    ),
]

_PARAMS = {
    "lock_id": "Identifier of the smart lock.",
    "gate_id": "Identifier of the port gate (a destination_gate zone id).",
    "declaration_id": "Identifier of the transit declaration.",
    "operator_id": "The operator's identity (its MQTT user name; only it may publish here).",
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """One standalone JSON Schema per payload model, keyed by model name."""
    return {model.__name__: model.model_json_schema() for _, _, model, *_ in CHANNELS}


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the MQTT interface."""
    models = [model for _, _, model, *_ in CHANNELS]
    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas = dict(sorted(top.get("$defs", {}).items()))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for key, address, model, action, retained, description in CHANNELS:
        name = model.__name__
        messages[name] = {
            "name": name,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
        channel: dict[str, Any] = {
            "address": address,
            "description": description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        params = [p for p in _PARAMS if "{" + p + "}" in address]
        if params:
            channel["parameters"] = {p: {"description": _PARAMS[p]} for p in params}
        channels[key] = channel
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{key}"},
            "bindings": {"mqtt": {"qos": 1, "retain": retained}},
        }
        operations[f"{action}{key[0].upper()}{key[1:]}"] = operation
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "smartlock MQTT interface",
            "version": __version__,
            "description": "Customs smart-lock transit monitoring (see CONTRACT.md). "
            "Operations are seen from the pipeline: it receives lock, gate and declaration "
            "messages and sends alerts, statuses and verdicts. Payloads are UTF-8 JSON; "
            "timestamps RFC 3339 UTC.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "localhost:1883", "protocol": "mqtt", "protocolVersion": "5"}
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def asyncapi_yaml() -> str:
    return (
        "# Generated by `smartlock schema` from smartlock/models.py. Do not edit.\n"
        + yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=100)
    )


def write_all(out_dir: Path) -> list[Path]:
    """Writes ``schemas/<Model>.json`` and ``asyncapi.yaml`` under ``out_dir``."""
    written = []
    schema_dir = out_dir / "schemas"
    schema_dir.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        path = schema_dir / f"{name}.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    path = out_dir / "asyncapi.yaml"
    path.write_text(asyncapi_yaml(), encoding="utf-8")
    written.append(path)
    return written
