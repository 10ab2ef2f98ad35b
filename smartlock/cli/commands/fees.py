"""`smartlock fees`: the Hong Kong declaration charge and training levy of a consignment."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from smartlock.errors import SmartlockError
from smartlock.runtime import settings_from_args
from smartlock.services.intake.fees import FeeEstimate, FeeItem, estimate_fee, with_late_charge
from smartlock.services.intake.rules import FieldError, fee_items
from smartlock.services.intake.service import limits_from


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "form",
        nargs="?",
        type=Path,
        default=None,
        help='JSON file: a declaration form or {"cargo": [...]}',
    )
    parser.add_argument("--value", default=None, help="consignment value (instead of a form)")
    parser.add_argument("--currency", default="HKD", help="currency of --value (default HKD)")
    parser.add_argument(
        "--garments-hk",
        action="store_true",
        help="the goods are garments or footwear made in Hong Kong (training levy)",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML settings file (currency rates)"
    )
    parser.add_argument(
        "--days-late",
        type=float,
        default=0.0,
        help="days after the deadline (30 minutes before arrival): adds the late charge, the fee "
        "once more per started 14 days, at most ten times the fee",
    )
    parser.add_argument("--json", action="store_true", help="print the breakdown as JSON")


def _items(args: argparse.Namespace) -> list[FeeItem] | list[FieldError]:
    limits = limits_from(settings_from_args(args))
    if args.form is not None:
        try:
            body = json.loads(args.form.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else f"not JSON: {exc}"
            raise SmartlockError(
                f"Cannot read {args.form} ({why}); give a JSON declaration form or "
                '{"cargo": [...]}.'
            ) from exc
        return fee_items(body.get("cargo") if isinstance(body, dict) else None, limits)
    if args.value is None:
        raise SmartlockError("Give --value AMOUNT or a form FILE.")
    try:
        value = Decimal(args.value)
    except InvalidOperation as exc:
        raise SmartlockError(
            f"--value {args.value} is not a number; give the amount, e.g. --value 47001."
        ) from exc
    line = {
        "value": str(value),
        "currency": args.currency,
        "garment_or_footwear": args.garments_hk,
        "origin": "HK" if args.garments_hk else "",
    }
    return fee_items([line], limits)


def format_estimate(fee: FeeEstimate) -> str:
    """The breakdown as printed by ``smartlock fees``."""
    lines = [f"consignment value     HK$ {fee.value_hkd:>12,}"]
    if fee.exempt:
        lines.append("exempt (value HK$400 or less)")
    lines += [
        f"declaration charge    HK$ {fee.declaration_charge:>12}",
        f"training levy         HK$ {fee.training_levy:>12}   (on HK$ {fee.levied_value_hkd:,} "
        "of HK-made garments and footwear)",
    ]
    if fee.late is not None:
        lines.append(
            f"late charge           HK$ {fee.late_charge:>12}   ({fee.late.multiplier} x the fee)"
        )
    lines.append(f"total                 HK$ {fee.total:>12}")
    if fee.late is not None:
        lines.append(fee.late.sentence())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    items = _items(args)
    if items and isinstance(items[0], FieldError):
        for error in items:
            print(error.message)  # type: ignore[union-attr]
        return 1
    limits = limits_from(settings_from_args(args))
    if not 0 <= args.days_late <= 3650:
        raise SmartlockError(
            f"--days-late {args.days_late:g} is not a number of days from 0 to 3650; give how "
            "long after its deadline the declaration comes, e.g. --days-late 15."
        )
    fee = estimate_fee(items, limits.hkd_rates)  # type: ignore[arg-type]
    fee = with_late_charge(fee, timedelta(days=args.days_late))
    print(json.dumps(fee.to_dict(), indent=2) if args.json else format_estimate(fee))
    return 0
