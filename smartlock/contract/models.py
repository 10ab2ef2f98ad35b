"""Payload models for every message of CONTRACT section 2.

These are the types at the boundary: raw bytes become one of these models in exactly one
place per transport (:func:`parse_inbound`), and anything that fails validation becomes a
dead letter there. Models are strict and frozen:

* timestamps are RFC 3339 in UTC and must end in ``Z`` or ``+00:00``;
* latitude and longitude are range-checked;
* ISO 6346 container numbers have their check digit verified;
* ``seq`` is a non-negative integer (booleans and floats are refused);
* unknown fields are refused on inbound payloads (``extra="forbid"``): a lock or gate that
  sends a field the contract does not define gets a dead letter naming the field, rather
  than having data silently dropped. Outbound models forbid them too, so the published
  schema is exact.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    field_validator,
    model_validator,
)

# format_ts and format_epoch are re-exported: the timestamp form of every payload.
from smartlock.contract.timestamps import format_epoch, format_ts, parse_utc  # noqa: F401

# --------------------------------------------------------------------------- helpers

UtcTimestamp = Annotated[datetime, BeforeValidator(parse_utc)]
#: Largest ``seq`` (CONTRACT section 7): every value is exact as a JSON number anywhere.
MAX_SEQ = 2**53 - 1

# Numbers are taken literally (CONTRACT section 7): Strict() refuses "29.3" and true.
Latitude = Annotated[float, Strict(), Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Strict(), Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
Seq = Annotated[StrictInt, Field(ge=0, le=MAX_SEQ)]
Identifier = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]

_ISO6346 = re.compile(r"^[A-Z]{3}[UJZ][0-9]{7}$")


def iso6346_check_digit(first_ten: str) -> int:
    """Returns the ISO 6346 check digit for the owner code, category and serial number.

    Args:
        first_ten: the first ten characters of a container number, e.g. ``CSQU305438``.
    """
    total = 0
    for i, ch in enumerate(first_ten):
        if ch.isdigit():
            value = int(ch)
        else:
            value = ord(ch) - ord("A") + 10
            # Values that are multiples of 11 are skipped in the ISO 6346 letter table.
            value += (value - 1) // 10
        total += value * (2**i)
    return total % 11 % 10


def _check_container_no(value: str) -> str:
    value = value.strip().upper().replace(" ", "")
    if not _ISO6346.match(value):
        raise ValueError(
            f"container number {value!r} is not ISO 6346 (3-letter owner code, category U/J/Z, "
            "6-digit serial, check digit), e.g. CSQU3054383"
        )
    expected = iso6346_check_digit(value[:10])
    if int(value[10]) != expected:
        raise ValueError(
            f"container number {value!r} has check digit {value[10]}, expected {expected}"
        )
    return value


ContainerNo = Annotated[str, AfterValidator(_check_container_no)]


def normalise_plate(plate: str) -> str:
    """Normalises a vehicle plate for comparison: upper case, no spaces, dots or hyphens."""
    return re.sub(r"[\s.\-·]", "", plate).upper()


VehiclePlate = Annotated[str, Field(min_length=2, max_length=16)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    def to_payload(self) -> dict[str, Any]:
        """Returns the JSON-ready payload (timestamps as RFC 3339 ``Z`` strings, no ``None`` optionals)."""
        data = self.model_dump(mode="python", exclude_none=True)
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    return value


# --------------------------------------------------------------------------- enums


class Mode(StrEnum):
    ROAD = "road"
    RAIL = "rail"


class SealState(StrEnum):
    SEALED = "sealed"
    UNSEALED = "unsealed"
    TAMPERED = "tampered"


class LockEventType(StrEnum):
    SEALED = "sealed"
    UNSEALED = "unsealed"
    TAMPER = "tamper"
    LOW_BATTERY = "low_battery"


class Verdict(StrEnum):
    RELEASE = "release"
    INSPECT = "inspect"


class Severity(StrEnum):
    RED = "red"
    AMBER = "amber"
    INFO = "info"


class AlertType(StrEnum):
    ROUTE_DEVIATION = "route_deviation"
    ROUTE_REJOINED = "route_rejoined"
    SEAL_BREACH = "seal_breach"
    UNAUTHORIZED_STOP = "unauthorized_stop"
    SIGNAL_LOST = "signal_lost"
    IMPLAUSIBLE_JUMP = "implausible_jump"
    OVERDUE = "overdue"
    LOW_BATTERY = "low_battery"
    UNKNOWN_LOCK = "unknown_lock"


#: Severity of each alert type (CONTRACT section 3).
SEVERITY: dict[AlertType, Severity] = {
    AlertType.ROUTE_DEVIATION: Severity.RED,
    AlertType.ROUTE_REJOINED: Severity.INFO,
    AlertType.SEAL_BREACH: Severity.RED,
    AlertType.UNAUTHORIZED_STOP: Severity.AMBER,
    AlertType.SIGNAL_LOST: Severity.AMBER,
    AlertType.IMPLAUSIBLE_JUMP: Severity.AMBER,
    AlertType.OVERDUE: Severity.AMBER,
    AlertType.LOW_BATTERY: Severity.INFO,
    AlertType.UNKNOWN_LOCK: Severity.AMBER,
}


class TripState(StrEnum):
    DECLARED = "declared"
    SEALED = "sealed"
    IN_TRANSIT = "in_transit"
    DEVIATING = "deviating"
    ARRIVED = "arrived"
    RELEASED = "released"
    INSPECT = "inspect"
    CLOSED = "closed"


class Colour(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


# --------------------------------------------------------------------------- inbound


#: Largest cargo quantity or value accepted (a trillion): far above any real consignment,
#: far below where floats lose whole units.
MAX_AMOUNT = 1e12


class CargoItem(_Strict):
    description: str = Field(min_length=1, max_length=512)
    quantity: Annotated[float, Strict()] = Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False)
    unit: str = Field(min_length=1, max_length=32)
    value: Annotated[float, Strict()] = Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class RailContainer(_Strict):
    """One container of a rail declaration: its lock and its ISO 6346 number."""

    lock_id: Identifier
    container_no: ContainerNo


class TransitDeclaration(_Strict):
    """A transit declaration (``customs/declarations``).

    A road declaration binds one lock and one container. A rail declaration may bind
    several containers and locks to one train (``train_id`` and ``locks``); its top-level
    ``lock_id`` and ``container_no`` are then the first entry of ``locks``.
    """

    declaration_id: Identifier
    lock_id: Identifier
    container_no: ContainerNo
    vehicle_plate: VehiclePlate
    mode: Mode
    corridor_id: Identifier
    origin_site: Identifier
    destination_gate: Identifier
    departure_ts: UtcTimestamp
    eta_ts: UtcTimestamp
    cargo: list[CargoItem] = Field(min_length=1)
    train_id: Identifier | None = None
    locks: list[RailContainer] | None = None

    @model_validator(mode="after")
    def _check(self) -> TransitDeclaration:
        if self.eta_ts <= self.departure_ts:
            raise ValueError("eta_ts must be after departure_ts")
        if self.locks is not None:
            if self.mode is not Mode.RAIL:
                raise ValueError("only a rail declaration may bind several locks ('locks')")
            ids = [c.lock_id for c in self.locks]
            if len(set(ids)) != len(ids):
                raise ValueError("a lock appears twice in 'locks'")
            if self.lock_id not in ids:
                raise ValueError("lock_id must be one of the locks listed in 'locks'")
        if self.train_id is not None and self.mode is not Mode.RAIL:
            raise ValueError("train_id is only allowed on a rail declaration")
        return self

    def bound_locks(self) -> list[RailContainer]:
        """Every (lock, container) pair this declaration binds."""
        if self.locks:
            return list(self.locks)
        return [RailContainer(lock_id=self.lock_id, container_no=self.container_no)]


class LockTelemetry(_Strict):
    lock_id: Identifier
    seq: Seq
    ts: UtcTimestamp
    lat: Latitude
    lon: Longitude
    speed_kmh: Annotated[float, Strict()] | None = Field(
        default=None, ge=0, le=1000, allow_inf_nan=False
    )
    hdop: Annotated[float, Strict()] | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    seal: SealState
    battery_pct: Annotated[float, Strict()] | None = Field(
        default=None, ge=0, le=100, allow_inf_nan=False
    )
    sig: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class LockEvent(_Strict):
    lock_id: Identifier
    seq: Seq
    ts: UtcTimestamp
    type: LockEventType
    lat: Latitude | None = None
    lon: Longitude | None = None
    sig: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _both_or_neither(self) -> LockEvent:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        return self


class GateArrival(_Strict):
    gate_id: Identifier
    ts: UtcTimestamp
    vehicle_plate: VehiclePlate
    lock_id: Identifier
    container_no: str = Field(min_length=1, max_length=16)

    @field_validator("container_no")
    @classmethod
    def _upper(cls, v: str) -> str:
        # The gate reports what it read; a misread number is a reason to inspect, not to
        # refuse the arrival, so the check digit is judged by the verdict rules instead.
        return v.strip().upper().replace(" ", "")


class AlertResolution(_Strict):
    """An operator's resolution of an alert (``monitoring/resolutions/{operator_id}``, CONTRACT v2).

    The operator is the authenticated client that published it: ``{operator_id}`` in the
    topic, which only that operator may write. A payload may omit ``operator`` (it is taken
    from the topic) or repeat it; naming anyone else is a ``topic_mismatch``. A resolved red
    alert no longer blocks release; the audit trail keeps who resolved it, when and why.
    """

    alert_id: str = Field(min_length=1, max_length=64)
    declaration_id: Identifier
    lock_id: Identifier
    operator: str | None = Field(None, min_length=1, max_length=64)
    note: str = Field(min_length=1, max_length=1000)
    ts: UtcTimestamp


class DeclarationCancellation(_Strict):
    """The intake withdraws a bound declaration before departure (``customs/cancellations``;
    an addition to the contract). Only a trip whose lock is not sealed yet is cancelled; the
    locks are then free for another declaration. A later cancellation is dead-lettered."""

    declaration_id: Identifier
    locks: list[Identifier] = Field(min_length=1, max_length=256)
    reason: str = Field(min_length=1, max_length=1000)
    ts: UtcTimestamp


class ManualOutcome(_Strict):
    """An officer's outcome of a hand inspection at a gate (``customs/outcomes/{officer}``; an
    addition to the contract). The officer is the authenticated client that published it.
    ``cleared`` releases and writes off the container's declaration; ``seized`` closes the trip
    without a write-off. Both are kept in the audit trail."""

    gate_id: Identifier
    lock_id: Identifier
    container_no: str = Field(min_length=1, max_length=16)
    vehicle_plate: VehiclePlate
    outcome: Literal["cleared", "seized"]
    officer: Identifier
    note: str = Field(min_length=1, max_length=1000)
    ts: UtcTimestamp


# --------------------------------------------------------------------------- outbound


class SealRecord(_Strict):
    """One sealed container of a transfer: the smart lock is the electronic seal."""

    lock_id: Identifier
    container_no: ContainerNo
    seal_no: str = Field(min_length=1, max_length=64)


class TransferRecord(_Strict):
    """The origin office approved a bound declaration and sealed it; this goes to the
    destination office (``customs/transfers/{destination_gate}``; an addition to the contract)."""

    declaration_id: Identifier
    reference: str = Field(min_length=1, max_length=64)
    origin_site: Identifier
    destination_gate: Identifier
    approving_office: Identifier
    approved_at: UtcTimestamp
    vehicle_plate: VehiclePlate
    seals: list[SealRecord] = Field(min_length=1)
    declaration: TransitDeclaration


class WriteOffNotice(_Strict):
    """The destination wrote a container off; this goes back to the origin office
    (``customs/writeoffs/{origin_site}``; an addition to the contract)."""

    declaration_id: Identifier
    lock_id: Identifier
    container_no: str
    origin_site: Identifier
    gate_id: Identifier
    arrival_ts: UtcTimestamp
    written_off_at: UtcTimestamp
    decided_by: str


class GateVerdict(_Strict):
    gate_id: str
    declaration_id: str | None
    lock_id: str
    ts: UtcTimestamp
    verdict: Verdict
    reasons: list[str]
    #: CONTRACT v2: hex HMAC-SHA256 of the canonical JSON without ``sig`` under the gate's key.
    sig: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    def to_payload(self) -> dict[str, Any]:
        payload = super().to_payload()
        payload.setdefault("declaration_id", None)  # always present, null when unknown
        return payload


class Alert(_Strict):
    alert_id: str
    declaration_id: str
    lock_id: str
    type: AlertType
    severity: Severity
    ts: UtcTimestamp
    lat: float | None = None
    lon: float | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class TripStatus(_Strict):
    declaration_id: str
    lock_id: str
    state: TripState
    colour: Colour
    last_ts: UtcTimestamp | None = None
    lat: float | None = None
    lon: float | None = None
    open_alerts: list[str]


Inbound = (
    TransitDeclaration
    | LockTelemetry
    | LockEvent
    | GateArrival
    | AlertResolution
    | DeclarationCancellation
    | ManualOutcome
)
