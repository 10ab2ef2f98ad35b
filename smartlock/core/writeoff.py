"""Write-off records and audit entries for gate verdicts (pure; persisted by the worker).

A ``release`` writes the declaration off (CONTRACT section 4). The record says who or what
decided, when, and on which evidence: what the gate read, the seal history, where the lock
last was, and every alert of the trip with its resolution (operator, note, time), so a red
alert that an operator resolved before the release stays on file. Every verdict, release
or inspect, also becomes an audit entry of the same shape; an arrival that no open
declaration covers is flagged as an undeclared consignment (``penalty``: detain, fine up to
HK$50,000, see :mod:`smartlock.core.penalties`).

The detector makes these records with the verdict, from the trip as the verdict left it, so
``smartlock evaluate --records`` and the worker produce the same ones. They hold no wall
clock: the worker adds who processed them and when (:func:`stamped`) as it persists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smartlock.contract.models import format_epoch
from smartlock.core.penalties import undeclared_consignment
from smartlock.core.state import AlertRecord, Trip

AUTOMATIC = "smartlock automatic gate verification"


def alert_summary(record: AlertRecord) -> dict[str, Any]:
    """An alert of a trip in a record: id, type, severity, event time and whether it is open."""
    return {
        "alert_id": record.alert_id,
        "type": record.type.value,
        "severity": record.severity.value,
        "ts": format_epoch(record.ts),
        "open": record.open,
    }


def _alert_evidence(trip: Trip) -> list[dict[str, Any]]:
    alerts = []
    for record in trip.alerts:
        entry = alert_summary(record)
        if record.resolved_by is not None:
            entry["resolution"] = {
                "operator": record.resolved_by,
                "note": record.resolved_note,
                "ts": format_epoch(record.resolved_ts) if record.resolved_ts is not None else None,
            }
        alerts.append(entry)
    return alerts


def evidence(trip: Trip | None, verdict: dict[str, Any]) -> dict[str, Any]:
    """What the verdict rested on (the arrival's reads come from the verdict itself)."""
    if trip is None:
        return {"declaration": None}
    pos = trip.position
    return {
        "declaration": {
            "declaration_id": trip.declaration_id,
            "container_no": trip.container_no,
            "vehicle_plate": trip.vehicle_plate,
            "destination_gate": trip.destination_gate,
            "train_id": trip.train_id,
        },
        "seal": {
            "sealed_ts": format_epoch(trip.sealed_ts) if trip.sealed_ts is not None else None,
            "intact": trip.seal_intact,
        },
        "last_fix": (
            {
                "ts": format_epoch(pos.ts),
                "lat": pos.lat,
                "lon": pos.lon,
                "inside_gate_zone": trip.in_destination,
            }
            if pos is not None
            else None
        ),
        "alerts": _alert_evidence(trip),
    }


def audit_entry(
    trip: Trip | None, verdict: dict[str, Any], manual: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One verdict as an audit entry, without the worker's fields (see :func:`stamped`).

    Args:
        trip: the lock's trip just after the verdict (None for an unknown lock).
        verdict: the GateVerdict payload.
        manual: an officer's hand inspection behind the verdict (outcome, officer, note).
    """
    entry: dict[str, Any] = {
        "kind": "verdict" if manual is None else "manual_outcome",
        "declaration_id": verdict.get("declaration_id"),
        "lock_id": verdict["lock_id"],
        "gate_id": verdict["gate_id"],
        "verdict": verdict["verdict"],
        "reasons": list(verdict.get("reasons", [])),
        "arrival_ts": verdict["ts"],
        "evidence": evidence(trip, verdict),
    }
    if manual is not None:
        entry["manual_outcome"] = dict(manual)
    if verdict.get("declaration_id") is None:
        # No open declaration binds the lock: an undeclared consignment (ROCARS penalties).
        entry["penalty"] = undeclared_consignment(verdict["lock_id"], verdict["gate_id"])
    return entry


def writeoff_record(
    trip: Trip, verdict: dict[str, Any], manual: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The write-off of one lock's container under its declaration, after a ``release``.

    Raises:
        ValueError: the verdict is not a release of this trip's declaration.
    """
    if verdict["verdict"] != "release" or verdict.get("declaration_id") != trip.declaration_id:
        raise ValueError(
            f"no write-off: verdict {verdict['verdict']} for declaration {verdict.get('declaration_id')}"
        )
    entry = audit_entry(trip, verdict, manual)
    entry["kind"] = "writeoff"
    entry["container_no"] = trip.container_no
    return entry


@dataclass(frozen=True)
class VerdictRecord:
    """An audit entry or a write-off the core produced for a verdict.

    Attributes:
        kind: ``audit`` or ``writeoff``.
        payload: the record without the worker's fields (:data:`WORKER_FIELDS`).
        origin_site: a write-off's origin office, where its notice goes; None for audits.
    """

    kind: str
    payload: dict[str, Any]
    origin_site: str | None = None

    def line(self) -> dict[str, Any]:
        """The ``smartlock evaluate --records`` form: ``{"record": kind, "payload": ...}``."""
        return {"record": self.kind, "payload": self.payload}


def verdict_records(
    trip: Trip | None, verdict: dict[str, Any], manual: dict[str, Any] | None = None
) -> list[VerdictRecord]:
    """Every verdict's audit entry, and a release's write-off (trip: just after the verdict)."""
    records = [VerdictRecord("audit", audit_entry(trip, verdict, manual))]
    confirms = manual is not None and manual.get("after_release")  # written off already
    if verdict["verdict"] == "release" and trip is not None and not confirms:
        records.append(
            VerdictRecord("writeoff", writeoff_record(trip, verdict, manual), trip.origin_site)
        )
    return records


#: What the worker adds to a record when it persists it: who processed it, and when.
WORKER_FIELDS = ("decided_by", "processed_at")


def stamped(record: dict[str, Any], processor: str, processed_at: str) -> dict[str, Any]:
    """A core record as it is persisted, with :data:`WORKER_FIELDS` added.

    Args:
        record: an audit entry or write-off from :func:`verdict_records`.
        processor: who processed it (``worker 1``); with :data:`AUTOMATIC` it says who
            decided, unless an officer did by hand.
        processed_at: wall-clock time the worker processed the verdict (its ``arrival_ts`` is
            event time).
    """
    manual = record.get("manual_outcome")
    if manual is not None:
        decided_by = f"officer {manual['officer']} (manual inspection, {manual['outcome']})"
    else:
        decided_by = f"{AUTOMATIC} ({processor})"
    return {**record, "decided_by": decided_by, "processed_at": processed_at}


def writeoff_notice(record: dict[str, Any], origin_site: str) -> dict[str, Any]:
    """The WriteOffNotice that goes back to the origin office for a stamped write-off record."""
    return {
        "declaration_id": record["declaration_id"],
        "lock_id": record["lock_id"],
        "container_no": record["container_no"],
        "origin_site": origin_site,
        "gate_id": record["gate_id"],
        "arrival_ts": record["arrival_ts"],
        "written_off_at": record["processed_at"],
        "decided_by": record["decided_by"],
    }
