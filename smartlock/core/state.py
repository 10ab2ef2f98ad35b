"""Per-lock state of the detection core.

The whole state of one lock (its sequence counter and its current trip) is one
:class:`LockState`, small and JSON-serialisable, so the stream processor can keep it in a
Faust table keyed by lock id and recover it from the changelog. Times are POSIX seconds
(event time, as stamped by the devices).

The state is plain slotted dataclasses: the rules change it on every message, so an
attribute write must be a plain write (a validated model made every message pay for about
ten validated assignments) and a million locks must fit in memory. Validation happens
where state comes in from outside: :meth:`LockState.model_validate` (a pydantic
TypeAdapter over the same classes) checks a state read back from the changelog, and
:meth:`LockState.model_dump` writes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, TypeAdapter, with_config

from smartlock.contract.models import AlertType, Severity, TripState

_FORBID = ConfigDict(extra="forbid")


class _Dumpable:
    """``model_dump`` and ``model_validate`` of a state class, as the pydantic models had."""

    __slots__ = ()
    _adapter: ClassVar[TypeAdapter[Any]]

    def model_dump(self, mode: Literal["json", "python"] = "python") -> dict[str, Any]:
        return type(self)._adapter.dump_python(self, mode=mode)  # type: ignore[no-any-return]

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        return cls._adapter.validate_python(data)

    def model_copy(self, update: dict[str, Any] | None = None) -> Any:
        """A shallow copy with ``update`` applied (not validated, as pydantic's)."""
        return dataclasses.replace(self, **(update or {}))  # type: ignore[type-var]


@with_config(_FORBID)
@dataclass(slots=True)
class Fix(_Dumpable):
    """One accepted position of a lock.

    ``x`` and ``y`` are the position in the geofences' local metric frame (metres), set
    once when the fix is judged so no rule projects it again; None in a state saved before
    they were kept (the rules then project it).

    Positional arguments allowed (one is built per fix: keywords cost twice as much).
    """

    seq: int
    ts: float
    lat: float
    lon: float
    x: float | None = None
    y: float | None = None


@with_config(_FORBID)
@dataclass(slots=True, kw_only=True)
class AlertRecord(_Dumpable):
    """An alert the trip raised, and whether it still counts against the trip."""

    alert_id: str
    type: AlertType
    severity: Severity
    ts: float
    open: bool = True
    resolved_by: str | None = None
    resolved_note: str | None = None
    resolved_ts: float | None = None


_MONITORED = frozenset({TripState.SEALED, TripState.IN_TRANSIT, TripState.DEVIATING})
_CLOSED = frozenset({TripState.RELEASED, TripState.CLOSED})


@with_config(_FORBID)
@dataclass(slots=True, kw_only=True)
class Trip(_Dumpable):
    """One declared transit of one lock, from declaration to write-off."""

    declaration_id: str
    declaration_digest: str
    container_no: str
    vehicle_plate: str
    mode: str
    corridor_id: str
    origin_site: str
    destination_gate: str
    departure_ts: float
    eta_ts: float
    train_id: str | None = None
    #: digest of the declaration without its plate (a plate-only amendment keeps it)
    amend_digest: str | None = None

    state: TripState = TripState.DECLARED
    sealed_ts: float | None = None
    seal_intact: bool = True
    breach_open: bool = False

    position: Fix | None = None  # newest plausible fix by event time
    anchor: Fix | None = None  # last plausible fix in sequence order (jump reference)
    jump_streak: int = 0
    outside_streak: int = 0
    outside_first: Fix | None = None
    deviating: bool = False
    excursion_alert: str | None = None
    stop_anchor: Fix | None = None
    stop_alert: str | None = None
    in_destination: bool = False

    last_heard_ts: float | None = None
    signal_alert_for: float | None = None  # last_heard_ts a signal_lost was raised for
    silent: bool = False  # in a silence (signal_lost raised) until a current message ends it
    overdue_raised: bool = False
    battery_alerted: bool = False

    alerts: list[AlertRecord] = field(default_factory=list)
    verdict: str | None = None
    verdict_reasons: list[str] = field(default_factory=list)

    def alert(self, alert_id: str) -> AlertRecord | None:
        for record in self.alerts:
            if record.alert_id == alert_id:
                return record
        return None

    def open_alert_ids(self) -> list[str]:
        return [a.alert_id for a in self.alerts if a.open]

    @property
    def is_open(self) -> bool:
        """Open for the gate: declared and neither released nor closed."""
        return self.state not in _CLOSED

    @property
    def monitored(self) -> bool:
        """Sealed and on its way: the phase in which transit rules apply."""
        return self.state in _MONITORED


@with_config(_FORBID)
@dataclass(slots=True, kw_only=True)
class LockState(_Dumpable):
    """Everything the core remembers about one lock."""

    lock_id: str
    last_seq: int | None = None  # highest accepted seq
    # Anti-replay window: hex bitmap, bit i set when seq last_seq - i was accepted. Empty
    # with a last_seq (a state saved before the window existed): everything below counts as seen.
    seq_seen: str = ""
    trip: Trip | None = None
    unknown_alert: str | None = None  # open unknown_lock alert while no declaration binds the lock
    judged_arrivals: list[str] = field(default_factory=list)  # digests of arrivals judged (bounded)
    past_declarations: list[str] = field(default_factory=list)  # earlier trips' ids (bounded)


for _cls in (Fix, AlertRecord, Trip, LockState):
    _cls._adapter = TypeAdapter(_cls)

#: How many judged arrivals and past declaration ids a lock remembers to refuse replays.
MEMORY = 32

# --------------------------------------------------------------------------- snapshots
#
# The engine applies a message all or nothing: it takes a snapshot of the states the
# message concerns and puts it back if a rule raises. The rules replace lists and fixes
# rather than change them, except the trip's alert list (appended to) and its alert
# records (closed, resolved), so a snapshot keeps the fields of the state and the trip,
# a copy of the alert list and the fields of each alert record: about a microsecond.

_LOCK_FIELDS = LockState.__slots__
_TRIP_FIELDS = Trip.__slots__
_ALERT_FIELDS = AlertRecord.__slots__

Snapshot = tuple[Any, ...]


def _fields(obj: str, names: tuple[str, ...]) -> str:
    return "(" + "".join(f"{obj}.{name}, " for name in names) + ")"


def _assign(obj: str, names: tuple[str, ...], values: str) -> str:
    return "(" + "".join(f"{obj}.{name}, " for name in names) + f") = {values}"


# Generated from the slots (as dataclasses generates ``__init__``): a plain attribute read per
# field costs half of what ``operator.attrgetter`` over the same names does.
_SOURCE = f"""
def snapshot(state):
    "What restore needs to put the state back as it is now."
    trip = state.trip
    if trip is None:
        return ({_fields("state", _LOCK_FIELDS)}, None, None, None)
    alerts = list(trip.alerts)
    return (
        {_fields("state", _LOCK_FIELDS)},
        {_fields("trip", _TRIP_FIELDS)},
        alerts,
        [{_fields("a", _ALERT_FIELDS)} for a in alerts],
    )


def restore(state, saved):
    "Puts the state (and the trip and alerts it had) back as snapshot saw them."
    lock_values, trip_values, alerts, alert_values = saved
    {_assign("state", _LOCK_FIELDS, "lock_values")}
    trip = state.trip
    if trip is None or trip_values is None:
        return
    {_assign("trip", _TRIP_FIELDS, "trip_values")}
    trip.alerts = alerts
    for a, values in zip(alerts, alert_values, strict=True):
        {_assign("a", _ALERT_FIELDS, "values")}
"""
_generated: dict[str, Any] = {}
exec(compile(_SOURCE, f"<{__name__} snapshots>", "exec"), _generated)  # noqa: S102 - our own text

#: What :func:`restore` needs to put ``state`` back as it is now.
snapshot: Callable[[LockState], Snapshot] = _generated["snapshot"]
#: Puts ``state`` (and the trip and alerts it had) back as :func:`snapshot` saw them.
restore: Callable[[LockState, Snapshot], None] = _generated["restore"]
