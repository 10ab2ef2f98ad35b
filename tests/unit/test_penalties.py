"""Penalties: the late-declaration schedule at every boundary, the cap, the undeclared flag."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from smartlock.core.penalties import (
    MAX_MULTIPLIER,
    UNDECLARED_MAX_FINE,
    duration,
    late_charge,
    late_periods,
    undeclared_consignment,
)

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("late_by", "periods", "multiplier"),
    [
        (-DAY, 0, 0),
        (timedelta(0), 0, 0),
        (MINUTE, 1, 1),
        (14 * DAY, 1, 1),
        (14 * DAY + MINUTE, 2, 2),
        (28 * DAY, 2, 2),
        (28 * DAY + MINUTE, 3, 3),
        (126 * DAY, 9, 9),
        (126 * DAY + MINUTE, 10, 10),
        (140 * DAY, 10, 10),
        (140 * DAY + MINUTE, 11, 10),
        (1000 * DAY, 72, 10),
    ],
)
def test_late_charge_rises_every_started_14_days_up_to_ten_times_the_fee(
    late_by: timedelta, periods: int, multiplier: int
) -> None:
    charge = late_charge(Decimal("0.75"), late_by)
    assert (charge.periods, charge.multiplier) == (periods, multiplier)
    assert charge.charge == Decimal("0.75") * multiplier
    assert charge.charge <= Decimal("0.75") * MAX_MULTIPLIER
    assert charge.late is (periods > 0)


def test_a_started_period_counts_as_a_whole_one() -> None:
    assert late_periods(timedelta(seconds=1)) == 1
    assert late_periods(14 * DAY - timedelta(seconds=1)) == 1
    assert late_periods(14 * DAY + timedelta(seconds=1)) == 2


def test_an_exempt_consignment_pays_no_late_charge() -> None:
    assert late_charge(Decimal("0"), 30 * DAY).charge == Decimal("0.00")


def test_late_charge_record_and_sentence() -> None:
    charge = late_charge(Decimal("1.00"), 15 * DAY)
    assert charge.to_dict() == {
        "late_by_s": 15 * 86400,
        "periods": 2,
        "multiplier": 2,
        "fee": "1.00",
        "late_charge": "2.00",
        "message": charge.sentence(),
    }
    assert charge.sentence() == (
        "The declaration is 15 days late (2 started periods of 14 days), so the fee of HK$1.00 is "
        "charged 2 more times: a late charge of HK$2.00."
    )
    capped = late_charge(Decimal("1.00"), 200 * DAY).sentence()
    assert "the cap: ten times the fee" in capped and capped.endswith("HK$10.00.")
    on_time = late_charge(Decimal("1.00"), timedelta(0)).sentence()
    assert on_time == "The declaration is on time; there is no late charge."


def test_undeclared_consignment_is_detained_with_a_fine_of_up_to_50000() -> None:
    flag = undeclared_consignment("LK-09", "beilun-gate")
    assert flag["kind"] == "undeclared_consignment"
    assert flag["action"] == "detain"
    assert flag["max_fine_hkd"] == "50000.00" == str(UNDECLARED_MAX_FINE)
    assert flag["message"] == (
        "The container under lock LK-09 arrived at beilun-gate with no open declaration: detain "
        "the goods; the consignor faces a fine of up to HK$50,000."
    )


@pytest.mark.parametrize(
    ("late_by", "said"),
    [
        (timedelta(seconds=82), "1 minute"),
        (45 * MINUTE, "45 minutes"),
        (timedelta(hours=7, minutes=12), "7 hours and 12 minutes"),
        (DAY, "1 day"),
        (timedelta(days=1, hours=12), "1 day and 12 hours"),
        (14 * DAY + MINUTE, "14 days and 1 minute"),
        (14 * DAY + timedelta(hours=1, minutes=1), "14 days and 1 hour"),
        (15 * DAY, "15 days"),
    ],
)
def test_how_late_is_said_as_a_person_says_it(late_by: timedelta, said: str) -> None:
    assert duration(late_by) == said
    sentence = late_charge(Decimal("0.50"), late_by).sentence()
    assert sentence.startswith(f"The declaration is {said} late (")
    assert ".0 " not in sentence and sentence.endswith(".")


def test_an_exempt_late_declaration_is_told_it_pays_nothing() -> None:
    assert late_charge(Decimal("0.00"), 20 * DAY).sentence() == (
        "The declaration is 20 days late, but the consignment is exempt (no fee), so there is no "
        "late charge."
    )
