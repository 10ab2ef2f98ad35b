"""Raw bytes to models, canonical JSON, signing and dead letters.

:func:`decode` is the one place where an inbound message (topic and raw bytes, or an
already parsed JSON payload from a trace) becomes a model. Every failure raises
:class:`~smartlock.errors.MessageError` with a short machine-readable reason, which the
transport turns into a :class:`DeadLetter`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from smartlock.contract.models import (
    MAX_SEQ,
    Inbound,
    LockEvent,
    LockEventType,
    LockTelemetry,
    SealState,
)
from smartlock.contract.timestamps import format_ts, parse_utc, parse_utc_cached
from smartlock.contract.topics import GATE_ARRIVALS, LOCK_EVENTS, LOCK_TELEMETRY, inbound_channel
from smartlock.errors import MessageError

#: Largest payload accepted, in bytes (CONTRACT section 7). Real lock messages are a few hundred bytes.
MAX_PAYLOAD_BYTES = 64 * 1024
#: Deepest nesting of arrays and objects accepted (CONTRACT section 7).
MAX_DEPTH = 32
#: How far a ``ts`` may lie ahead of the receiving clock before it is refused as ``future_ts``.
FUTURE_TS = timedelta(minutes=5)
#: Longest integer literal accepted (2**53 has 16 digits); longer ones are refused before
#: Python turns them into arbitrarily large ints.
MAX_INT_DIGITS = 40

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def _text_depth(text: str, limit: int) -> int:
    """Deepest bracket nesting of JSON text (up to just past ``limit``), by a linear scan."""
    if text.count("[") + text.count("{") <= limit:
        return 0  # cannot be deeper than the limit: the common case, checked cheaply
    depth = peak = 0
    for match in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            peak = max(peak, depth)
            if peak > limit:
                break
        else:
            depth -= 1
    return peak


def value_depth(value: Any) -> int:
    """Deepest nesting of an already parsed JSON value, iteratively (no recursion)."""
    peak = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        peak = max(peak, depth + 1)
        if peak > MAX_DEPTH:
            return peak
        stack.extend((child, depth + 1) for child in children)
    return peak


class _Refused(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Refused("duplicate_key", f"key {key!r} appears more than once in one object")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise _Refused("invalid_json", f"{name} is not a JSON number")


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(
            "invalid_json", f"integer {literal[:24]}... is longer than {MAX_INT_DIGITS} digits"
        )
    return int(literal)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_constant=_no_constant, parse_int=_bounded_int
)


def load_json(
    data: bytes | str,
    topic: str = "-",
    *,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """Parses inbound JSON by the rules of CONTRACT section 7; the one JSON door for input.

    The size and depth limits are checked before the parser runs, so no input can make it
    recurse deeply; a repeated key, ``NaN``/``Infinity`` and integers longer than
    :data:`MAX_INT_DIGITS` digits are refused.

    Raises:
        MessageError: with reason ``too_large``, ``too_deep``, ``duplicate_key`` or ``invalid_json``.
    """
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise MessageError(topic, "too_large", f"payload of {size} bytes exceeds {max_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise MessageError(topic, "invalid_json", f"payload is not UTF-8: {exc}") from None
    if _text_depth(text, max_depth) > max_depth:
        raise MessageError(topic, "too_deep", f"payload is nested deeper than {max_depth} levels")
    try:
        return _DECODER.decode(text)
    except _Refused as exc:
        raise MessageError(topic, exc.reason, exc.detail) from None
    except (ValueError, RecursionError) as exc:
        raise MessageError(topic, "invalid_json", f"not JSON: {exc}") from None


@dataclass(slots=True)
class Envelope:
    """A validated inbound message: its topic, the model, and the payload as received.

    Read-only by convention (not frozen: a frozen dataclass costs a microsecond to build).

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


def signature_refusal(env: Envelope, keys: Mapping[str, str]) -> tuple[str, str] | None:
    """(reason, detail) if a lock message fails signing (CONTRACT section 6), else None.

    Signing is on when any key is configured; then every lock message must carry a valid
    ``sig`` under its lock's key. Other messages are not signed by locks.
    """
    msg = env.message
    lock_id, seq = getattr(msg, "lock_id", None), getattr(msg, "seq", None)
    if not keys or seq is None or not isinstance(lock_id, str):
        return None
    key = keys.get(lock_id)
    if key is None:
        return "unknown_lock_key", f"no signing key is configured for lock {lock_id}"
    if env.raw.get("sig") is None:
        return "missing_signature", f"message from lock {lock_id} is not signed"
    if not signature_valid(env.raw, key):
        return "bad_signature", f"signature of lock {lock_id} seq {seq} does not verify"
    return None


def decode(
    topic: str, data: bytes | str | dict[str, Any], received_at: datetime | None = None
) -> Envelope:
    """Turns an inbound MQTT message into an :class:`Envelope`.

    Args:
        topic: the MQTT topic the message was published on.
        data: the raw payload bytes (or text), or an already parsed JSON object.
        received_at: when the message reached the pipeline (wall clock); a ``ts`` more than
            :data:`FUTURE_TS` after it is refused. None offline, where no receive time exists.

    Raises:
        MessageError: with reason ``unknown_topic``, ``too_large``, ``too_deep``,
            ``duplicate_key``, ``invalid_json``, ``not_an_object``, ``invalid_payload``,
            ``topic_mismatch`` or ``future_ts``.
    """
    try:
        channel, topic_value = inbound_channel(topic)
    except KeyError:
        raise MessageError(
            topic, "unknown_topic", f"{topic[:200]!r} is not an inbound topic"
        ) from None
    if isinstance(data, bytes | str):
        fast = _fast_payload(topic, data, received_at)
        if fast is not None:
            return fast
    if isinstance(data, dict):
        raw = data
        if value_depth(raw) > MAX_DEPTH:
            raise MessageError(
                topic, "too_deep", f"payload is nested deeper than {MAX_DEPTH} levels"
            )
    else:
        raw = load_json(data, topic)
    if not isinstance(raw, dict):
        raise MessageError(topic, "not_an_object", "payload must be a JSON object")
    try:
        message = channel.model.model_validate(raw)
    except ValidationError as exc:
        raise MessageError(topic, "invalid_payload", _describe(exc)) from None
    field = channel.param
    if field is not None and getattr(message, field) is None:  # e.g. the operator of a resolution
        message = message.model_copy(update={field: topic_value})
    if field is not None and getattr(message, field) != topic_value:
        raise MessageError(
            topic,
            "topic_mismatch",
            f"topic names {field} {topic_value!r} but the payload says {getattr(message, field)!r}",
        )
    ts = getattr(message, "ts", None)
    if received_at is not None and isinstance(ts, datetime) and ts > received_at + FUTURE_TS:
        raise MessageError(
            topic,
            "future_ts",
            f"ts {format_ts(ts)} is more than {int(FUTURE_TS.total_seconds())} s after the "
            f"time it was received ({format_ts(received_at)}); check the device clock",
        )
    return Envelope(topic=topic, message=message, raw=raw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fast path
#
# Nearly every inbound message is a well-formed lock message. For those, orjson parses the
# JSON and a few exact checks stand in for pydantic's validation; anything they do not
# vouch for goes the ordinary way (load_json, then the model), which gives the answer and
# the error. So the fast path changes no decision: it only ever accepts what the ordinary
# path accepts, and builds the same model. What orjson does differently is fenced off:
# it keeps the last of repeated keys (caught by counting colons, below), turns integers
# beyond 64 bits into floats (no field takes such a number: seq must be an int, every
# float is range-bound) and would read escapes (text with a backslash is not taken).

_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SEALS = {s.value: s for s in SealState}
_EVENT_TYPES = {e.value: e for e in LockEventType}
_TELEMETRY_FIELDS = frozenset(LockTelemetry.model_fields)
_TELEMETRY_REQUIRED = frozenset({"lock_id", "seq", "ts", "lat", "lon", "seal"})
_EVENT_FIELDS = frozenset(LockEvent.model_fields)
_EVENT_REQUIRED = frozenset({"lock_id", "seq", "ts", "type"})
# the lock topics, from their templates: the prefix, "{}" for the lock id, the suffixes
_LOCK_PREFIX = LOCK_TELEMETRY.address.split("{")[0]
_TELEMETRY_TOPIC = LOCK_TELEMETRY.address.replace("{lock_id}", "{}")
_EVENTS_TOPIC = LOCK_EVENTS.address.replace("{lock_id}", "{}")
_TELEMETRY_HEAD, _TELEMETRY_SUFFIX = _TELEMETRY_TOPIC.split("{}")
_EVENTS_HEAD, _EVENTS_SUFFIX = _EVENTS_TOPIC.split("{}")
#: Lock ids already found to match _IDENT (a set lookup instead of a regex per message).
_GOOD_IDS: set[str] = set()
_GOOD_IDS_MAX = 1 << 20
_new = object.__new__
_set = object.__setattr__


def _model(cls: type[BaseModel], values: dict[str, Any], given: set[str]) -> Any:
    """A model instance from values already checked against it (what model_validate builds)."""
    model = _new(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", given)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def _good_id(lock_id: str) -> bool:
    """``_IDENT.fullmatch(lock_id)``, remembered when it matches."""
    if not _IDENT.fullmatch(lock_id):
        return False
    if len(_GOOD_IDS) >= _GOOD_IDS_MAX:
        _GOOD_IDS.clear()
    _GOOD_IDS.add(lock_id)
    return True


def _bounded(value: Any, low: float, high: float) -> bool:
    return type(value) is float and low <= value <= high


def fast_lock_message(
    topic: str, raw: dict[str, Any], colons: int, received_at: datetime | None = None
) -> Envelope | None:
    """The envelope of a well-formed lock message, or None: then :func:`decode` decides.

    Args:
        topic: the MQTT topic.
        raw: the payload as orjson parsed it.
        colons: the number of ``:`` in the payload's JSON text (which had no backslash):
            with no key repeated, exactly one per key plus those inside strings.
        received_at: as for :func:`decode`.
    """
    lock_id = raw.get("lock_id")
    ts_text = raw.get("ts")
    if (
        type(lock_id) is not str
        or type(ts_text) is not str
        or colons != len(raw) + lock_id.count(":") + ts_text.count(":")
        or (lock_id not in _GOOD_IDS and not _good_id(lock_id))
    ):
        return None
    seq = raw.get("seq")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        return None
    sig = raw.get("sig")
    if sig is not None and (type(sig) is not str or not _HEX64.fullmatch(sig)):
        return None
    try:
        ts = parse_utc_cached(ts_text)
    except ValueError:
        return None
    if received_at is not None and ts > received_at + FUTURE_TS:
        return None
    message: Any
    if topic.endswith(_TELEMETRY_SUFFIX):
        seal_text = raw.get("seal")
        seal = _SEALS.get(seal_text) if type(seal_text) is str else None
        lat, lon = raw.get("lat"), raw.get("lon")
        if (
            seal is None
            or topic != _TELEMETRY_HEAD + lock_id + _TELEMETRY_SUFFIX
            or not _fields_ok(raw, _TELEMETRY_FIELDS, _TELEMETRY_REQUIRED)
            or type(lat) is not float  # _bounded, inlined (every telemetry message)
            or not -90.0 <= lat <= 90.0
            or type(lon) is not float
            or not -180.0 <= lon <= 180.0
        ):
            return None
        speed, hdop, battery = raw.get("speed_kmh"), raw.get("hdop"), raw.get("battery_pct")
        if not (
            (speed is None or (type(speed) is float and 0.0 <= speed <= 1000.0))
            and (hdop is None or (type(hdop) is float and 0.0 <= hdop <= 100.0))
            and (battery is None or (type(battery) is float and 0.0 <= battery <= 100.0))
        ):
            return None
        values = {
            "lock_id": lock_id,
            "seq": seq,
            "ts": ts,
            "lat": lat,
            "lon": lon,
            "speed_kmh": speed,
            "hdop": hdop,
            "seal": seal,
            "battery_pct": battery,
            "sig": sig,
        }
        message = _model(LockTelemetry, values, set(raw))
    elif topic.endswith(_EVENTS_SUFFIX):
        kind_text = raw.get("type")
        kind = _EVENT_TYPES.get(kind_text) if type(kind_text) is str else None
        lat, lon = raw.get("lat"), raw.get("lon")
        if (
            kind is None
            or topic != _EVENTS_HEAD + lock_id + _EVENTS_SUFFIX
            or not _fields_ok(raw, _EVENT_FIELDS, _EVENT_REQUIRED)
        ):
            return None
        if lat is None and lon is None:
            pass
        elif not (_bounded(lat, -90.0, 90.0) and _bounded(lon, -180.0, 180.0)):
            return None
        values = {
            "lock_id": lock_id,
            "seq": seq,
            "ts": ts,
            "type": kind,
            "lat": lat,
            "lon": lon,
            "sig": sig,
        }
        message = _model(LockEvent, values, set(raw))
    else:
        return None
    return Envelope(topic, message, raw)


#: Per field set, key orders already found valid for it (locks send the same few).
_GOOD_KEYS: dict[frozenset[str], set[tuple[str, ...]]] = {}


def _fields_ok(raw: dict[str, Any], fields: frozenset[str], required: frozenset[str]) -> bool:
    """Every key of ``raw`` is one of ``fields`` and every one of ``required`` is there."""
    good = _GOOD_KEYS.get(fields)  # (setdefault would build an empty set per call)
    if good is None:
        good = _GOOD_KEYS[fields] = set()
    order = tuple(raw)
    if order in good:
        return True
    keys = raw.keys()
    if not (keys <= fields and keys >= required):
        return False
    if len(good) < 1024:
        good.add(order)
    return True


def _fast_json(text: str | bytes, limit: int) -> Any:
    """orjson's parse of JSON text the strict parser would read the same way, else None.

    Taken: an object (first character ``{``), within ``limit`` bytes, not deep enough to
    need the depth check, with no backslash (no escapes). Repeated keys are left to the
    caller's colon count.
    """
    if isinstance(text, str):
        if len(text) * 4 > limit or "\\" in text or text[:1] != "{":
            return None
        if text.count("[") + text.count("{") > MAX_DEPTH:
            return None
    else:
        if len(text) > limit or b"\\" in text or text[:1] != b"{":
            return None
        if text.count(b"[") + text.count(b"{") > MAX_DEPTH:
            return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _fast_payload(topic: str, data: bytes | str, received_at: datetime | None) -> Envelope | None:
    if not topic.startswith(_LOCK_PREFIX):
        return None
    raw = _fast_json(data, MAX_PAYLOAD_BYTES)
    if type(raw) is not dict:
        return None
    colons = data.count(":") if isinstance(data, str) else data.count(b":")
    return fast_lock_message(topic, raw, colons, received_at)


def fast_trace_line(line: str, max_bytes: int) -> Envelope | None:
    """The envelope of a trace line ``{"topic": ..., "payload": {lock message}}``, when the
    fast path vouches for all of it (see :func:`fast_lock_message`); else None."""
    record = _fast_json(line, max_bytes)
    if type(record) is not dict or len(record) != 2:
        return None
    topic, raw = record.get("topic"), record.get("payload")
    if type(topic) is not str or type(raw) is not dict or not topic.startswith(_LOCK_PREFIX):
        return None
    # the line's colons: one per key of the record (2), those in the topic, the payload's
    colons = line.count(":") - 2 - topic.count(":")
    return fast_lock_message(topic, raw, colons)


@dataclass(frozen=True)
class RefusedArrival:
    """A gate arrival that could not be accepted: the gate still gets an answer (``inspect``).

    Attributes:
        gate_id: the gate, from the topic (the one part of the message the broker vouches for).
        reason: why it was refused (a :class:`MessageError` reason).
        detail: explanation for a person.
        ts: the arrival's own ``ts`` if it could be read (POSIX seconds), else None.
        lock_id: the lock it names, if that could be read, else None.
    """

    gate_id: str
    reason: str
    detail: str
    ts: float | None = None
    lock_id: str | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "gate_id": self.gate_id,
            "reason": self.reason,
            "detail": self.detail[:_MAX_DETAIL_CHARS],
            "ts": self.ts,
            "lock_id": self.lock_id,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RefusedArrival:
        ts, lock_id = record.get("ts"), record.get("lock_id")
        return cls(
            gate_id=str(record["gate_id"]),
            reason=str(record["reason"]),
            detail=str(record["detail"]),
            ts=float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None,
            lock_id=lock_id if isinstance(lock_id, str) else None,
        )


def refused_arrival(topic: str, data: Any, error: MessageError) -> RefusedArrival | None:
    """The :class:`RefusedArrival` for a refused message on ``gates/{gate_id}/arrivals``.

    None for other topics, or when the topic names no usable gate id. What the payload
    says about ``ts`` and ``lock_id`` is kept when it can be read safely.
    """
    gate_id = GATE_ARRIVALS.match(topic)
    if not isinstance(gate_id, str) or not _IDENTIFIER.match(gate_id):
        return None
    raw: Any = data
    if not isinstance(data, dict):
        try:
            raw = load_json(data, topic)
        except MessageError:
            raw = None
    ts: float | None = None
    lock_id: str | None = None
    if isinstance(raw, dict):
        with contextlib.suppress(ValueError, OverflowError):
            ts = parse_utc(raw.get("ts")).timestamp()
        candidate = raw.get("lock_id")
        if isinstance(candidate, str) and _IDENTIFIER.match(candidate):
            lock_id = candidate
    return RefusedArrival(gate_id, error.reason, error.detail, ts, lock_id)


_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


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
        """JSON-ready record with a bounded copy of the original (CONTRACT section 7).

        The record keeps the first :data:`MAX_PAYLOAD_BYTES` of the original (as UTF-8 text
        when it is, and always as base64), its full size and the SHA-256 of all of it, so no
        dead letter outgrows a Kafka record however large the message was.
        """
        kept = self.original[:MAX_PAYLOAD_BYTES]
        try:
            text: str | None = kept.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "topic": self.topic[:_MAX_TOPIC_CHARS],
            "reason": self.reason,
            "detail": self.detail[:_MAX_DETAIL_CHARS],
            "received_at": format_ts(self.received_at),
            "source": self.source,
            "original_size": len(self.original),
            "original_sha256": hashlib.sha256(self.original).hexdigest(),
            "original_truncated": len(self.original) > len(kept),
            "original_text": text,
            "original_b64": base64.b64encode(kept).decode("ascii"),
        }


#: Longest topic and detail kept in a dead letter (MQTT allows 64 KiB topics).
_MAX_TOPIC_CHARS = 1024
_MAX_DETAIL_CHARS = 4096
