"""Raw bytes to models, canonical JSON, signing and dead letters.

:func:`decode` is the one place where an inbound message (topic and raw bytes, or an
already parsed JSON payload from a trace) becomes a model. Every failure raises
:class:`~smartlock.errors.MessageError` with a short machine-readable reason, which the
transport turns into a :class:`DeadLetter`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from smartlock.contract.models import Inbound, format_ts, model_for_topic
from smartlock.errors import MessageError

#: Largest payload accepted, in bytes. Real lock messages are a few hundred bytes.
MAX_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Envelope:
    """A validated inbound message: its topic, the model, and the payload as received.

    ``raw`` keeps the parsed JSON object exactly as sent, because the signature covers the
    sender's fields, not our normalised model.
    """

    topic: str
    message: Inbound
    raw: dict[str, Any]


def canonical_json(payload: dict[str, Any]) -> bytes:
    """Canonical JSON of CONTRACT section 6: keys sorted, no spaces, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def sign(payload: dict[str, Any], key: str) -> str:
    """Returns the hex HMAC-SHA256 of the canonical JSON of ``payload`` without ``sig``."""
    body = {k: v for k, v in payload.items() if k != "sig"}
    return hmac.new(key.encode("utf-8"), canonical_json(body), hashlib.sha256).hexdigest()


def signature_valid(payload: dict[str, Any], key: str) -> bool:
    """True if ``payload['sig']`` is the right signature under ``key`` (constant-time compare)."""
    sig = payload.get("sig")
    if not isinstance(sig, str):
        return False
    return hmac.compare_digest(sig, sign(payload, key))


def decode(topic: str, data: bytes | str | dict[str, Any]) -> Envelope:
    """Turns an inbound MQTT message into an :class:`Envelope`.

    Args:
        topic: the MQTT topic the message was published on.
        data: the raw payload bytes (or text), or an already parsed JSON object.

    Raises:
        MessageError: with reason ``unknown_topic``, ``too_large``, ``invalid_json``,
            ``not_an_object``, ``invalid_payload`` or ``topic_mismatch``.
    """
    try:
        model, field, topic_value = model_for_topic(topic)
    except KeyError:
        raise MessageError(topic, "unknown_topic", f"{topic!r} is not an inbound topic") from None
    if isinstance(data, dict):
        raw = data
    else:
        if len(data) > MAX_PAYLOAD_BYTES:
            raise MessageError(
                topic, "too_large", f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}"
            )
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MessageError(topic, "invalid_json", f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MessageError(topic, "not_an_object", "payload must be a JSON object")
    try:
        message = model.model_validate(raw)
    except ValidationError as exc:
        raise MessageError(topic, "invalid_payload", _describe(exc)) from None
    if field is not None and getattr(message, field) is None:  # e.g. the operator of a resolution
        message = message.model_copy(update={field: topic_value})
    if field is not None and getattr(message, field) != topic_value:
        raise MessageError(
            topic,
            "topic_mismatch",
            f"topic names {field} {topic_value!r} but the payload says {getattr(message, field)!r}",
        )
    return Envelope(topic=topic, message=message, raw=raw)  # type: ignore[arg-type]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True)
class DeadLetter:
    """A message that was not accepted, kept with everything needed to look at it again.

    Attributes:
        topic: the MQTT topic it came on.
        original: the original bytes, exactly as received.
        reason: short machine-readable reason.
        detail: explanation for a person.
        received_at: wall-clock time of receipt (the one place wall time is recorded).
        source: where it was rejected (``bridge``, ``worker``, ``evaluate``...).
    """

    topic: str
    original: bytes
    reason: str
    detail: str
    received_at: datetime
    source: str

    def to_record(self) -> dict[str, Any]:
        """JSON-ready record; ``original`` as UTF-8 text when it is, and always as base64."""
        try:
            text: str | None = self.original.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "topic": self.topic,
            "reason": self.reason,
            "detail": self.detail,
            "received_at": format_ts(self.received_at),
            "source": self.source,
            "original_text": text,
            "original_b64": base64.b64encode(self.original).decode("ascii"),
        }
