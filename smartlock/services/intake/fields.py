"""Field-level rules of the declaration form (Hong Kong road cargo system): cargo
descriptions, vehicle plates, local times, addresses, parties, cargo lines, container numbers.

Pure. Each checker returns or appends :class:`FieldError` values whose message starts with
the field's dotted path and says what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError

from smartlock.contract.models import MAX_AMOUNT, ContainerNo
from smartlock.core.declaration import (  # noqa: F401  (re-exported: the form's field rules)
    HONG_KONG_PLATE,
    MAINLAND_PLATE,
    VAGUE_TOKENS,
    VAGUE_WORDS,
    FieldError,
    check_description,
    check_plate,
)
from smartlock.services.intake.fees import DEFAULT_HKD_RATES
from smartlock.services.intake.special_goods import check_permits

DEFAULT_TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class Limits:
    """Timing limits (settings ``intake.*``)."""

    max_days_before_departure: int = 14
    min_minutes_before_arrival: int = 30
    hkd_rates: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_HKD_RATES))


DEFAULT_LIMITS = Limits()


# --------------------------------------------------------------------------- times

_LOCAL_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2})(?::\d{2}(?:\.\d+)?)?(?: (\S+))?$"
)
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def _format_hint(tz: str) -> str:
    return f'write YYYY-MM-DD HH:MM with a zone, e.g. "2026-11-23 14:30 +08:00" or "2026-11-23 14:30 {tz}"'


def parse_local_time(path: str, value: Any, tz: str = DEFAULT_TZ) -> datetime | FieldError:
    """Parses ``YYYY-MM-DD HH:MM <zone>`` (zone: ``+08:00`` or an IANA name); to the minute."""
    if not isinstance(value, str) or not value.strip():
        return FieldError(path, f"{path}: missing; {_format_hint(tz)}")
    text = value.strip()
    m = _LOCAL_TIME.match(text)
    if m is None:
        return FieldError(path, f'{path}: "{text}" is not a time to the minute; {_format_hint(tz)}')
    if text[16:17] == ":":
        return FieldError(
            path, f'{path}: "{text}" has seconds; give the time to the minute: {_format_hint(tz)}'
        )
    zone = m.group(6)
    if zone is None:
        return FieldError(path, f'{path}: "{text}" has no time zone; {_format_hint(tz)}')
    tzinfo = _zone(zone)
    if tzinfo is None:
        return FieldError(
            path,
            f'{path}: "{zone}" is not a time zone; use an offset such as +08:00 or an '
            f"IANA name such as {tz}",
        )
    try:
        year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
        local = datetime(year, month, day, hour, minute)
    except ValueError:
        return FieldError(
            path, f'{path}: "{text}" is not a valid date and time; {_format_hint(tz)}'
        )
    return local.replace(tzinfo=tzinfo).astimezone(UTC)


def _zone(name: str) -> Any:
    m = _OFFSET.match(name)
    if m:
        minutes = int(m.group(2)) * 60 + int(m.group(3))
        if minutes > 18 * 60:
            return None
        return timezone(timedelta(minutes=minutes if m.group(1) == "+" else -minutes))
    if name in ("Z", "UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def format_local(ts: datetime, tz: str) -> str:
    return ts.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M ") + tz


def check_timing(
    departure: datetime,
    arrival: datetime,
    now: datetime,
    tz: str = DEFAULT_TZ,
    limits: Limits = DEFAULT_LIMITS,
) -> list[FieldError]:
    """Submission window: no earlier than 14 days before departure; arrival after departure.

    A declaration submitted later than 30 minutes before arrival at the control point is not
    refused: it is late, and pays a late charge (:func:`declaration_deadline`,
    :func:`smartlock.services.intake.fees.with_late_charge`).
    """
    errors = []
    if arrival <= departure:
        errors.append(
            FieldError(
                "arrival",
                "arrival: must be after departure; give the expected arrival at the control point",
            )
        )
    earliest = departure - timedelta(days=limits.max_days_before_departure)
    if now < earliest:
        errors.append(
            FieldError(
                "departure",
                f"departure: too early to declare; submit no earlier than "
                f"{limits.max_days_before_departure} days before departure, "
                f"i.e. from {format_local(earliest, tz)}",
            )
        )
    return errors


def declaration_deadline(arrival: datetime, limits: Limits = DEFAULT_LIMITS) -> datetime:
    """When a declaration is due: 30 minutes (``intake.min_minutes_before_arrival``) before
    arrival at the control point. Later, it is late and pays a late charge."""
    return arrival - timedelta(minutes=limits.min_minutes_before_arrival)


# --------------------------------------------------------------------------- parties and cargo

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_CONTAINER = TypeAdapter(ContainerNo)


def text_field(
    form: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError]
) -> str:
    value = form.get(key)
    if not isinstance(value, str) or not value.strip():
        errors.append(FieldError(path, f"{path}: missing; {hint}"))
        return ""
    return value.strip()


def _object(
    form: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError]
) -> Mapping[str, Any]:
    value = form.get(key)
    if not isinstance(value, Mapping):
        errors.append(FieldError(path, f"{path}: missing; {hint}"))
        return {}
    return value


def check_address(
    path: str, address: Mapping[str, Any], errors: list[FieldError]
) -> dict[str, str]:
    """Complete address: street, number, district, city, country; a postal code outside Hong Kong."""
    out = {
        "street": text_field(
            address, "street", f"{path}.street", "give the street name, e.g. Canton Road", errors
        ),
        "number": text_field(
            address, "number", f"{path}.number", "give the building or house number, e.g. 3", errors
        ),
        "district": text_field(
            address, "district", f"{path}.district", "give the district, e.g. Tsim Sha Tsui", errors
        ),
        "city": text_field(
            address, "city", f"{path}.city", "give the city, e.g. Hong Kong or Yiwu", errors
        ),
    }
    country = text_field(
        address, "country", f"{path}.country", "give the ISO country code, e.g. HK or CN", errors
    )
    if country and not _COUNTRY.match(country):
        errors.append(
            FieldError(
                f"{path}.country",
                f'{path}.country: "{country}" is not an ISO 3166 country '
                "code; use two capital letters, e.g. HK or CN",
            )
        )
    out["country"] = country
    postal = address.get("postal_code")
    if isinstance(postal, str) and postal.strip():
        out["postal_code"] = postal.strip()
    elif _COUNTRY.match(country) and country != "HK":
        errors.append(
            FieldError(
                f"{path}.postal_code",
                f"{path}.postal_code: missing; addresses outside Hong "
                "Kong need a postal code, e.g. 322000",
            )
        )
    return out


def check_party(path: str, form: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    """A consignor or consignee: name and complete address."""
    role = "consignor (shipper)" if path == "consignor" else "consignee (receiver)"
    party = _object(form, path, path, f"give the {role}: name and address", errors)
    if not party:
        return {}
    name = text_field(party, "name", f"{path}.name", f"give the {role}'s name", errors)
    address = _object(
        party,
        "address",
        f"{path}.address",
        "give street, number, district, city, postal code and country",
        errors,
    )
    return {
        "name": name,
        "address": check_address(f"{path}.address", address, errors) if address else {},
    }


def number_field(
    item: Mapping[str, Any],
    key: str,
    path: str,
    hint: str,
    errors: list[FieldError],
    *,
    positive: bool = True,
    integer: bool = False,
) -> Decimal | None:
    value = item.get(key)
    if value is None or value == "":
        errors.append(FieldError(path, f"{path}: missing; {hint}"))
        return None
    try:
        number = Decimal(str(value)) if not isinstance(value, bool) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        errors.append(FieldError(path, f"{path}: {value!r} is not a number; {hint}"))
        return None
    if abs(number) > MAX_AMOUNT:  # far above any consignment; keeps fees and floats exact
        errors.append(FieldError(path, f"{path}: must be at most {MAX_AMOUNT:,.0f}; {hint}"))
        return None
    if integer and number != number.to_integral_value():
        errors.append(FieldError(path, f"{path}: {value!r} must be a whole number; {hint}"))
        return None
    if number <= 0 if positive else number < 0:
        errors.append(
            FieldError(path, f"{path}: must be {'above' if positive else 'at least'} 0; {hint}")
        )
        return None
    return number


def check_cargo_item(
    path: str, item: Mapping[str, Any], limits: Limits, errors: list[FieldError]
) -> dict[str, Any]:
    """One cargo line: description, packaging, packages, quantity and unit, value and currency, origin."""
    description_errors = check_description(f"{path}.description", item.get("description"))
    errors.extend(description_errors)
    out: dict[str, Any] = {
        "description": " ".join(str(item.get("description") or "").split()),
        "packaging": text_field(
            item,
            "packaging",
            f"{path}.packaging",
            "give the packaging material and type, e.g. corrugated carton",
            errors,
        ),
        "packages": number_field(
            item,
            "packages",
            f"{path}.packages",
            "give the number of packages, e.g. 120",
            errors,
            integer=True,
        ),
        "quantity": number_field(
            item, "quantity", f"{path}.quantity", "give the quantity, e.g. 1200", errors
        ),
        "unit": text_field(
            item,
            "unit",
            f"{path}.unit",
            "give the unit of the quantity, e.g. pcs, kg, pairs",
            errors,
        ),
        "value": number_field(
            item, "value", f"{path}.value", "give the value of this line, e.g. 5400.00", errors
        ),
    }
    currency = text_field(
        item, "currency", f"{path}.currency", "give the currency code, e.g. HKD", errors
    )
    if currency and currency.upper() not in limits.hkd_rates:
        errors.append(
            FieldError(
                f"{path}.currency",
                f'{path}.currency: "{currency}" is not accepted; use one '
                f"of {', '.join(sorted(limits.hkd_rates))}",
            )
        )
    out["currency"] = currency.upper()
    origin = text_field(
        item,
        "origin",
        f"{path}.origin",
        "give the place of origin as an ISO country code, e.g. CN or HK",
        errors,
    )
    if origin and not _COUNTRY.match(origin.upper()):
        errors.append(
            FieldError(
                f"{path}.origin",
                f'{path}.origin: "{origin}" is not an ISO 3166 country code; '
                "use two letters, e.g. CN or HK",
            )
        )
    out["origin"] = origin.upper()
    flag = item.get("garment_or_footwear", False)
    if not isinstance(flag, bool):
        errors.append(
            FieldError(
                f"{path}.garment_or_footwear",
                f"{path}.garment_or_footwear: must be true or false (garments or footwear)",
            )
        )
        flag = False
    out["garment_or_footwear"] = flag
    if not description_errors:  # special goods need a permit of their class's kind
        permits, permit_errors = check_permits(path, out["description"], item.get("permits"))
        errors.extend(permit_errors)
        if permits:
            out["permits"] = permits
    return out


def check_cargo(
    form: Mapping[str, Any], limits: Limits, errors: list[FieldError]
) -> list[dict[str, Any]]:
    """The cargo list: at least one line, each line complete."""
    cargo = form.get("cargo")
    if not isinstance(cargo, list) or not cargo:
        errors.append(
            FieldError(
                "cargo",
                "cargo: missing; list at least one cargo line with description, "
                "packaging, packages, quantity, unit, value, currency and origin",
            )
        )
        return []
    lines = []
    for i, item in enumerate(cargo):
        if not isinstance(item, Mapping):
            errors.append(
                FieldError(
                    f"cargo[{i}]",
                    f"cargo[{i}]: must be an object with description, packaging, "
                    "packages, quantity, unit, value, currency and origin",
                )
            )
            continue
        lines.append(check_cargo_item(f"cargo[{i}]", item, limits, errors))
    return lines


def identifier_field(
    form: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError]
) -> str:
    value = text_field(form, key, path, hint, errors)
    if value and not _ID.match(value):
        errors.append(
            FieldError(
                path,
                f'{path}: "{value}" may hold only letters, digits and . _ : - (up to 64, '
                "starting with a letter or digit)",
            )
        )
    return value


def check_container(path: str, value: Any) -> tuple[str, list[FieldError]]:
    """ISO 6346 container number with its check digit."""
    if not isinstance(value, str) or not value.strip():
        return "", [
            FieldError(
                path, f"{path}: missing; give the ISO 6346 container number, e.g. CSQU3054383"
            )
        ]
    try:
        return _CONTAINER.validate_python(value), []
    except ValidationError as exc:
        detail = exc.errors()[0]["msg"].removeprefix("Value error, ")
        return "", [FieldError(path, f"{path}: {detail}")]
