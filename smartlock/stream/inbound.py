"""The inbound Kafka record: what the bridge writes and the worker reads, in one place.

Record format (topic ``smartlock.inbound``), key = lock id (UTF-8):

* a message: ``{"topic": <mqtt topic>, "payload": <json object as received>, "clock": c,
  "bridge": <name>, "received_at": <epoch s>}``. ``clock`` is the bridge's clock before
  this message (CONTRACT section 3): the largest event time of the accepted lock and gate
  messages it received before it, in receive (publish) order; null before any.
* a refused gate arrival (keyed by the gate id): ``{"topic": ..., "refused": {...},
  "clock", "bridge", "received_at"}``, so the worker answers it with ``inspect``.
* a watermark tick, written to every partition: ``{"tick": c, "bridge": <name>, "at":
  <epoch s>}``: the bridge's clock after everything it wrote before the tick. A bridge
  that stops cleanly writes ``"closing": true``.

:class:`Forwarder` is the pure half of the bridge: MQTT message in, records or a dead letter
out, the clock kept. Only messages that pass every stateless check (limits, schema, topic,
``future_ts``, signature) move the clock; anything refused never does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from smartlock.contract.codec import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    DeadLetter,
    decode,
    refused_arrival,
    signature_refusal,
)
from smartlock.core.detector import Detector
from smartlock.errors import MessageError

#: Largest inbound Kafka record the worker reads: a payload at the limit plus the envelope.
MAX_RECORD_BYTES = MAX_PAYLOAD_BYTES + 16 * 1024
#: Deepest inbound record: the payload's limit plus the envelope's own levels.
MAX_RECORD_DEPTH = MAX_DEPTH + 2


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Forwarded:
    """What one MQTT message became: inbound records (key, value) and/or a dead letter."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead: DeadLetter | None = None


class Forwarder:
    """Turns MQTT messages, in the order received, into inbound records; keeps the clock.

    Args:
        name: the name stamped on every record and tick: the bridge's inbound session (the
            same for whichever bridge holds it, so the clock goes on across a takeover).
        keys: lock id -> signing key (empty: signing off), checked before time counts.
    """

    def __init__(self, name: str, keys: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.keys = dict(keys or {})
        self.clock: float | None = None

    def forward(self, topic: str, payload: bytes, received_at: datetime) -> Forwarded:
        """One message: never raises; whatever goes wrong becomes a dead letter."""
        try:
            return self._forward(topic, payload, received_at)
        except Exception as exc:  # noqa: BLE001 - one message must never stop the bridge
            detail = f"{type(exc).__name__}: {exc}"
            return Forwarded(
                dead=DeadLetter(topic, payload, "internal_error", detail, received_at, "bridge")
            )

    def _forward(self, topic: str, payload: bytes, received_at: datetime) -> Forwarded:
        stamp = {"clock": self.clock, "bridge": self.name, "received_at": received_at.timestamp()}
        try:
            env = decode(topic, payload, received_at)
            refused = signature_refusal(env, self.keys)
            if refused is not None:
                raise MessageError(topic, *refused)
        except MessageError as exc:
            dead = DeadLetter(topic, payload, exc.reason, exc.detail, received_at, "bridge")
            arrival = refused_arrival(topic, payload, exc)
            if arrival is None:
                return Forwarded(dead=dead)
            value = _dumps({"topic": topic, "refused": arrival.to_record(), **stamp})
            return Forwarded([(arrival.gate_id.encode(), value)], dead)
        value = _dumps({"topic": env.topic, "payload": env.raw, **stamp})
        ts = Detector.event_time(env)
        if ts is not None and (self.clock is None or ts > self.clock):
            self.clock = ts
        return Forwarded([(lock_id.encode(), value) for lock_id in Detector.route(env)])

    def tick(self, at: datetime, closing: bool = False) -> bytes | None:
        """The value of a watermark tick (None while the clock has not started)."""
        if self.clock is None and not closing:
            return None
        body: dict[str, Any] = {"tick": self.clock, "bridge": self.name, "at": at.timestamp()}
        if closing:
            body["closing"] = True
        return _dumps(body)
