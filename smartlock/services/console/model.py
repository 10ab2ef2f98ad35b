"""The console's picture of the pipeline, built from what the worker keeps in Redis (no I/O here).

The worker writes each touched trip to a hash and to a change stream, appends alerts and
verdicts to streams; the console adds acknowledgements and pending resolutions of its own
(the *desk*). :class:`LiveModel` folds all of that into the rows the browser shows and
reports, per batch of Redis entries, exactly what changed, so a browser that has the
snapshot stays equal to the model by applying the updates.

An alert's place on the desk (:func:`alert_status`) follows its shared lifecycle: ``open``
(raised, nobody has taken it), ``acknowledged`` (an operator has it, who and when),
``resolving`` (an operator resolved it here; the pipeline has not confirmed yet),
``resolved`` (the pipeline applied the operator's resolution: who, when, note), ``cleared``
(closed by the pipeline itself: the lock was heard again, the truck moved on) and ``info``
(informational alerts never open).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from smartlock.contract.topics import is_resolution_topic

#: Trip hash fields that hold JSON rather than plain strings.
_JSON_FIELDS = ("open_alerts", "verdict_reasons", "alerts")
#: Fields of a trip that the map needs (the rest is fetched with the trip view).
MAP_FIELDS = (
    "lock_id",
    "declaration_id",
    "vehicle_plate",
    "container_no",
    "corridor_id",
    "destination_gate",
    "state",
    "colour",
    "lat",
    "lon",
    "last_ts",
    "open_alerts",
)
#: Verdicts kept in memory for the gate view; older ones stay in Redis and are counted.
RECENT_VERDICTS = 1000
#: Gate events (verdicts with round trips, manual fallbacks, reconciliations) kept likewise.
RECENT_GATE_EVENTS = 1000


def parse_trip(fields: dict[str, str]) -> dict[str, Any]:
    """A trip hash from Redis (strings only) as typed values: floats, lists, booleans."""
    trip: dict[str, Any] = dict(fields)
    for name in _JSON_FIELDS:
        raw = fields.get(name)
        try:
            trip[name] = json.loads(raw) if raw else []
        except ValueError:
            trip[name] = []
    for name in ("lat", "lon"):
        try:
            trip[name] = float(fields[name]) if fields.get(name) else None
        except ValueError:
            trip[name] = None
    if "seal_intact" in fields:
        trip["seal_intact"] = fields["seal_intact"] == "1"
    return trip


def map_row(trip: dict[str, Any]) -> dict[str, Any]:
    """The few fields of a trip that the map and the counts need."""
    row = {k: trip.get(k) for k in MAP_FIELDS}
    row["open_alerts"] = len(trip.get("open_alerts") or [])
    return row


def alert_status(
    alert: dict[str, Any],
    record: dict[str, Any] | None,
    ack: dict[str, Any] | None,
    pending: dict[str, Any] | None,
) -> str:
    """Where an alert stands on the desk (see the module docstring)."""
    if alert.get("severity") == "info":
        return "info"
    if record is not None and record.get("resolved_by"):
        return "resolved"
    if record is not None and record.get("open") is False:
        return "cleared"
    if pending is not None:
        return "resolving"
    if ack is not None:
        return "acknowledged"
    return "open"


@dataclass
class Changes:
    """What one batch of Redis entries changed: the body of one live update."""

    trips: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    gate: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.trips or self.alerts or self.verdicts or self.gate)

    def to_json(self) -> dict[str, Any]:
        return {
            "trips": list(self.trips.values()),
            "alerts": list(self.alerts.values()),
            "verdicts": self.verdicts,
            "gate": self.gate,
        }


@dataclass
class LiveModel:
    """Trips, alerts, verdicts and the desk, as the console shows them."""

    trips: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # resolutions the pipeline refused
    verdicts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_VERDICTS))
    verdict_total: int = 0
    #: What the gate clients recorded (``RedisKeys.gate_events``), newest last.
    gate_events: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=RECENT_GATE_EVENTS)
    )
    #: alert id -> lock id of the trip that holds its record
    alert_lock: dict[str, str] = field(default_factory=dict)
    _rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ---------------------------------------------------------------- reading

    def record(self, alert_id: str) -> dict[str, Any] | None:
        """The pipeline's record of an alert (open, resolution), from its trip."""
        lock = self.alert_lock.get(alert_id)
        trip = self.trips.get(lock) if lock else None
        if trip is None:
            return None
        for rec in trip.get("alerts") or []:
            if rec.get("alert_id") == alert_id:
                return rec
        return None

    def alert_row(self, alert_id: str) -> dict[str, Any]:
        """An alert as the desk shows it: payload, lifecycle status, who and when."""
        alert = self.alerts[alert_id]
        record = self.record(alert_id)
        ack = self.acks.get(alert_id)
        pending = self.pending.get(alert_id)
        trip = self.trips.get(alert["lock_id"]) or {}
        row = dict(alert)
        row["status"] = alert_status(alert, record, ack, pending)
        row["corridor_id"] = trip.get("corridor_id") or ""
        row["vehicle_plate"] = trip.get("vehicle_plate") or ""
        row["ack"] = ack
        row["pending"] = pending
        row["refused"] = self.refused.get(alert_id)
        row["resolution"] = (
            {
                "by": record["resolved_by"],
                "note": record.get("resolved_note"),
                "ts": record.get("resolved_at"),
            }
            if record is not None and record.get("resolved_by")
            else None
        )
        return row

    def snapshot(self) -> dict[str, Any]:
        """Everything a browser needs on connect."""
        return {
            "trips": [
                map_row(t)
                for t in self.trips.values()
                if t.get("declaration_id") or t.get("lat") is not None
            ],
            "alerts": [self.alert_row(a) for a in self.alerts],
            "verdicts": list(self.verdicts),
            "verdict_total": self.verdict_total,
            "gate_events": list(self.gate_events),
        }

    # ---------------------------------------------------------------- applying

    def load_trip(self, fields: dict[str, str]) -> None:
        """Takes a trip hash read at start-up (no change reported)."""
        self._set_trip(parse_trip(fields))

    def apply_trip(self, fields: dict[str, Any], changes: Changes) -> None:
        """A trip change from the worker's change stream (already-typed JSON or a raw hash)."""
        trip = parse_trip(
            {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        )
        old = self.trips.get(trip["lock_id"])
        self._set_trip(trip)
        if old is None or map_row(old) != map_row(trip):
            changes.trips[trip["lock_id"]] = map_row(trip)
        for rec in trip.get("alerts") or []:
            self._refresh(rec["alert_id"], changes)
        if old is not None:
            for alert_id in old.get("open_alerts") or []:
                self._refresh(alert_id, changes)

    def apply_alert(self, alert: dict[str, Any], changes: Changes) -> None:
        """A new alert from the alert stream."""
        self.alerts[alert["alert_id"]] = alert
        self.alert_lock.setdefault(alert["alert_id"], alert["lock_id"])
        self._refresh(alert["alert_id"], changes)

    def apply_verdict(self, verdict: dict[str, Any], changes: Changes) -> None:
        self.verdicts.append(verdict)
        self.verdict_total += 1
        changes.verdicts.append(verdict)

    def apply_gate(self, event: dict[str, Any], changes: Changes) -> None:
        """What a gate client recorded: a verdict and its round trip, a manual fallback, a
        reconciliation."""
        self.gate_events.append(event)
        changes.gate.append(event)

    def apply_desk(self, entry: dict[str, Any], changes: Changes) -> None:
        """An acknowledgement or a pending resolution made at a desk."""
        alert_id = entry["alert_id"]
        if entry["action"] == "ack":
            self.acks[alert_id] = {"by": entry["by"], "at": entry["at"]}
        elif entry["action"] == "resolve":
            self.refused.pop(alert_id, None)
            self.pending[alert_id] = {
                "by": entry["by"],
                "at": entry["at"],
                "note": entry.get("note", ""),
            }
        self._refresh(alert_id, changes)

    def apply_dead_letter(self, record: dict[str, Any], changes: Changes) -> None:
        """A dead letter: when it is a resolution the pipeline refused, the desk says so and the
        alert goes back to where it was (the resolution is not lost: the dead letter keeps it)."""
        if not is_resolution_topic(str(record.get("topic", ""))):
            return
        try:
            alert_id = json.loads(record.get("original_text") or "")["alert_id"]
        except (ValueError, KeyError, TypeError):
            return
        pending = self.pending.get(alert_id)
        if pending is not None and pending["at"] > str(record.get("received_at", "")):
            return  # refused an earlier attempt; a newer resolution is on its way
        self.pending.pop(alert_id, None)
        self.refused[alert_id] = {
            "reason": record.get("reason", ""),
            "detail": record.get("detail", ""),
            "by": pending["by"] if pending else None,
        }
        self._refresh(alert_id, changes)

    def _set_trip(self, trip: dict[str, Any]) -> None:
        self.trips[trip["lock_id"]] = trip
        for rec in trip.get("alerts") or []:
            self.alert_lock[rec["alert_id"]] = trip["lock_id"]

    def _refresh(self, alert_id: str, changes: Changes) -> None:
        if alert_id not in self.alerts:
            return  # the trip names it before its stream entry arrived; the alert brings it
        row = self.alert_row(alert_id)
        if self._rows.get(alert_id) != row:
            self._rows[alert_id] = row
            changes.alerts[alert_id] = row
