"""An operator's resolution of an alert, published as that operator on
``monitoring/resolutions/{operator_id}`` (CONTRACT v2)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from smartlock.adapters.mqtt import client_for
from smartlock.contract.models import AlertResolution, format_ts, resolution_topic
from smartlock.settings import Settings


def publish_resolution(
    settings: Settings,
    alert_id: str,
    declaration_id: str,
    lock_id: str,
    operator: str,
    note: str,
    ts: str | None = None,
) -> dict[str, Any]:
    """Validates and publishes an AlertResolution (QoS 1, waits for the broker's ack); returns it.

    The client logs in as ``operator`` (an identity of the credentials store), the only
    identity that may publish on ``monitoring/resolutions/{operator}``.

    Raises:
        ValueError: the resolution is not valid (pydantic's message names the field).
        CredentialError: ``operator`` has no credentials.
        InfrastructureError: the broker is unreachable, refuses, or does not acknowledge.
    """
    resolution = AlertResolution.model_validate(
        {
            "alert_id": alert_id,
            "declaration_id": declaration_id,
            "lock_id": lock_id,
            "note": note,
            "ts": ts or format_ts(datetime.now(UTC).replace(microsecond=0)),
        }
    ).to_payload()
    client = client_for(settings, operator, "resolve")
    client.connect()
    try:
        payload = json.dumps(resolution, ensure_ascii=False).encode()
        asyncio.run(client.publish_all([(resolution_topic(operator), payload, False)]))
    finally:
        client.disconnect()
    return resolution
