"""A declaration's life after submission, as the declarant sees it (pure).

Stored status (the intake's own): ``accepted`` (filed), ``bound`` (reference and plate bound,
published to the pipeline), ``cancelled``. Once bound, the status follows the loop: the trip's
progress from the pipeline's live state (one trip hash per lock), the write-off from the
WriteOffNotice the destination sent back to the origin office (``customs/writeoffs/{origin}``),
which the intake receives and keeps on the record:

==============  ====================================================================
``bound``       the pipeline knows the declaration; the lock is not sealed yet
``sealed``      sealed at the origin site
``in_transit``  on its way (also while deviating, or arrived but not yet judged)
``released``    the gate released the container (its write-off notice not received yet)
``written_off`` written off: the destination's notice reached the origin office
``inspect``     sent to inspection at the gate, with the verdict's reasons
==============  ====================================================================

A rail declaration binds several containers: the declaration is ``inspect`` if any container
is, ``written_off`` when all are, and otherwise as far as its slowest container.

Amendments (:func:`amend_errors`): before binding any field may change (the whole form is
checked again); once bound only the vehicle plate, and only until the container reaches the
gate. Cancelling: before binding, or while bound and not yet sealed (before departure).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: Loop statuses in the order a container passes them.
PROGRESS = ("bound", "sealed", "in_transit", "released", "written_off")
#: Statuses after which the container has reached the gate.
ARRIVED = frozenset({"released", "written_off", "inspect"})
STATUSES = ("accepted", "cancelled", *PROGRESS, "inspect")

_FROM_TRIP = {
    "declared": "bound",
    "sealed": "sealed",
    "in_transit": "in_transit",
    "deviating": "in_transit",
    "arrived": "in_transit",
    "released": "released",
    "closed": "released",
    "inspect": "inspect",
}


def container_status(
    declaration_id: str, trip: Mapping[str, str] | None, writeoff: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One container's status from the lock's live trip hash and the write-off notice the
    origin office received for it (a WriteOffNotice payload).

    A container an officer seized is ``inspect`` with the officer's reason, even when the
    pipeline wrote it off first (fallback mode: the queued arrival was judged before the
    officer's outcome reached the pipeline; both stay in the audit trail).
    """
    if (
        trip
        and trip.get("declaration_id") == declaration_id
        and (trip.get("state"), trip.get("verdict")) == ("closed", "inspect")
    ):
        return {"status": "inspect", "reasons": _reasons(trip.get("verdict_reasons"))}
    if writeoff is not None:
        return {
            "status": "written_off",
            "written_off_at": writeoff.get("written_off_at"),
            "decided_by": writeoff.get("decided_by"),
            "gate_id": writeoff.get("gate_id"),
        }
    if not trip or trip.get("declaration_id") != declaration_id:
        return {"status": "bound"}  # the pipeline has not reported on this lock for it yet
    status = _FROM_TRIP.get(trip.get("state", ""), "bound")
    out: dict[str, Any] = {"status": status}
    if status == "inspect":
        out["reasons"] = _reasons(trip.get("verdict_reasons"))
    return out


def _reasons(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw or "[]")
    except ValueError:
        return []
    return [str(r) for r in value] if isinstance(value, list) else []


def live_status(
    record: Mapping[str, Any],
    trips: Mapping[str, Mapping[str, str]],
    writeoffs: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The record's status following the loop, with one entry per container.

    Args:
        record: the intake record.
        trips: lock id -> the pipeline's live trip hash (``<p>:trip:<lock>``).
        writeoffs: lock id -> the WriteOffNotice received on ``customs/writeoffs/{origin_site}``
            (the record's ``writeoffs``).

    Returns:
        ``{"status": ..., "containers": [...], "reasons": [...]?}``; for an unbound or cancelled
        record just its stored status.
    """
    if record["status"] != "bound":
        return {"status": record["status"]}
    decl = record["declaration"]
    locks = decl.get("locks") or [
        {"lock_id": decl["lock_id"], "container_no": decl["container_no"]}
    ]
    containers = []
    for entry in locks:
        lock = entry["lock_id"]
        state = container_status(decl["declaration_id"], trips.get(lock), writeoffs.get(lock))
        containers.append({"lock_id": lock, "container_no": entry["container_no"], **state})
    statuses = [c["status"] for c in containers]
    out: dict[str, Any] = {"containers": containers}
    if "inspect" in statuses:
        out["status"] = "inspect"
        out["reasons"] = [
            f"{c['container_no']}: {reason}" if len(containers) > 1 else reason
            for c in containers
            if c["status"] == "inspect"
            for reason in c.get("reasons", [])
        ]
    else:
        out["status"] = min(statuses, key=PROGRESS.index)
    return out


def amend_errors(record: Mapping[str, Any], status: str, changes: Mapping[str, Any]) -> str | None:
    """Why ``changes`` (top-level form fields) may not be made to a declaration, if they may not.

    Args:
        record: the stored record.
        status: its live status (:func:`live_status`).
        changes: the fields the declarant wants to change.
    """
    reference = record["reference"]
    if status == "cancelled":
        return f"declaration {reference} is cancelled; file a new declaration instead."
    if not changes:
        return 'give the fields to change as a JSON object, e.g. {"vehicle_plate": "浙G01346"}.'
    if status == "accepted":
        return None
    if status in ARRIVED:
        return (
            f"declaration {reference} can no longer be amended: the container already reached the "
            f"gate (status {status})."
        )
    others = sorted(k for k in changes if k != "vehicle_plate")
    if others:
        return (
            f"declaration {reference} is bound, so only vehicle_plate may be amended (not "
            f"{', '.join(others)}); cancel it before departure and file a new one to change more."
        )
    return None


def cancel_error(record: Mapping[str, Any], status: str) -> str | None:
    """Why a declaration may not be cancelled, if it may not: only before departure."""
    reference = record["reference"]
    if status == "cancelled":
        return f"declaration {reference} is already cancelled."
    if status in ("accepted", "bound"):
        return None
    return (
        f"declaration {reference} can no longer be cancelled: the lock was sealed and the "
        f"container departed (status {status})."
    )


def form_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The declaration form a record was accepted from (for an amendment to change)."""
    decl, intake = record["declaration"], record["intake"]
    form: dict[str, Any] = {
        "declaration_id": decl["declaration_id"],
        "consignor": intake["consignor"],
        "consignee": intake["consignee"],
        "cargo": [dict(line) for line in intake["cargo"]],
        "mode": decl["mode"],
        "vehicle_plate": decl["vehicle_plate"],
        "corridor_id": decl["corridor_id"],
        "origin_site": decl["origin_site"],
        "destination_gate": decl["destination_gate"],
        "departure": intake["departure"],
        "arrival": intake["arrival"],
    }
    if decl["mode"] == "rail":
        form.update(train_id=decl.get("train_id"), locks=decl.get("locks"))
    else:
        form.update(lock_id=decl["lock_id"], container_no=decl["container_no"])
    return form


def snapshot(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a record that an amendment replaces, kept in ``versions``."""
    return {
        "version": record.get("version", 1),
        "at": record.get("amended_at") or record["submitted_at"],
        "vehicle_plate": record["vehicle_plate"],
        "fee": record["fee"],
        "declaration": record["declaration"],
        "intake": record["intake"],
    }
