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

from pipeline.intake.fees import DEFAULT_HKD_RATES
from pipeline.models import ContainerNo, normalise_plate

DEFAULT_TZ = "Asia/Shanghai"


@dataclass(frozen=True)
class FieldError:
    """One broken rule: the field's dotted path and what to fix (the message starts with the path)."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}



@dataclass(frozen=True)
class Limits:
    """Timing limits (settings ``intake.*``)."""

    max_days_before_departure: int = 14
    min_minutes_before_arrival: int = 30
    hkd_rates: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_HKD_RATES))


DEFAULT_LIMITS = Limits()


# --------------------------------------------------------------------------- cargo descriptions

#: Descriptions that say nothing about what the goods are (whole description, case-insensitive).
VAGUE_WORDS = frozenset({
    "electronics", "electronic", "electronic products", "electronic goods", "electronic equipment",
    "electrical appliances", "electrical appliance", "appliances", "electricals", "food", "foods",
    "foodstuff", "foodstuffs", "goods", "general goods", "general cargo", "cargo", "merchandise",
    "products", "items", "sundries", "daily necessities", "samples", "parts", "spare parts",
    "accessories", "gifts", "clothing", "clothes", "garments", "textiles", "toys", "machinery",
    "equipment", "materials", "commodities", "consumer goods", "household goods", "misc",
    "miscellaneous", "various", "stuff", "freight",
    "电子设备", "电子产品", "电器", "食品", "货物", "商品", "杂货", "日用品", "配件", "样品", "服装",
})
#: Words that, alone or together, say nothing about the goods ("assorted electronic goods").
VAGUE_TOKENS = frozenset(
    w for phrase in VAGUE_WORDS for w in phrase.split() if w.isascii()
) | {"and", "or", "of", "other", "others", "assorted", "mixed", "general", "some", "batch", "lot", "lots",
     "electric", "new", "used", "etc"}
_EXAMPLE = '"Bluetooth earphones, model X12, ABS plastic"'
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[\w%]+", re.UNICODE)


def check_description(path: str, description: Any) -> list[FieldError]:
    """Cargo description rules: present, not vague, specific enough (name, model, material).

    Vague: the whole description is a vague word (:data:`VAGUE_WORDS`), or every word of it is
    a vague or filler word ("assorted electronic goods"). Specific enough: three words or more,
    or two when one carries a model number ("iPhone 15"); CJK characters count as words.
    """
    if not isinstance(description, str) or not description.strip():
        return [FieldError(path, f"{path}: missing; describe the goods by name, model and material, e.g. {_EXAMPLE}")]
    text = " ".join(description.split())
    bare = re.sub(r"[^\w\s]", "", text.lower()).strip()
    tokens = re.findall(r"[a-z0-9]+", bare)
    if bare in VAGUE_WORDS or (tokens and not _CJK.search(text) and all(t in VAGUE_TOKENS for t in tokens)):
        return [FieldError(path, f'{path}: "{text}" is too vague; say what the goods are: name, model and '
                                 f"material, e.g. {_EXAMPLE}")]
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(text)) if not cjk else cjk + len(re.findall(r"[A-Za-z0-9]+", text))
    if words < 2 or (words == 2 and not re.search(r"\d", text)):
        return [FieldError(path, f'{path}: "{text}" is not specific enough; give at least the name and the model '
                                 f"or material (a model number, or three words or more), e.g. {_EXAMPLE}")]
    return []


# --------------------------------------------------------------------------- vehicle plates

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_LETTER = "A-HJ-NP-Z"  # no I or O on plates
MAINLAND_PLATE = re.compile(rf"^[{_PROVINCES}][{_LETTER}](?:[{_LETTER}0-9]{{5,6}}|[{_LETTER}0-9]{{4}}[港澳])$")
HONG_KONG_PLATE = re.compile(r"^[A-HJ-NPR-Z]{1,2}[1-9][0-9]{0,3}$")


def check_plate(path: str, plate: Any) -> list[FieldError]:
    """Plate format: a mainland plate (浙G12345, new-energy 浙GD12345, cross-border 粤Z1234港)
    or a Hong Kong plate (AB1234)."""
    if not isinstance(plate, str) or not plate.strip():
        return [FieldError(path, f"{path}: missing; give the vehicle plate, e.g. 浙G12345 or AB1234")]
    norm = normalise_plate(plate)
    if MAINLAND_PLATE.match(norm) or HONG_KONG_PLATE.match(norm):
        return []
    return [FieldError(path, f'{path}: "{plate}" is not a vehicle plate; use a mainland plate (province '
                             "character, letter, 5 letters or digits, e.g. 浙G12345; new-energy 6, e.g. "
                             "浙GD12345) or a Hong Kong plate (1-2 letters and 1-4 digits, e.g. AB1234)")]


# --------------------------------------------------------------------------- times

_LOCAL_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2})(?::\d{2}(?:\.\d+)?)?(?: (\S+))?$")
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
        return FieldError(path, f'{path}: "{text}" has seconds; give the time to the minute: {_format_hint(tz)}')
    zone = m.group(6)
    if zone is None:
        return FieldError(path, f'{path}: "{text}" has no time zone; {_format_hint(tz)}')
    tzinfo = _zone(zone)
    if tzinfo is None:
        return FieldError(path, f'{path}: "{zone}" is not a time zone; use an offset such as +08:00 or an '
                                f"IANA name such as {tz}")
    try:
        year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
        local = datetime(year, month, day, hour, minute)
    except ValueError:
        return FieldError(path, f'{path}: "{text}" is not a valid date and time; {_format_hint(tz)}')
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


def check_timing(departure: datetime, arrival: datetime, now: datetime, tz: str = DEFAULT_TZ,
                 limits: Limits = DEFAULT_LIMITS) -> list[FieldError]:
    """Submission window: no earlier than 14 days before departure, no later than 30 minutes
    before arrival at the control point; arrival after departure."""
    errors = []
    if arrival <= departure:
        errors.append(FieldError("arrival", "arrival: must be after departure; give the expected arrival at the "
                                            "control point"))
    earliest = departure - timedelta(days=limits.max_days_before_departure)
    if now < earliest:
        errors.append(FieldError("departure", f"departure: too early to declare; submit no earlier than "
                                              f"{limits.max_days_before_departure} days before departure, "
                                              f"i.e. from {format_local(earliest, tz)}"))
    latest = arrival - timedelta(minutes=limits.min_minutes_before_arrival)
    if now > latest:
        errors.append(FieldError("arrival", f"arrival: too late to declare; submit at least "
                                            f"{limits.min_minutes_before_arrival} minutes before arrival at the "
                                            f"control point, i.e. by {format_local(latest, tz)}"))
    return errors


# --------------------------------------------------------------------------- parties and cargo

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_CONTAINER = TypeAdapter(ContainerNo)


def text_field(form: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError]) -> str:
    value = form.get(key)
    if not isinstance(value, str) or not value.strip():
        errors.append(FieldError(path, f"{path}: missing; {hint}"))
        return ""
    return value.strip()


def _object(form: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError]) -> Mapping[str, Any]:
    value = form.get(key)
    if not isinstance(value, Mapping):
        errors.append(FieldError(path, f"{path}: missing; {hint}"))
        return {}
    return value


def check_address(path: str, address: Mapping[str, Any], errors: list[FieldError]) -> dict[str, str]:
    """Complete address: street, number, district, city, country; a postal code outside Hong Kong."""
    out = {
        "street": text_field(address, "street", f"{path}.street", "give the street name, e.g. Canton Road", errors),
        "number": text_field(address, "number", f"{path}.number", "give the building or house number, e.g. 3", errors),
        "district": text_field(address, "district", f"{path}.district", "give the district, e.g. Tsim Sha Tsui",
                          errors),
        "city": text_field(address, "city", f"{path}.city", "give the city, e.g. Hong Kong or Yiwu", errors),
    }
    country = text_field(address, "country", f"{path}.country", "give the ISO country code, e.g. HK or CN", errors)
    if country and not _COUNTRY.match(country):
        errors.append(FieldError(f"{path}.country", f'{path}.country: "{country}" is not an ISO 3166 country '
                                                    "code; use two capital letters, e.g. HK or CN"))
    out["country"] = country
    postal = address.get("postal_code")
    if isinstance(postal, str) and postal.strip():
        out["postal_code"] = postal.strip()
    elif _COUNTRY.match(country) and country != "HK":
        errors.append(FieldError(f"{path}.postal_code", f"{path}.postal_code: missing; addresses outside Hong "
                                                        "Kong need a postal code, e.g. 322000"))
    return out


def check_party(path: str, form: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    """A consignor or consignee: name and complete address."""
    role = "consignor (shipper)" if path == "consignor" else "consignee (receiver)"
    party = _object(form, path, path, f"give the {role}: name and address", errors)
    if not party:
        return {}
    name = text_field(party, "name", f"{path}.name", f"give the {role}'s name", errors)
    address = _object(party, "address", f"{path}.address",
                      "give street, number, district, city, postal code and country", errors)
    return {"name": name, "address": check_address(f"{path}.address", address, errors) if address else {}}


def number_field(item: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError],
            *, positive: bool = True, integer: bool = False) -> Decimal | None:
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
    if integer and number != number.to_integral_value():
        errors.append(FieldError(path, f"{path}: {value!r} must be a whole number; {hint}"))
        return None
    if number <= 0 if positive else number < 0:
        errors.append(FieldError(path, f"{path}: must be {'above' if positive else 'at least'} 0; {hint}"))
        return None
    return number


def check_cargo_item(path: str, item: Mapping[str, Any], limits: Limits, errors: list[FieldError]) -> dict[str, Any]:
    """One cargo line: description, packaging, packages, quantity and unit, value and currency, origin."""
    errors.extend(check_description(f"{path}.description", item.get("description")))
    out: dict[str, Any] = {
        "description": " ".join(str(item.get("description") or "").split()),
        "packaging": text_field(item, "packaging", f"{path}.packaging",
                           "give the packaging material and type, e.g. corrugated carton", errors),
        "packages": number_field(item, "packages", f"{path}.packages",
                            "give the number of packages, e.g. 120", errors, integer=True),
        "quantity": number_field(item, "quantity", f"{path}.quantity", "give the quantity, e.g. 1200", errors),
        "unit": text_field(item, "unit", f"{path}.unit", "give the unit of the quantity, e.g. pcs, kg, pairs", errors),
        "value": number_field(item, "value", f"{path}.value", "give the value of this line, e.g. 5400.00", errors),
    }
    currency = text_field(item, "currency", f"{path}.currency", "give the currency code, e.g. HKD", errors)
    if currency and currency.upper() not in limits.hkd_rates:
        errors.append(FieldError(f"{path}.currency", f'{path}.currency: "{currency}" is not accepted; use one '
                                                     f"of {', '.join(sorted(limits.hkd_rates))}"))
    out["currency"] = currency.upper()
    origin = text_field(item, "origin", f"{path}.origin", "give the place of origin as an ISO country code, e.g. CN "
                   "or HK", errors)
    if origin and not _COUNTRY.match(origin.upper()):
        errors.append(FieldError(f"{path}.origin", f'{path}.origin: "{origin}" is not an ISO 3166 country code; '
                                                   "use two letters, e.g. CN or HK"))
    out["origin"] = origin.upper()
    flag = item.get("garment_or_footwear", False)
    if not isinstance(flag, bool):
        errors.append(FieldError(f"{path}.garment_or_footwear", f"{path}.garment_or_footwear: must be true or "
                                                                "false (garments or footwear)"))
        flag = False
    out["garment_or_footwear"] = flag
    return out


def check_cargo(form: Mapping[str, Any], limits: Limits, errors: list[FieldError]) -> list[dict[str, Any]]:
    """The cargo list: at least one line, each line complete."""
    cargo = form.get("cargo")
    if not isinstance(cargo, list) or not cargo:
        errors.append(FieldError("cargo", "cargo: missing; list at least one cargo line with description, "
                                          "packaging, packages, quantity, unit, value, currency and origin"))
        return []
    lines = []
    for i, item in enumerate(cargo):
        if not isinstance(item, Mapping):
            errors.append(FieldError(f"cargo[{i}]", f"cargo[{i}]: must be an object with description, packaging, "
                                                    "packages, quantity, unit, value, currency and origin"))
            continue
        lines.append(check_cargo_item(f"cargo[{i}]", item, limits, errors))
    return lines


def identifier_field(form: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError]) -> str:
    value = text_field(form, key, path, hint, errors)
    if value and not _ID.match(value):
        errors.append(FieldError(path, f'{path}: "{value}" may hold only letters, digits and . _ : - (up to 64, '
                                       "starting with a letter or digit)"))
    return value


def check_container(path: str, value: Any) -> tuple[str, list[FieldError]]:
    """ISO 6346 container number with its check digit."""
    if not isinstance(value, str) or not value.strip():
        return "", [FieldError(path, f"{path}: missing; give the ISO 6346 container number, e.g. CSQU3054383")]
    try:
        return _CONTAINER.validate_python(value), []
    except ValidationError as exc:
        detail = exc.errors()[0]["msg"].removeprefix("Value error, ")
        return "", [FieldError(path, f"{path}: {detail}")]
