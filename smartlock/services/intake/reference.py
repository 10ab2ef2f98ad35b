"""Reference numbers for accepted declarations, in the manner of the CCRN.

Format ``CCRN-YYMM-XXXX-XXXX-C``: ``YYMM`` is the month of submission (UTC), ``XXXX-XXXX``
eight Crockford base-32 symbols (digits and capitals without I, L, O, U) drawn at random from
the operating system's CSPRNG (40 bits: one reference tells nothing about any other, and
guessing one is hopeless at any request rate the intake serves), and ``C`` a check symbol
(weighted sum modulo 31 over the month digits and the eight symbols, weights 2**i), which
catches a single mistyped symbol (except 0 for Z) and any swap of two neighbours. Only
letters, digits and dashes, so a reference is also a valid declaration id and URL segment.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SYMBOLS = 8
PATTERN = re.compile(
    r"^CCRN-(\d{4})-([0-9A-HJKMNP-TV-Z]{4})-([0-9A-HJKMNP-TV-Z]{4})-([0-9A-HJKMNP-TV-Y])$"
)


def _check(month: str, body: str) -> str:
    symbols = [int(d) for d in month] + [ALPHABET.index(ch) for ch in body]
    total = sum(v * pow(2, i, 31) for i, v in enumerate(symbols))
    return ALPHABET[total % 31]


def make_reference(now: datetime, body: str | None = None) -> str:
    """A fresh random reference for a declaration submitted at ``now``.

    Args:
        now: the submission time (its UTC month is part of the reference).
        body: the eight symbols (tests); default: random from :mod:`secrets`.

    Raises:
        ValueError: ``body`` is not eight symbols of the alphabet.
    """
    body = body if body is not None else "".join(secrets.choice(ALPHABET) for _ in range(SYMBOLS))
    if len(body) != SYMBOLS or any(ch not in ALPHABET for ch in body):
        raise ValueError(f"reference body {body!r} must be {SYMBOLS} symbols of {ALPHABET}")
    month = now.astimezone(UTC).strftime("%y%m")
    return f"CCRN-{month}-{body[:4]}-{body[4:]}-{_check(month, body)}"


def is_valid_reference(reference: str) -> bool:
    """True if ``reference`` has the format and its check symbol is right."""
    m = PATTERN.match(reference.strip().upper())
    return m is not None and _check(m.group(1), m.group(2) + m.group(3)) == m.group(4)


def normalise_reference(reference: str) -> str:
    """Upper case, surrounding spaces removed (as typed by a driver)."""
    return reference.strip().upper()
