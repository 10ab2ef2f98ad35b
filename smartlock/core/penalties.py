"""Penalties of the Hong Kong road cargo system (ROCARS), as pure functions (HK$, Decimal).

From the rules in our seed material (section 5 of the ROCARS article):

* **Undeclared consignment** (or false information): the goods are detained and a fine of up
  to HK$50,000 may be imposed. The pipeline fines nobody; it flags the case in the audit trail
  (:func:`undeclared_consignment`) so that the officer at the gate detains the goods.
* **Late declaration**: the charge rises with every 14 days late, up to ten times the fee
  payable. A declaration is late when it is submitted after its deadline (arrival at the
  control point minus the binding lead time, 30 minutes by default); every started period of
  14 days adds the fee once more, and the late charge never exceeds ten times the fee:
  ``late_charge = fee * min(ceil(late_by / 14 days), 10)``.

Pure: no clock, no I/O; the caller passes the times. The core's audit entries use the
undeclared flag and the intake the late charge, so both live here, below either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

#: Every started period of this length adds the fee once more to a late declaration's charge.
LATE_PERIOD = timedelta(days=14)
#: The late charge is at most this many times the fee payable.
MAX_MULTIPLIER = 10
#: The largest fine for an undeclared consignment (or false information), HK$.
UNDECLARED_MAX_FINE = Decimal("50000.00")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class LateCharge:
    """The late-declaration charge of one declaration.

    Attributes:
        late_by: how long after its deadline the declaration came (zero when on time).
        periods: started 14-day periods in ``late_by``.
        multiplier: ``min(periods, 10)``, how many times the fee is charged on top.
        fee: the fee payable (declaration charge and training levy), HK$.
        charge: ``fee * multiplier``, HK$.
    """

    late_by: timedelta
    periods: int
    multiplier: int
    fee: Decimal
    charge: Decimal

    @property
    def late(self) -> bool:
        return self.periods > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; amounts as exact two-decimal strings."""
        return {
            "late_by_s": int(self.late_by.total_seconds()),
            "periods": self.periods,
            "multiplier": self.multiplier,
            "fee": str(self.fee),
            "late_charge": str(self.charge),
            "message": self.sentence(),
        }

    def sentence(self) -> str:
        """What the declarant reads."""
        if not self.late:
            return "The declaration is on time; there is no late charge."
        late = f"The declaration is {duration(self.late_by)} late"
        if not self.fee:
            return f"{late}, but the consignment is exempt (no fee), so there is no late charge."
        periods = "1 started period" if self.periods == 1 else f"{self.periods} started periods"
        times = "once more" if self.multiplier == 1 else f"{self.multiplier} more times"
        capped = " (the cap: ten times the fee)" if self.periods >= MAX_MULTIPLIER else ""
        return (
            f"{late} ({periods} of 14 days), so the fee of HK${self.fee} is charged "
            f"{times}{capped}: a late charge of HK${self.charge}."
        )


def duration(span: timedelta) -> str:
    """A length of time as a person says it: "45 minutes", "3 hours and 5 minutes", "15 days",
    "1 day and 12 hours" (days and hours from a day on, or days and minutes within the hour
    after a whole day, so that "14 days and 1 minute" late is not said as "14 days" while it
    started a second period; under a minute counts as 1 minute)."""

    def unit(n: int, name: str) -> str:
        return f"{n} {name}" if n == 1 else f"{n} {name}s"

    minutes = max(1, int(span.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        if not hours and minutes:
            return unit(days, "day") + f" and {unit(minutes, 'minute')}"
        return unit(days, "day") + (f" and {unit(hours, 'hour')}" if hours else "")
    if hours:
        return unit(hours, "hour") + (f" and {unit(minutes, 'minute')}" if minutes else "")
    return unit(minutes, "minute")


def late_periods(late_by: timedelta) -> int:
    """Started 14-day periods in ``late_by`` (0 when it is zero or negative)."""
    if late_by <= timedelta(0):
        return 0
    whole, rest = divmod(late_by, LATE_PERIOD)
    return int(whole) + (1 if rest else 0)


def late_charge(fee: Decimal, late_by: timedelta) -> LateCharge:
    """The late charge of a declaration that came ``late_by`` after its deadline.

    Args:
        fee: the fee payable (declaration charge plus training levy), HK$.
        late_by: submission time minus deadline (zero or negative when on time).
    """
    periods = late_periods(late_by)
    multiplier = min(periods, MAX_MULTIPLIER)
    fee = Decimal(fee).quantize(_CENT)
    return LateCharge(
        max(late_by, timedelta(0)), periods, multiplier, fee, (fee * multiplier).quantize(_CENT)
    )


def undeclared_consignment(lock_id: str, gate_id: str) -> dict[str, Any]:
    """The audit trail's flag for a consignment found at a gate with no open declaration."""
    return {
        "kind": "undeclared_consignment",
        "action": "detain",
        "max_fine_hkd": str(UNDECLARED_MAX_FINE),
        "message": (
            f"The container under lock {lock_id} arrived at {gate_id} with no open declaration: "
            "detain the goods; the consignor faces a fine of up to "
            f"HK${UNDECLARED_MAX_FINE:,.0f}."
        ),
        "basis": "Hong Kong road cargo system (ROCARS): an undeclared consignment is detained "
        "and its consignor fined up to HK$50,000.",
    }
