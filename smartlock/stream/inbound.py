"""The inbound Kafka record: what the bridge writes and the worker reads, in one place.

Record format (topic ``smartlock.inbound``):

* a message, keyed by lock id (UTF-8): the value is the MQTT payload **exactly as received**
  (the bridge decodes it to check it, but forwards the bytes, so the worker decodes each
  message once); what the worker needs beside it travels in headers:
  ``topic`` (the MQTT topic), ``clock`` (the bridge's clock before this message, CONTRACT
  section 3: the largest event time of the accepted lock and gate messages it received
  before it, in receive (publish) order; empty before any), ``bridge`` (the name of its
  inbound session, the same for whichever bridge holds it) and
  ``received_at`` (epoch seconds). Numbers are written with ``repr``, so they read back equal.
* a refused gate arrival, keyed by the gate id: the value is the JSON of the
  :class:`~smartlock.contract.codec.RefusedArrival`, the same headers plus ``kind: refused``,
  so the worker answers it with ``inspect``.
* a watermark tick, written to every partition, no key, only the ``mac`` header: the value is
  ``{"tick": c, "bridge": <name>, "at": <epoch s>}``, the bridge's clock after everything it
  wrote before the tick. A bridge that stops cleanly writes ``"closing": true``.

Every record carries a ``mac`` header: HMAC-SHA256, under the stream key of the credentials
store (shared by the bridge and the worker service accounts), of :func:`canonical` (the
record's key, value and other headers, each length-prefixed, so no two records encode
alike). The worker checks it before anything else (:func:`verify`): a record with a missing
or wrong MAC is dead-lettered (``unauthenticated_record``) and never moves a clock or a trip,
so whoever can write to the topic without the key (the local broker has no authentication)
cannot fire a timer or change a trip. Records without headers of an earlier bridge (a JSON
envelope) carry no MAC and are refused the same way.

:class:`Forwarder` is the pure half of the bridge: MQTT message in, records or a dead letter
out, the clock kept. Only messages that pass every stateless check (limits, schema, topic,
``future_ts``, signature) move the clock; anything refused never does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
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


#: Header names of an inbound record (see the module docstring).
TOPIC, CLOCK, BRIDGE, RECEIVED_AT, KIND = "topic", "clock", "bridge", "received_at", "kind"
#: The ``kind`` header of a refused gate arrival.
REFUSED = b"refused"
#: Header of the record's HMAC-SHA256 (32 bytes).
MAC = "mac"
#: Starts what is authenticated: names the format, so a MAC cannot be reused in another one.
MAC_DOMAIN = b"smartlock.inbound.v1"
#: Dead-letter reason of a record whose MAC is missing or wrong.
UNAUTHENTICATED = "unauthenticated_record"

Headers = tuple[tuple[str, bytes], ...]

_LEN = struct.Struct(">I").pack  # a length prefix


def canonical(
    key: bytes | None, value: bytes, headers: Iterable[tuple[str, bytes | None]]
) -> bytes:
    """What the MAC covers: the domain, the key (absent is not empty), the value and every
    header but ``mac`` in record order (Kafka keeps it), each length-prefixed, so no two
    records encode alike. A missing header value counts as empty (both read as "no value"
    everywhere).
    """
    parts = [MAC_DOMAIN, b"\x00" if key is None else b"\x01" + _LEN(len(key)) + key]
    parts += (_LEN(len(value)), value)
    for name, data in headers:
        if name != MAC:
            n, d = name.encode(), data or b""
            parts += (_LEN(len(n)), n, _LEN(len(d)), d)
    return b"".join(parts)


def sign(stream_key: bytes, key: bytes | None, value: bytes, headers: Headers = ()) -> Headers:
    """``headers`` with the ``mac`` header of the record added."""
    mac = hmac.digest(stream_key, canonical(key, value, headers), hashlib.sha256)
    return (*headers, (MAC, mac))


def verify(
    stream_keys: Sequence[bytes],
    key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes | None]],
) -> str | None:
    """None if the record's MAC is right under one of ``stream_keys``, else why not."""
    macs = [v for n, v in headers if n == MAC]
    if not macs:
        return "no mac header: not written by the bridge"
    if len(macs) > 1 or not macs[0]:
        return "malformed mac header"
    data = canonical(key, value, headers)
    for stream_key in stream_keys:
        if hmac.compare_digest(hmac.digest(stream_key, data, hashlib.sha256), macs[0]):
            return None
    return "wrong mac: not written with the stream key"


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def number_header(value: float | None) -> bytes:
    """A number as a header value (``repr``: reads back equal); empty for None."""
    return b"" if value is None else repr(float(value)).encode()


def read_number(value: bytes | None) -> float | None:
    """A header value written by :func:`number_header` (None when empty or missing).

    Raises:
        ValueError: the value is not a number.
    """
    return float(value) if value else None


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """One record for the inbound topic (``key`` None: a tick, sent to a chosen partition)."""

    key: bytes | None
    value: bytes
    headers: Headers = ()

    def send_args(self) -> dict[str, Any]:
        """Keyword arguments of ``AIOKafkaProducer.send`` for this record."""
        return {"key": self.key, "value": self.value, "headers": list(self.headers) or None}


@dataclass
class Forwarded:
    """What one MQTT message became: inbound records and/or a dead letter."""

    records: list[InboundRecord] = field(default_factory=list)
    dead: DeadLetter | None = None


class Forwarder:
    """Turns MQTT messages, in the order received, into inbound records; keeps the clock.

    Args:
        name: the name stamped on every record and tick: the bridge's inbound session (the
            same for whichever bridge holds it, so the clock goes on across a takeover).
        keys: lock id -> signing key (empty: signing off), checked before time counts.
        stream_key: the key every record is authenticated with (the ``mac`` header); the
            bridge sets :attr:`stream_key` again when the credentials store rotates it.
    """

    def __init__(
        self, name: str, keys: Mapping[str, str] | None = None, *, stream_key: bytes
    ) -> None:
        self.name = name
        self.keys = dict(keys or {})
        self.stream_key = stream_key
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
        headers: Headers = (
            (TOPIC, topic.encode()),
            (CLOCK, number_header(self.clock)),
            (BRIDGE, self.name.encode()),
            (RECEIVED_AT, number_header(received_at.timestamp())),
        )
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
            value, key = _dumps(arrival.to_record()), arrival.gate_id.encode()
            signed = sign(self.stream_key, key, value, (*headers, (KIND, REFUSED)))
            return Forwarded([InboundRecord(key, value, signed)], dead)
        ts = Detector.event_time(env)
        if ts is not None and (self.clock is None or ts > self.clock):
            self.clock = ts
        # The bytes as received: the worker decodes them once (one record per bound lock).
        records = []
        for lock_id in Detector.route(env):
            key = lock_id.encode()
            records.append(
                InboundRecord(key, payload, sign(self.stream_key, key, payload, headers))
            )
        return Forwarded(records)

    def tick(self, at: datetime, closing: bool = False) -> InboundRecord | None:
        """A watermark tick, for every partition (None while the clock has not started)."""
        if self.clock is None and not closing:
            return None
        body: dict[str, Any] = {"tick": self.clock, "bridge": self.name, "at": at.timestamp()}
        if closing:
            body["closing"] = True
        value = _dumps(body)
        return InboundRecord(None, value, sign(self.stream_key, None, value))
