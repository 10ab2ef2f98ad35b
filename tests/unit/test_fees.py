"""The Hong Kong fee schedule at its boundaries, the training levy and currency conversion."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from smartlock.cli.commands import fees as fees_command
from smartlock.services.intake.fees import (
    FeeItem,
    UnknownCurrency,
    declaration_charge,
    estimate_fee,
    to_hkd,
    training_levy,
    with_late_charge,
)


def _fee(value: str, **kw: object) -> dict[str, object]:
    return estimate_fee([FeeItem(Decimal(value), **kw)]).to_dict()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "charge", "exempt"),
    [
        ("0", "0.00", True),
        ("400", "0.00", True),
        ("400.01", "0.50", False),
        ("46000", "0.50", False),
        ("46000.01", "0.75", False),
        ("46001", "0.75", False),
        ("47000", "0.75", False),
        ("47001", "1.00", False),
        ("48000", "1.00", False),
        ("100000", "14.00", False),
    ],
)
def test_declaration_charge_at_the_boundaries(value: str, charge: str, exempt: bool) -> None:
    fee = _fee(value)
    assert (fee["declaration_charge"], fee["exempt"], fee["total"]) == (charge, exempt, charge)


def test_training_levy_is_per_thousand_or_part_on_hk_garments_and_footwear() -> None:
    assert training_levy(Decimal("0")) == Decimal("0.00")
    assert training_levy(Decimal("1")) == Decimal("0.30")
    assert training_levy(Decimal("1000")) == Decimal("0.30")
    assert training_levy(Decimal("1000.01")) == Decimal("0.60")
    fee = _fee("47001", garment_or_footwear=True, origin="HK")
    assert (fee["declaration_charge"], fee["training_levy"], fee["total"]) == (
        "1.00",
        "14.40",
        "15.40",
    )


def test_levy_needs_both_garments_and_hong_kong_origin() -> None:
    assert _fee("47001", garment_or_footwear=True, origin="CN")["training_levy"] == "0.00"
    assert _fee("47001", garment_or_footwear=False, origin="HK")["training_levy"] == "0.00"
    assert _fee("47001", garment_or_footwear=True, origin="hk")["training_levy"] == "14.40"


def test_small_consignment_is_exempt_from_levy_too() -> None:
    fee = _fee("400", garment_or_footwear=True, origin="HK")
    assert (fee["exempt"], fee["training_levy"], fee["total"]) == (True, "0.00", "0.00")


def test_lines_add_up_and_only_levied_lines_pay_the_levy() -> None:
    fee = estimate_fee(
        [FeeItem(Decimal("30000"), "HKD", True, "HK"), FeeItem(Decimal("17001"), "HKD")]
    )
    assert fee.value_hkd == Decimal("47001.00")
    assert fee.levied_value_hkd == Decimal("30000.00")
    assert (fee.declaration_charge, fee.training_levy) == (Decimal("1.00"), Decimal("9.00"))


def test_fixed_rates_convert_and_unknown_currency_is_refused() -> None:
    assert to_hkd(Decimal("5400"), "USD") == Decimal("42120.00")
    assert to_hkd(Decimal("100"), "cny") == Decimal("108.00")
    assert declaration_charge(to_hkd(Decimal("5900"), "USD")) == Decimal("0.75")  # HK$46,020.00
    with pytest.raises(
        UnknownCurrency, match="currency 'JPY' has no fixed HK\\$ rate; declare the value in one of"
    ):
        to_hkd(Decimal("1"), "JPY")


def test_fees_command_prints_the_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    fees_command.configure(parser)
    assert fees_command.run(parser.parse_args(["--value", "47001"])) == 0
    out = capsys.readouterr().out
    assert "declaration charge    HK$         1.00" in out
    assert out.rstrip().endswith("total                 HK$         1.00")
    assert fees_command.run(parser.parse_args(["--value", "1000", "--garments-hk", "--json"])) == 0
    assert '"training_levy": "0.30"' in capsys.readouterr().out
    assert fees_command.run(parser.parse_args(["--value", "10", "--currency", "JPY"])) == 1
    assert 'cargo[0].currency: "JPY" is not accepted; use one of' in capsys.readouterr().out


def test_fees_command_reads_a_form(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    form = tmp_path / "form.json"
    form.write_text(
        json.dumps(
            {
                "cargo": [
                    {
                        "value": 30000,
                        "currency": "HKD",
                        "garment_or_footwear": True,
                        "origin": "HK",
                    },
                    {"value": 2180, "currency": "USD"},  # HK$17,004.00
                ]
            }
        ),
        encoding="utf-8",
    )
    parser = argparse.ArgumentParser()
    fees_command.configure(parser)
    assert fees_command.run(parser.parse_args([str(form), "--json"])) == 0
    fee = json.loads(capsys.readouterr().out)
    assert (fee["value_hkd"], fee["declaration_charge"], fee["training_levy"], fee["total"]) == (
        "47004.00",
        "1.00",
        "9.00",
        "10.00",
    )


def test_fees_command_adds_the_late_charge(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    fees_command.configure(parser)
    assert fees_command.run(parser.parse_args(["--value", "47001", "--days-late", "15"])) == 0
    out = capsys.readouterr().out
    assert "late charge           HK$         2.00   (2 x the fee)" in out
    assert "total                 HK$         3.00" in out
    assert out.rstrip().endswith("charged 2 more times: a late charge of HK$2.00.")
    assert (
        fees_command.run(parser.parse_args(["--value", "47001", "--days-late", "140", "--json"]))
        == 0
    )
    body = json.loads(capsys.readouterr().out)
    assert (body["late_charge"], body["total"], body["late"]["multiplier"]) == (
        "10.00",
        "11.00",
        10,
    )
    assert (
        fees_command.run(parser.parse_args(["--value", "47001", "--days-late", "0", "--json"])) == 0
    )
    body = json.loads(capsys.readouterr().out)
    assert (body["late_charge"], body["total"], "late" in body) == ("0.00", "1.00", False)


@pytest.mark.parametrize(
    ("days", "multiplier"),
    [(0, 0), (0.001, 1), (14, 1), (14.001, 2), (126, 9), (126.001, 10), (1000, 10)],
)
def test_late_charge_on_an_estimate_at_the_boundaries(days: float, multiplier: int) -> None:
    fee = with_late_charge(estimate_fee([FeeItem(Decimal("47001"))]), timedelta(days=days))
    assert fee.fee == Decimal("1.00")
    assert fee.late_charge == Decimal("1.00") * multiplier
    assert fee.total == Decimal("1.00") * (1 + multiplier)


@pytest.mark.parametrize(
    ("days", "times"),
    [(0, 0), (1, 1), (14, 1), (15, 2), (28, 2), (29, 3), (126, 9), (127, 10), (140, 10), (141, 10)],
)
def test_fees_command_late_charge_at_every_boundary(
    days: int, times: int, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    fees_command.configure(parser)
    args = ["--value", "47001", "--days-late", str(days)]
    assert fees_command.run(parser.parse_args([*args, "--json"])) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["late_charge"], body["total"]) == (f"{times}.00", f"{1 + times}.00")
    assert fees_command.run(parser.parse_args(args)) == 0
    said = capsys.readouterr().out.rstrip().splitlines()[-1]
    if times:
        assert said.startswith(f"The declaration is {days} day{'s' if days > 1 else ''} late (")
        assert said.endswith(f"a late charge of HK${times}.00.")
        assert ("(the cap: ten times the fee)" in said) is (days > 126)
    else:
        assert said.startswith("total")
