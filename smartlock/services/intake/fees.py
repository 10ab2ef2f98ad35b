"""The Hong Kong declaration charge and training levy, as a pure function (HK$, Decimal).

Schedule (Hong Kong road cargo system, export and re-export):

* a consignment worth HK$400 or less is exempt (no charge, no levy);
* value up to HK$46,000: HK$0.50;
* above HK$46,000: HK$0.50 plus HK$0.25 per HK$1,000 or part of it over HK$46,000;
* garments and footwear made in Hong Kong and exported: a clothing-industry training levy of
  HK$0.30 per HK$1,000 or part of it of their value.

Values in other currencies are converted with a fixed, documented rate table (HK$ per unit,
setting ``intake.hkd_rates``); an unknown currency is an error, never a guess.

A late declaration adds a late charge (:mod:`smartlock.core.penalties`): the fee once more for
every started 14 days late, at most ten times the fee (:func:`with_late_charge`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

from smartlock.core.penalties import LateCharge, late_charge

#: HK$ per unit of currency. Fixed so that an estimate is reproducible; override in settings.
DEFAULT_HKD_RATES: Mapping[str, Decimal] = {
    "HKD": Decimal("1"),
    "USD": Decimal("7.8"),
    "CNY": Decimal("1.08"),
    "EUR": Decimal("8.4"),
}

EXEMPT_LIMIT = Decimal("400")
BASE_LIMIT = Decimal("46000")
BASE_CHARGE = Decimal("0.50")
STEP = Decimal("1000")
STEP_CHARGE = Decimal("0.25")
LEVY_PER_STEP = Decimal("0.30")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class FeeItem:
    """One cargo line as the fee schedule sees it.

    Attributes:
        value: declared value in ``currency``.
        currency: ISO 4217 code.
        garment_or_footwear: the goods are garments or footwear (Cap. 318 schedule 1 goods).
        origin: place of origin (ISO 3166 alpha-2, ``HK`` for Hong Kong).
    """

    value: Decimal
    currency: str = "HKD"
    garment_or_footwear: bool = False
    origin: str = ""

    @property
    def levied(self) -> bool:
        """Made in Hong Kong garments or footwear (the levy applies to exports only; every
        declaration here is an export)."""
        return self.garment_or_footwear and self.origin.upper() == "HK"


@dataclass(frozen=True)
class FeeEstimate:
    """The breakdown, in HK$ (two decimals)."""

    value_hkd: Decimal
    levied_value_hkd: Decimal
    exempt: bool
    declaration_charge: Decimal
    training_levy: Decimal
    late: LateCharge | None = None

    @property
    def fee(self) -> Decimal:
        """The fee payable on time: declaration charge and training levy."""
        return self.declaration_charge + self.training_levy

    @property
    def late_charge(self) -> Decimal:
        return self.late.charge if self.late is not None else Decimal("0.00")

    @property
    def total(self) -> Decimal:
        return self.fee + self.late_charge

    def to_dict(self) -> dict[str, object]:
        """JSON-ready breakdown; amounts as strings with two decimals (exact)."""
        return {
            "currency": "HKD",
            "value_hkd": str(self.value_hkd),
            "levied_value_hkd": str(self.levied_value_hkd),
            "exempt": self.exempt,
            "declaration_charge": str(self.declaration_charge),
            "training_levy": str(self.training_levy),
            "late_charge": str(self.late_charge),
            "total": str(self.total),
            **({"late": self.late.to_dict()} if self.late is not None else {}),
        }


class UnknownCurrency(ValueError):
    """A value is in a currency the rate table does not know."""

    def __init__(self, currency: str, known: Sequence[str]) -> None:
        self.currency = currency
        super().__init__(
            f"currency {currency!r} has no fixed HK$ rate; declare the value in one of {', '.join(sorted(known))}"
        )


def to_hkd(
    value: Decimal, currency: str, rates: Mapping[str, Decimal] = DEFAULT_HKD_RATES
) -> Decimal:
    """Converts a value to HK$ with the fixed rate table, rounded to the cent.

    Raises:
        UnknownCurrency: the currency is not in ``rates``.
    """
    rate = rates.get(currency.upper())
    if rate is None:
        raise UnknownCurrency(currency, list(rates))
    return (Decimal(value) * Decimal(rate)).quantize(_CENT)


def _steps(amount: Decimal) -> Decimal:
    """Number of HK$1,000 steps, a part of a step counting as a whole one."""
    if amount <= 0:
        return Decimal(0)
    return (amount / STEP).to_integral_value(rounding=ROUND_CEILING)


def declaration_charge(value_hkd: Decimal) -> Decimal:
    """The declaration charge for a consignment value in HK$ (0.00 when exempt)."""
    if value_hkd <= EXEMPT_LIMIT:
        return Decimal("0.00")
    return (BASE_CHARGE + STEP_CHARGE * _steps(value_hkd - BASE_LIMIT)).quantize(_CENT)


def training_levy(levied_value_hkd: Decimal) -> Decimal:
    """The clothing-industry training levy on the value of HK-made garments and footwear."""
    return (LEVY_PER_STEP * _steps(levied_value_hkd)).quantize(_CENT)


def estimate_fee(
    items: Sequence[FeeItem], rates: Mapping[str, Decimal] = DEFAULT_HKD_RATES
) -> FeeEstimate:
    """Estimates the fee of a consignment (all its cargo lines together).

    Args:
        items: the cargo lines.
        rates: HK$ per unit of each accepted currency.

    Raises:
        UnknownCurrency: a line's currency is not in ``rates``.
    """
    value = sum((to_hkd(i.value, i.currency, rates) for i in items), Decimal("0.00"))
    levied = sum((to_hkd(i.value, i.currency, rates) for i in items if i.levied), Decimal("0.00"))
    if value <= EXEMPT_LIMIT:
        return FeeEstimate(value, levied, True, Decimal("0.00"), Decimal("0.00"))
    return FeeEstimate(value, levied, False, declaration_charge(value), training_levy(levied))


def with_late_charge(fee: FeeEstimate, late_by: timedelta) -> FeeEstimate:
    """The estimate with the late charge of a declaration that came ``late_by`` after its deadline.

    On time (``late_by`` zero or negative) the estimate is returned unchanged.
    """
    if late_by <= timedelta(0):
        return fee
    return replace(fee, late=late_charge(fee.fee, late_by))
