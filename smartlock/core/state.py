"""Per-lock state of the detection core.

The whole state of one lock (its sequence counter and its current trip) is one
:class:`LockState`, small and JSON-serialisable, so the stream processor can keep it in a
Faust table keyed by lock id and recover it from the changelog. Times are POSIX seconds
(event time, as stamped by the devices).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from smartlock.contract.models import AlertType, Severity, TripState


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class Fix(_State):
    """One accepted position of a lock."""

    seq: int
    ts: float
    lat: float
    lon: float


class AlertRecord(_State):
    """An alert the trip raised, and whether it still counts against the trip."""

    alert_id: str
    type: AlertType
    severity: Severity
    ts: float
    open: bool = True
    resolved_by: str | None = None
    resolved_note: str | None = None
    resolved_ts: float | None = None


class Trip(_State):
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

    alerts: list[AlertRecord] = []
    verdict: str | None = None
    verdict_reasons: list[str] = []

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
        return self.state not in (TripState.RELEASED, TripState.CLOSED)

    @property
    def monitored(self) -> bool:
        """Sealed and on its way: the phase in which transit rules apply."""
        return self.state in (TripState.SEALED, TripState.IN_TRANSIT, TripState.DEVIATING)


class LockState(_State):
    """Everything the core remembers about one lock."""

    lock_id: str
    last_seq: int | None = None  # highest accepted seq
    # Anti-replay window: hex bitmap, bit i set when seq last_seq - i was accepted. Empty
    # with a last_seq (a state saved before the window existed): everything below counts as seen.
    seq_seen: str = ""
    trip: Trip | None = None
    unknown_alert: str | None = None  # open unknown_lock alert while no declaration binds the lock
    judged_arrivals: list[str] = []  # digests of arrivals already judged (bounded)
    past_declarations: list[str] = []  # ids of this lock's earlier trips (bounded)


#: How many judged arrivals and past declaration ids a lock remembers to refuse replays.
MEMORY = 32
