"""The alert desk's actions: acknowledge and resolve, shared by every operator.

Acknowledgements live in Redis (``<p>:console:acks``), so every desk and the wall screen see
who took an alert and when. A resolution is the operator's authenticated resolution of
CONTRACT v2: it is published on MQTT like ``smartlock resolve`` does, the worker applies it
(the red alert stops blocking release, the audit trail keeps who, when and why) and the
trip's record then shows it resolved; until then the desk shows it ``resolving``. Each action
is also appended to the desk stream (``<p>:console:desk``) that the live feed tails.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from smartlock.adapters.keys import RedisKeys
from smartlock.services.console.auth import Principal
from smartlock.services.console.model import LiveModel

#: The longest note an operator may leave on a resolution.
MAX_NOTE = 500

#: Publishes a resolution: (alert_id, declaration_id, lock_id, operator, note) -> payload.
ResolutionPublisher = Callable[[str, str, str, str, str], dict[str, Any]]


class DeskError(Exception):
    """An action the desk refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def check_action(
    model: LiveModel, who: Principal, alert_id: str, action: str, note: str = ""
) -> dict[str, Any]:
    """The alert an action applies to, or a DeskError saying why it may not (pure).

    Raises:
        DeskError: 403 for observers, 404 for an unknown alert, 409 when the alert's state
            does not allow it, 422 for a missing or too long note.
    """
    if not who.may_act:
        raise DeskError(403, f"{who.name} is an observer: observers cannot {action} alerts")
    if alert_id not in model.alerts:
        raise DeskError(404, f"no alert {alert_id}")
    row = model.alert_row(alert_id)
    if action == "resolve":
        if not note.strip():
            raise DeskError(422, "a note is required: say what was checked")
        if len(note) > MAX_NOTE:
            raise DeskError(422, f"the note is longer than {MAX_NOTE} characters")
        if row["declaration_id"] == "UNDECLARED":
            raise DeskError(
                409, "an undeclared lock has no trip to resolve; acknowledge it instead"
            )
        if row["status"] not in ("open", "acknowledged"):
            raise DeskError(409, f"alert {alert_id} is {row['status']}")
    elif action == "ack":
        if row["status"] != "open":
            raise DeskError(409, f"alert {alert_id} is {row['status']}, not open")
    else:
        raise DeskError(400, f"unknown action {action}")
    return row


class Desk:
    """Performs desk actions against Redis and the pipeline."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: RedisKeys,
        model: LiveModel,
        publish_resolution: ResolutionPublisher,
    ) -> None:
        self.client = client
        self.keys = keys
        self.model = model
        self.publish_resolution = publish_resolution

    async def acknowledge(self, who: Principal, alert_id: str) -> dict[str, Any]:
        check_action(self.model, who, alert_id, "ack")
        entry = {"alert_id": alert_id, "action": "ack", "by": who.name, "at": now_text()}
        # HSETNX: of two operators acknowledging at once, the first one keeps it.
        if not await self.client.hsetnx(
            self.keys.acks, alert_id, json.dumps({"by": who.name, "at": entry["at"]})
        ):
            raise DeskError(409, f"alert {alert_id} was acknowledged by someone else meanwhile")
        await self.client.xadd(
            self.keys.desk,
            {"json": json.dumps(entry, ensure_ascii=False)},
            maxlen=100_000,
            approximate=True,
        )
        return entry

    async def resolve(self, who: Principal, alert_id: str, note: str) -> dict[str, Any]:
        row = check_action(self.model, who, alert_id, "resolve", note)
        note = note.strip()
        await asyncio.to_thread(
            self.publish_resolution, alert_id, row["declaration_id"], row["lock_id"], who.name, note
        )
        entry = {
            "alert_id": alert_id,
            "action": "resolve",
            "by": who.name,
            "at": now_text(),
            "note": note,
        }
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.pending,
                alert_id,
                json.dumps({k: entry[k] for k in ("by", "at", "note")}, ensure_ascii=False),
            )
            pipe.xadd(
                self.keys.desk,
                {"json": json.dumps(entry, ensure_ascii=False)},
                maxlen=100_000,
                approximate=True,
            )
            await pipe.execute()
        return entry
