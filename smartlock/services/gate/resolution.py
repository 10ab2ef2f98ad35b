"""An operator's resolution of an alert, published as that operator on
``monitoring/resolutions/{operator_id}`` (CONTRACT v2)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.mqtt import client_for
from smartlock.adapters.redis_auth import redis_client
from smartlock.contract.models import AlertResolution, format_ts
from smartlock.contract.topics import resolution_topic
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


@dataclass(frozen=True)
class Confirmation:
    """What the pipeline did with a resolution.

    Attributes:
        accepted: True (the alert is no longer open), False (dead-lettered), None (no answer
            in time: the resolution waits on the broker until the pipeline processes it).
        detail: the pipeline's reason when it refused, else a short note.
    """

    accepted: bool | None
    detail: str


def confirm_resolution(
    settings: Settings, resolution: dict[str, Any], operator: str, timeout: float = 10.0
) -> Confirmation:
    """Watches the pipeline's Redis state until it took or refused ``resolution``.

    Accepted: the trip of ``lock_id`` (declaration ``declaration_id``) no longer lists the
    alert as open. Refused: a dead letter of this resolution on the operator's topic (e.g.
    ``unknown_alert``, ``duplicate``, ``topic_mismatch``), with the pipeline's reason.
    """
    import redis

    topic = resolution_topic(operator)
    keys = RedisKeys(settings.redis.prefix)
    client = redis_client(settings, "reader", socket_timeout=2)
    deadline = time.monotonic() + timeout
    last_id = "-"
    try:
        while True:
            trip = client.hgetall(keys.trip(resolution["lock_id"]))
            if trip.get("declaration_id") == resolution["declaration_id"] and resolution[
                "alert_id"
            ] not in json.loads(trip.get("open_alerts") or "[]"):
                return Confirmation(True, "the alert is closed; the audit trail records it")
            for entry_id, fields in client.xrange(keys.deadletters, min=last_id, count=1000):
                last_id = f"({entry_id}"
                record = json.loads(fields.get("json", "{}"))
                if record.get("topic") == topic and resolution["alert_id"] in str(
                    record.get("original_text")
                ):
                    return Confirmation(False, f"{record.get('reason')}: {record.get('detail')}")
            if time.monotonic() >= deadline:
                return Confirmation(None, f"no answer from the pipeline within {timeout:g} s")
            time.sleep(0.2)
    except redis.RedisError as exc:
        return Confirmation(None, f"cannot read the pipeline's state in Redis ({exc})")
    finally:
        client.close()
