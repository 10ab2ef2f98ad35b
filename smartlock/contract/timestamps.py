"""Timestamps of the contract (RFC 3339 in UTC, CONTRACT section 2): the one parser and formatter.

Every module that reads or writes a contract timestamp goes through here, so a ``Z`` suffix,
an offset or a fraction is handled the same way everywhere.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

#: What a contract payload may carry: seconds, an optional fraction, UTC only.
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|\+00:00|-00:00)$")


def parse_rfc3339(text: str) -> datetime:
    """Any RFC 3339 time (``Z`` or an offset) as an aware UTC datetime.

    Raises:
        ValueError: not a time, or a time without a zone (naive times are never guessed).
    """
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no zone; use e.g. 2026-11-22T08:15:00Z")
    return parsed.astimezone(UTC)


def parse_utc(value: Any) -> datetime:
    """A contract timestamp: RFC 3339 in UTC (or an aware UTC datetime), strictly.

    Raises:
        ValueError: with a message that shows the expected form.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None):
            raise ValueError("timestamp must be timezone-aware UTC")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError("timestamp must be an RFC 3339 string in UTC, e.g. 2026-11-22T08:15:00Z")
    if not RFC3339_UTC.match(value):
        raise ValueError(f"timestamp {value!r} is not RFC 3339 UTC; use e.g. 2026-11-22T08:15:00Z")
    return parse_rfc3339(value)


#: parse_utc's answers for strings seen recently (locks report on the same seconds).
_PARSED: dict[str, datetime] = {}
_PARSED_MAX = 65_536


def parse_utc_cached(text: str) -> datetime:
    """:func:`parse_utc` of a string, remembered: the same answer, and the same errors."""
    parsed = _PARSED.get(text)
    if parsed is None:
        parsed = parse_utc(text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = parsed
    return parsed


def epoch(text: str) -> float:
    """POSIX seconds of an RFC 3339 time (see :func:`parse_rfc3339`)."""
    return parse_rfc3339(text).timestamp()


def format_ts(ts: datetime) -> str:
    """Formats a UTC datetime as RFC 3339 with a ``Z`` suffix (seconds, or microseconds if set)."""
    ts = ts.astimezone(UTC)
    if ts.microsecond:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_epoch(ts: float) -> str:
    """Formats POSIX seconds (UTC) as RFC 3339 with a ``Z`` suffix."""
    return format_ts(datetime.fromtimestamp(ts, UTC))
