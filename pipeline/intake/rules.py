"""Validation of a declaration form after the Hong Kong road cargo system (ROCARS) rules.

Pure: no I/O except loading the shipped geofences once when no ``places`` are given. Every
rule that fails yields a :class:`FieldError` naming the field (dotted path, e.g.
``cargo[0].description``) with a message the declarant can act on; all errors are reported
at once.

The eight core data items (see ``docs/intake.md``): consignor name and address, consignee
name and address, description of goods, packaging, number of packages, quantity and unit,
value and currency, departure and arrival times.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError

from pipeline.intake.fees import DEFAULT_HKD_RATES, FeeItem
from pipeline.models import ContainerNo, Mode, TransitDeclaration, normalise_plate

DEFAULT_TZ = "Asia/Shanghai"
PENDING_ID = "CCRN-PENDING"


@dataclass(frozen=True)
class FieldError:
    """One broken rule: the field's dotted path and what to fix (the message starts with the path)."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class Accepted:
    """A form that passed every rule.

    Attributes:
        declaration: the normalised contract payload (RFC 3339 UTC times). When the form had no
            ``declaration_id`` it holds :data:`PENDING_ID` until :meth:`with_reference`.
        intake: intake-only data (consignor, consignee, packaging, origin, local times).
        generated_id: the declaration id is to be the reference number.
    """

    declaration: TransitDeclaration
    intake: dict[str, Any]
    generated_id: bool = False

    def with_reference(self, reference: str) -> Accepted:
        """The same acceptance with the declaration id filled from the reference when generated."""
        if not self.generated_id:
            return self
        decl = self.declaration.model_copy(update={"declaration_id": reference})
        return Accepted(decl, self.intake, False)


@dataclass(frozen=True)
class Refused:
    """A form that broke at least one rule; ``errors`` lists every one."""

    errors: list[FieldError]


@dataclass(frozen=True)
class Limits:
    """Timing limits (settings ``intake.*``)."""

    max_days_before_departure: int = 14
    min_minutes_before_arrival: int = 30
    hkd_rates: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_HKD_RATES))


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Places:
    """The corridor and zone ids a declaration may name (from the geofences)."""

    corridors: Mapping[str, str]  # id -> mode
    origin_sites: frozenset[str]
    destination_gates: frozenset[str]

    @classmethod
    def from_geofences(cls, geofences: Any) -> Places:
        """Builds the catalogue from a loaded :class:`pipeline.geofence.Geofences`."""
        zones = geofences.zones.values()
        return cls(
            corridors={c.id: c.mode for c in geofences.corridors.values()},
            origin_sites=frozenset(z.id for z in zones if z.role == "origin_site"),
            destination_gates=frozenset(z.id for z in zones if z.role == "destination_gate"),
        )


@lru_cache(maxsize=1)
def default_places() -> Places:
    """The places of the shipped geofences (loaded once)."""
    from pipeline.geofence import Geofences, default_geofence_dir

    return Places.from_geofences(Geofences.load(default_geofence_dir()))


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
_EXAMPLE = '"Bluetooth earphones, model X12, ABS plastic"'
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[\w%]+", re.UNICODE)


def check_description(path: str, description: Any) -> list[FieldError]:
    """Cargo description rules: present, not a vague word, specific enough (name, model, material)."""
    if not isinstance(description, str) or not description.strip():
        return [FieldError(path, f"{path}: missing; describe the goods by name, model and material, e.g. {_EXAMPLE}")]
    text = " ".join(description.split())
    bare = re.sub(r"[^\w\s]", "", text.lower()).strip()
    if bare in VAGUE_WORDS:
        return [FieldError(path, f'{path}: "{text}" is too vague; say what the goods are: name, model and '
                                 f"material, e.g. {_EXAMPLE}")]
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(text)) if not cjk else cjk + len(re.findall(r"[A-Za-z0-9]+", text))
    if words < 3:
        return [FieldError(path, f'{path}: "{text}" is not specific enough; give at least the name and the model '
                                 f"or material (three words or more), e.g. {_EXAMPLE}")]
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
        local = datetime(*(int(m.group(i)) for i in range(1, 6)))  # type: ignore[misc]
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


def _local(ts: datetime, tz: str) -> str:
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
                                              f"i.e. from {_local(earliest, tz)}"))
    latest = arrival - timedelta(minutes=limits.min_minutes_before_arrival)
    if now > latest:
        errors.append(FieldError("arrival", f"arrival: too late to declare; submit at least "
                                            f"{limits.min_minutes_before_arrival} minutes before arrival at the "
                                            f"control point, i.e. by {_local(latest, tz)}"))
    return errors


# --------------------------------------------------------------------------- parties and cargo

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_CONTAINER = TypeAdapter(ContainerNo)


def _text(form: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError]) -> str:
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
        "street": _text(address, "street", f"{path}.street", "give the street name, e.g. Canton Road", errors),
        "number": _text(address, "number", f"{path}.number", "give the building or house number, e.g. 3", errors),
        "district": _text(address, "district", f"{path}.district", "give the district, e.g. Tsim Sha Tsui",
                          errors),
        "city": _text(address, "city", f"{path}.city", "give the city, e.g. Hong Kong or Yiwu", errors),
    }
    country = _text(address, "country", f"{path}.country", "give the ISO country code, e.g. HK or CN", errors)
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
    name = _text(party, "name", f"{path}.name", f"give the {role}'s name", errors)
    address = _object(party, "address", f"{path}.address",
                      "give street, number, district, city, postal code and country", errors)
    return {"name": name, "address": check_address(f"{path}.address", address, errors) if address else {}}


def _number(item: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError],
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
        "packaging": _text(item, "packaging", f"{path}.packaging",
                           "give the packaging material and type, e.g. corrugated carton", errors),
        "packages": _number(item, "packages", f"{path}.packages",
                            "give the number of packages, e.g. 120", errors, integer=True),
        "quantity": _number(item, "quantity", f"{path}.quantity", "give the quantity, e.g. 1200", errors),
        "unit": _text(item, "unit", f"{path}.unit", "give the unit of the quantity, e.g. pcs, kg, pairs", errors),
        "value": _number(item, "value", f"{path}.value", "give the value of this line, e.g. 5400.00", errors),
    }
    currency = _text(item, "currency", f"{path}.currency", "give the currency code, e.g. HKD", errors)
    if currency and currency.upper() not in limits.hkd_rates:
        errors.append(FieldError(f"{path}.currency", f'{path}.currency: "{currency}" is not accepted; use one '
                                                     f"of {', '.join(sorted(limits.hkd_rates))}"))
    out["currency"] = currency.upper()
    origin = _text(item, "origin", f"{path}.origin", "give the place of origin as an ISO country code, e.g. CN "
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


# --------------------------------------------------------------------------- transit data


def _identifier(form: Mapping[str, Any], key: str, path: str, hint: str, errors: list[FieldError]) -> str:
    value = _text(form, key, path, hint, errors)
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


def _containers(form: Mapping[str, Any], mode: str, errors: list[FieldError]) -> list[dict[str, str]]:
    if mode != Mode.RAIL:
        lock = _identifier(form, "lock_id", "lock_id", "give the id of the smart lock on the container", errors)
        number, errs = check_container("container_no", form.get("container_no"))
        errors.extend(errs)
        return [{"lock_id": lock, "container_no": number}]
    locks = form.get("locks")
    if not isinstance(locks, list) or not locks:
        errors.append(FieldError("locks", "locks: missing; a rail declaration lists its containers as "
                                          '[{"lock_id": ..., "container_no": ...}, ...]'))
        return []
    out = []
    for i, entry in enumerate(locks):
        entry = entry if isinstance(entry, Mapping) else {}
        lock = _identifier(entry, "lock_id", f"locks[{i}].lock_id", "give the smart lock id", errors)
        number, errs = check_container(f"locks[{i}].container_no", entry.get("container_no"))
        errors.extend(errs)
        out.append({"lock_id": lock, "container_no": number})
    ids = [c["lock_id"] for c in out if c["lock_id"]]
    if len(set(ids)) != len(ids):
        errors.append(FieldError("locks", "locks: a lock id appears twice; list each lock once"))
    return out


def check_route(form: Mapping[str, Any], mode: str, places: Places, errors: list[FieldError]) -> dict[str, str]:
    """Corridor (of the declared mode), origin site and destination gate must exist in the geofences."""
    corridor = _identifier(form, "corridor_id", "corridor_id", "give the approved route corridor", errors)
    origin = _identifier(form, "origin_site", "origin_site", "give the origin site zone", errors)
    gate = _identifier(form, "destination_gate", "destination_gate", "give the destination gate zone", errors)
    if corridor and corridor not in places.corridors:
        errors.append(FieldError("corridor_id", f'corridor_id: "{corridor}" is not a known corridor; use one of '
                                                f"{', '.join(sorted(places.corridors))}"))
    elif corridor and mode in (Mode.ROAD, Mode.RAIL) and places.corridors[corridor] != mode:
        fitting = sorted(c for c, m in places.corridors.items() if m == mode)
        errors.append(FieldError("corridor_id", f'corridor_id: "{corridor}" is a {places.corridors[corridor]} '
                                                f"corridor but the declaration is {mode}; use one of "
                                                f"{', '.join(fitting)}"))
    if origin and origin not in places.origin_sites:
        errors.append(FieldError("origin_site", f'origin_site: "{origin}" is not a known origin site; use one of '
                                                f"{', '.join(sorted(places.origin_sites))}"))
    if gate and gate not in places.destination_gates:
        errors.append(FieldError("destination_gate", f'destination_gate: "{gate}" is not a known destination '
                                                     f"gate; use one of {', '.join(sorted(places.destination_gates))}"))
    return {"corridor_id": corridor, "origin_site": origin, "destination_gate": gate}


def _mode(form: Mapping[str, Any], errors: list[FieldError]) -> str:
    mode = form.get("mode", "road")
    if mode not in ("road", "rail"):
        errors.append(FieldError("mode", f'mode: "{mode}" is not a transport mode; use "road" or "rail"'))
        return ""
    return str(mode)


def _vehicle(form: Mapping[str, Any], mode: str, errors: list[FieldError]) -> tuple[str, str | None]:
    if mode == Mode.RAIL:
        train = _identifier(form, "train_id", "train_id", "give the train number, e.g. X9011", errors)
        plate = form.get("vehicle_plate")
        return (normalise_plate(plate) if isinstance(plate, str) and plate.strip() else train), train
    errs = check_plate("vehicle_plate", form.get("vehicle_plate"))
    errors.extend(errs)
    if form.get("train_id") is not None:
        errors.append(FieldError("train_id", "train_id: only a rail declaration names a train; remove it or set "
                                             'mode to "rail"'))
    return (normalise_plate(form["vehicle_plate"]) if not errs else ""), None


# --------------------------------------------------------------------------- the whole form


def validate_submission(form: Mapping[str, Any], now: datetime, tz: str = DEFAULT_TZ, *,
                        places: Places | None = None, limits: Limits = DEFAULT_LIMITS) -> Accepted | Refused:
    """Checks a declaration form against every rule and normalises it to the contract.

    Args:
        form: the JSON form (see ``docs/intake.md`` and :class:`pipeline.intake.forms.DeclarationForm`).
        now: the submission time (timezone-aware; injected so tests are deterministic).
        tz: the zone used to show local times in messages (setting ``intake.timezone``).
        places: the known corridors and zones; default: the shipped geofences.
        limits: the timing limits and the currency table.

    Returns:
        :class:`Accepted` with the contract payload, or :class:`Refused` with every broken rule.
    """
    places = places or default_places()
    if not isinstance(form, Mapping):
        return Refused([FieldError("", "the declaration must be a JSON object; see GET /openapi.json")])
    errors: list[FieldError] = []
    declaration_id = form.get("declaration_id")
    if declaration_id is not None:
        declaration_id = _identifier(form, "declaration_id", "declaration_id", "omit it to use the reference "
                                     "number", errors)
    consignor = check_party("consignor", form, errors)
    consignee = check_party("consignee", form, errors)
    cargo = check_cargo(form, limits, errors)
    mode = _mode(form, errors)
    plate, train = _vehicle(form, mode, errors) if mode else ("", None)
    containers = _containers(form, mode, errors) if mode else []
    route = check_route(form, mode, places, errors)
    departure = parse_local_time("departure", form.get("departure"), tz)
    arrival = parse_local_time("arrival", form.get("arrival"), tz)
    for ts in (departure, arrival):
        if isinstance(ts, FieldError):
            errors.append(ts)
    if isinstance(departure, datetime) and isinstance(arrival, datetime):
        errors.extend(check_timing(departure, arrival, now, tz, limits))
    if errors:
        return Refused(errors)
    assert isinstance(departure, datetime) and isinstance(arrival, datetime)
    return _accept(form, declaration_id, consignor, consignee, cargo, mode, plate, train, containers, route,
                   departure, arrival)


def _accept(form: Mapping[str, Any], declaration_id: str | None, consignor: dict[str, Any],
            consignee: dict[str, Any], cargo: list[dict[str, Any]], mode: str, plate: str, train: str | None,
            containers: list[dict[str, str]], route: dict[str, str], departure: datetime,
            arrival: datetime) -> Accepted | Refused:
    payload: dict[str, Any] = {
        "declaration_id": declaration_id or PENDING_ID,
        "lock_id": containers[0]["lock_id"],
        "container_no": containers[0]["container_no"],
        "vehicle_plate": plate,
        "mode": mode,
        **route,
        "departure_ts": departure,
        "eta_ts": arrival,
        "cargo": [{"description": c["description"], "quantity": float(c["quantity"]), "unit": c["unit"],
                   "value": float(c["value"]), "currency": c["currency"]} for c in cargo],
    }
    if mode == Mode.RAIL:
        payload.update(train_id=train, locks=containers)
    try:
        declaration = TransitDeclaration.model_validate(payload)
    except ValidationError as exc:
        return Refused([FieldError(".".join(str(p) for p in e["loc"]) or "declaration",
                                   f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}") for e in exc.errors()])
    intake = {
        "consignor": consignor,
        "consignee": consignee,
        "cargo": [{k: (int(v) if k == "packages" else str(v) if isinstance(v, Decimal) else v)
                   for k, v in c.items()} for c in cargo],
        "departure": str(form["departure"]).strip(),
        "arrival": str(form["arrival"]).strip(),
    }
    return Accepted(declaration, intake, generated_id=declaration_id is None)


# --------------------------------------------------------------------------- contract payloads


def check_contract_declaration(decl: TransitDeclaration) -> list[FieldError]:
    """The Hong Kong rules that apply to a contract payload (``customs/declarations``).

    Cargo descriptions must be specific, cargo lines complete (a unit that is not blank, a
    positive value), and a road declaration's plate must be a mainland or Hong Kong plate.
    The pipeline may dead-letter a declaration for which this returns errors.
    """
    errors: list[FieldError] = []
    for i, item in enumerate(decl.cargo):
        errors.extend(check_description(f"cargo[{i}].description", item.description))
        if not item.unit.strip():
            errors.append(FieldError(f"cargo[{i}].unit", f"cargo[{i}].unit: missing; give the unit, e.g. pcs"))
        if item.value <= 0:
            errors.append(FieldError(f"cargo[{i}].value", f"cargo[{i}].value: must be above 0; declare the "
                                                          "value of the goods"))
    if decl.mode is Mode.ROAD:
        errors.extend(check_plate("vehicle_plate", decl.vehicle_plate))
    return errors


def bind_errors(record_plate: str, plate: Any, eta: datetime, now: datetime, tz: str = DEFAULT_TZ,
                limits: Limits = DEFAULT_LIMITS) -> list[FieldError]:
    """Binding rules: the plate matches the declared one (normalised) and it is at least 30
    minutes before arrival at the control point."""
    errors: list[FieldError] = []
    if not isinstance(plate, str) or not plate.strip():
        errors.append(FieldError("vehicle_plate", "vehicle_plate: missing; give the plate of the vehicle "
                                                  "carrying the goods"))
    elif normalise_plate(plate) != normalise_plate(record_plate):
        errors.append(FieldError("vehicle_plate", f'vehicle_plate: "{plate}" does not match the declared plate '
                                                  f"{record_plate}; bind with the declared vehicle or amend the "
                                                  "declaration"))
    latest = eta - timedelta(minutes=limits.min_minutes_before_arrival)
    if now > latest:
        errors.append(FieldError("arrival", f"arrival: too late to bind; the driver binds at least "
                                            f"{limits.min_minutes_before_arrival} minutes before arrival at the "
                                            f"control point, i.e. by {_local(latest, tz)}; declare again with "
                                            "a later arrival"))
    return errors


def iter_messages(errors: Iterable[FieldError]) -> list[str]:
    """The messages of ``errors``, in order (for printing)."""
    return [e.message for e in errors]


Clock = Callable[[], datetime]


def fee_items(cargo: Any, limits: Limits = DEFAULT_LIMITS) -> list[FeeItem] | list[FieldError]:
    """The fee view of cargo lines (value, currency, origin, garment_or_footwear), or what is wrong."""
    if not isinstance(cargo, list) or not cargo:
        return [FieldError("cargo", "cargo: missing; list the cargo lines with value and currency")]
    errors: list[FieldError] = []
    items = []
    for i, line in enumerate(cargo):
        line = line if isinstance(line, Mapping) else {}
        value = _number(line, "value", f"cargo[{i}].value", "give the value of this line, e.g. 5400.00", errors)
        currency = str(line.get("currency") or "HKD").upper()
        if currency not in limits.hkd_rates:
            errors.append(FieldError(f"cargo[{i}].currency", f'cargo[{i}].currency: "{currency}" is not accepted; '
                                                             f"use one of {', '.join(sorted(limits.hkd_rates))}"))
        flag = line.get("garment_or_footwear", False) is True
        if value is not None:
            items.append(FeeItem(value, currency, flag, str(line.get("origin") or "")))
    return errors or items
