"""Validation of a declaration form after the Hong Kong road cargo system (ROCARS) rules.

Pure: no I/O except loading the shipped geofences once when no ``places`` are given. Every
rule that fails yields a :class:`FieldError` naming the field (dotted path, e.g.
``cargo[0].description``) with a message the declarant can act on; all errors are reported
at once. The field-level checkers live in :mod:`smartlock.services.intake.fields`.

The eight core data items (see ``docs/intake.md``): consignor name and address, consignee
name and address, description of goods, packaging, number of packages, quantity and unit,
value and currency, departure and arrival times.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from smartlock.contract.models import Mode, TransitDeclaration, normalise_plate
from smartlock.core.declaration import Places, check_contract_declaration, place_errors
from smartlock.services.intake.fees import FeeItem
from smartlock.services.intake.fields import (
    DEFAULT_LIMITS,
    DEFAULT_TZ,
    FieldError,
    Limits,
    check_cargo,
    check_container,
    check_description,
    check_party,
    check_plate,
    check_timing,
    format_local,
    identifier_field,
    number_field,
    parse_local_time,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_TZ",
    "PENDING_ID",
    "Accepted",
    "FieldError",
    "Limits",
    "Places",
    "Refused",
    "bind_errors",
    "check_contract_declaration",
    "check_description",
    "check_plate",
    "default_places",
    "fee_items",
    "parse_local_time",
    "validate_submission",
]

PENDING_ID = "CCRN-PENDING"


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


@lru_cache(maxsize=1)
def default_places() -> Places:
    """The places of the shipped geofences (loaded once)."""
    from smartlock.core.geofence import Geofences, default_geofence_dir

    return Places.from_geofences(Geofences.load(default_geofence_dir()))


# --------------------------------------------------------------------------- transit data


def _containers(
    form: Mapping[str, Any], mode: str, errors: list[FieldError]
) -> list[dict[str, str]]:
    if mode != Mode.RAIL:
        lock = identifier_field(
            form, "lock_id", "lock_id", "give the id of the smart lock on the container", errors
        )
        number, errs = check_container("container_no", form.get("container_no"))
        errors.extend(errs)
        return [{"lock_id": lock, "container_no": number}]
    locks = form.get("locks")
    if not isinstance(locks, list) or not locks:
        errors.append(
            FieldError(
                "locks",
                "locks: missing; a rail declaration lists its containers as "
                '[{"lock_id": ..., "container_no": ...}, ...]',
            )
        )
        return []
    out = []
    for i, entry in enumerate(locks):
        entry = entry if isinstance(entry, Mapping) else {}
        lock = identifier_field(
            entry, "lock_id", f"locks[{i}].lock_id", "give the smart lock id", errors
        )
        number, errs = check_container(f"locks[{i}].container_no", entry.get("container_no"))
        errors.extend(errs)
        out.append({"lock_id": lock, "container_no": number})
    ids = [c["lock_id"] for c in out if c["lock_id"]]
    if len(set(ids)) != len(ids):
        errors.append(FieldError("locks", "locks: a lock id appears twice; list each lock once"))
    return out


def check_route(
    form: Mapping[str, Any], mode: str, places: Places, errors: list[FieldError]
) -> dict[str, str]:
    """Corridor (of the declared mode), origin site and destination gate must exist in the geofences."""
    corridor = identifier_field(
        form, "corridor_id", "corridor_id", "give the approved route corridor", errors
    )
    origin = identifier_field(
        form, "origin_site", "origin_site", "give the origin site zone", errors
    )
    gate = identifier_field(
        form, "destination_gate", "destination_gate", "give the destination gate zone", errors
    )
    errors.extend(e.field_error() for e in place_errors(places, corridor, mode, origin, gate))
    return {"corridor_id": corridor, "origin_site": origin, "destination_gate": gate}


def _mode(form: Mapping[str, Any], errors: list[FieldError]) -> str:
    mode = form.get("mode", "road")
    if mode not in ("road", "rail"):
        errors.append(
            FieldError("mode", f'mode: "{mode}" is not a transport mode; use "road" or "rail"')
        )
        return ""
    return str(mode)


def _vehicle(
    form: Mapping[str, Any], mode: str, errors: list[FieldError]
) -> tuple[str, str | None]:
    if mode == Mode.RAIL:
        train = identifier_field(
            form, "train_id", "train_id", "give the train number, e.g. X9011", errors
        )
        plate = form.get("vehicle_plate")
        return (
            normalise_plate(plate) if isinstance(plate, str) and plate.strip() else train
        ), train
    errs = check_plate("vehicle_plate", form.get("vehicle_plate"))
    errors.extend(errs)
    if form.get("train_id") is not None:
        errors.append(
            FieldError(
                "train_id",
                'train_id: only a rail declaration names a train; remove it or set mode to "rail"',
            )
        )
    return (normalise_plate(form["vehicle_plate"]) if not errs else ""), None


# --------------------------------------------------------------------------- the whole form


def validate_submission(
    form: Mapping[str, Any],
    now: datetime,
    tz: str = DEFAULT_TZ,
    *,
    places: Places | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Accepted | Refused:
    """Checks a declaration form against every rule and normalises it to the contract.

    Args:
        form: the JSON form (see ``docs/intake.md`` and :class:`smartlock.services.intake.forms.DeclarationForm`).
        now: the submission time (timezone-aware; injected so tests are deterministic).
        tz: the zone used to show local times in messages (setting ``intake.timezone``).
        places: the known corridors and zones; default: the shipped geofences.
        limits: the timing limits and the currency table.

    Returns:
        :class:`Accepted` with the contract payload, or :class:`Refused` with every broken rule.
    """
    places = places or default_places()
    if not isinstance(form, Mapping):
        return Refused(
            [FieldError("", "the declaration must be a JSON object; see GET /openapi.json")]
        )
    errors: list[FieldError] = []
    declaration_id = form.get("declaration_id")
    if declaration_id is not None:
        declaration_id = identifier_field(
            form, "declaration_id", "declaration_id", "omit it to use the reference number", errors
        )
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
    return _accept(
        form,
        declaration_id,
        consignor,
        consignee,
        cargo,
        mode,
        plate,
        train,
        containers,
        route,
        departure,
        arrival,
    )


def _accept(
    form: Mapping[str, Any],
    declaration_id: str | None,
    consignor: dict[str, Any],
    consignee: dict[str, Any],
    cargo: list[dict[str, Any]],
    mode: str,
    plate: str,
    train: str | None,
    containers: list[dict[str, str]],
    route: dict[str, str],
    departure: datetime,
    arrival: datetime,
) -> Accepted | Refused:
    payload: dict[str, Any] = {
        "declaration_id": declaration_id or PENDING_ID,
        "lock_id": containers[0]["lock_id"],
        "container_no": containers[0]["container_no"],
        "vehicle_plate": plate,
        "mode": mode,
        **route,
        "departure_ts": departure,
        "eta_ts": arrival,
        "cargo": [
            {
                "description": c["description"],
                "quantity": float(c["quantity"]),
                "unit": c["unit"],
                "value": float(c["value"]),
                "currency": c["currency"],
            }
            for c in cargo
        ],
    }
    if mode == Mode.RAIL:
        payload.update(train_id=train, locks=containers)
    try:
        declaration = TransitDeclaration.model_validate(payload)
    except ValidationError as exc:
        return Refused(
            [
                FieldError(
                    ".".join(str(p) for p in e["loc"]) or "declaration",
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}",
                )
                for e in exc.errors()
            ]
        )
    intake = {
        "consignor": consignor,
        "consignee": consignee,
        "cargo": [
            {
                k: (int(v) if k == "packages" else str(v) if isinstance(v, Decimal) else v)
                for k, v in c.items()
            }
            for c in cargo
        ],
        "departure": str(form["departure"]).strip(),
        "arrival": str(form["arrival"]).strip(),
    }
    return Accepted(declaration, intake, generated_id=declaration_id is None)


def bind_errors(
    record_plate: str,
    plate: Any,
    eta: datetime,
    now: datetime,
    tz: str = DEFAULT_TZ,
    limits: Limits = DEFAULT_LIMITS,
) -> list[FieldError]:
    """Binding rules: the plate matches the declared one (normalised) and it is at least 30
    minutes before arrival at the control point."""
    errors: list[FieldError] = []
    if not isinstance(plate, str) or not plate.strip():
        errors.append(
            FieldError(
                "vehicle_plate",
                "vehicle_plate: missing; give the plate of the vehicle carrying the goods",
            )
        )
    elif normalise_plate(plate) != normalise_plate(record_plate):
        errors.append(
            FieldError(
                "vehicle_plate",
                f'vehicle_plate: "{plate}" does not match the declared plate '
                f"{record_plate}; bind with the declared vehicle or amend the "
                "declaration",
            )
        )
    latest = eta - timedelta(minutes=limits.min_minutes_before_arrival)
    if now > latest:
        errors.append(
            FieldError(
                "arrival",
                f"arrival: too late to bind; the driver binds at least "
                f"{limits.min_minutes_before_arrival} minutes before arrival at the "
                f"control point, i.e. by {format_local(latest, tz)}; declare again with "
                "a later arrival",
            )
        )
    return errors


def fee_items(cargo: Any, limits: Limits = DEFAULT_LIMITS) -> list[FeeItem] | list[FieldError]:
    """The fee view of cargo lines (value, currency, origin, garment_or_footwear), or what is wrong."""
    if not isinstance(cargo, list) or not cargo:
        return [FieldError("cargo", "cargo: missing; list the cargo lines with value and currency")]
    errors: list[FieldError] = []
    items = []
    for i, line in enumerate(cargo):
        line = line if isinstance(line, Mapping) else {}
        value = number_field(
            line, "value", f"cargo[{i}].value", "give the value of this line, e.g. 5400.00", errors
        )
        currency = str(line.get("currency") or "HKD").upper()
        if currency not in limits.hkd_rates:
            errors.append(
                FieldError(
                    f"cargo[{i}].currency",
                    f'cargo[{i}].currency: "{currency}" is not accepted; '
                    f"use one of {', '.join(sorted(limits.hkd_rates))}",
                )
            )
        flag = line.get("garment_or_footwear", False) is True
        if value is not None:
            items.append(FeeItem(value, currency, flag, str(line.get("origin") or "")))
    return errors or items
