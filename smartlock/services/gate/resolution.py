"""An operator's resolution of an alert, published on ``monitoring/resolutions``."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from smartlock.adapters.mqtt import MqttClient
from smartlock.contract.models import AlertResolution, format_ts
from smartlock.contract.topics import RESOLUTIONS
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

    Raises:
        ValueError: the resolution is not valid (pydantic's message names the field).
        InfrastructureError: the broker is unreachable or does not acknowledge.
    """
    resolution = AlertResolution.model_validate(
        {
            "alert_id": alert_id,
            "declaration_id": declaration_id,
            "lock_id": lock_id,
            "operator": operator,
            "note": note,
            "ts": ts or format_ts(datetime.now(UTC).replace(microsecond=0)),
        }
    ).to_payload()
    client = MqttClient(
        settings.mqtt.host, settings.mqtt.port, f"{settings.mqtt.client_id_prefix}-resolve"
    )
    client.connect()
    try:
        payload = json.dumps(resolution, ensure_ascii=False).encode()
        asyncio.run(client.publish_all([(RESOLUTIONS.topic(), payload, False)]))
    finally:
        client.disconnect()
    return resolution
