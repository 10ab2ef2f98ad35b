"""Reference numbers for accepted declarations, in the manner of the CCRN.

Format ``CCRN-YYMM-XXXX-C``: ``YYMM`` is the month of submission (UTC), ``XXXX`` four
Crockford base-32 symbols (digits and capitals without I, L, O, U) encoding the month's
counter scrambled by a fixed bijection (so consecutive numbers do not look consecutive),
and ``C`` a check symbol (weighted sum modulo 31 over the month digits and the four
symbols, weights 2**i), which catches a single mistyped symbol (except 0 for Z) and any swap
of two neighbours. Only letters and digits, so a reference is also a valid declaration id and
URL segment. About a million references per month.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SPACE = 32**4
_MULT = 0x5BD1F  # odd, so multiplication modulo 2**20 is a bijection
_SALT = 0x3A5C7
PATTERN = re.compile(r"^CCRN-(\d{4})-([0-9A-HJKMNP-TV-Z]{4})-([0-9A-HJKMNP-TV-Y])$")


def _encode(n: int) -> str:
    out = ""
    for _ in range(4):
        n, r = divmod(n, 32)
        out = ALPHABET[r] + out
    return out


def _check(month: str, body: str) -> str:
    symbols = [int(d) for d in month] + [ALPHABET.index(ch) for ch in body]
    total = sum(v * pow(2, i, 31) for i, v in enumerate(symbols))
    return ALPHABET[total % 31]


def make_reference(counter: int, now: datetime) -> str:
    """The reference for the ``counter``-th declaration (from 1) of the month of ``now``.

    Raises:
        ValueError: the counter is outside 1..1,048,575.
    """
    if not 0 < counter < _SPACE:
        raise ValueError(f"reference counter {counter} out of range 1..{_SPACE - 1}")
    month = now.astimezone(UTC).strftime("%y%m")
    body = _encode((counter * _MULT + _SALT) % _SPACE)
    return f"CCRN-{month}-{body}-{_check(month, body)}"


def month_key(now: datetime) -> str:
    """``YYMM`` of ``now`` in UTC (the counter's partition)."""
    return now.astimezone(UTC).strftime("%y%m")


def is_valid_reference(reference: str) -> bool:
    """True if ``reference`` has the format and its check symbol is right."""
    m = PATTERN.match(reference.strip().upper())
    return m is not None and _check(m.group(1), m.group(2)) == m.group(3)


def normalise_reference(reference: str) -> str:
    """Upper case, surrounding spaces removed (as typed by a driver)."""
    return reference.strip().upper()
