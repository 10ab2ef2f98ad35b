"""The intake HTTP service (aiohttp): submit, look up and bind declarations; estimate fees.

:class:`IntakeService` holds the logic between the rules and the store and answers
``(status, body)``; the aiohttp handlers only read JSON and write JSON. A bind publishes the
contract TransitDeclaration on MQTT ``customs/declarations`` (QoS 1) and answers only after
the broker acknowledged it: that is how the pipeline learns of a declaration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.mqtt import hold_first_free
from smartlock.contract.codec import load_json
from smartlock.contract.models import (
    TransferRecord,
    TransitDeclaration,
    WriteOffNotice,
    format_ts,
    normalise_plate,
)
from smartlock.contract.timestamps import parse_utc
from smartlock.contract.topics import CANCELLATIONS, DECLARATIONS, TRANSFERS, WRITEOFFS
from smartlock.core.declaration import as_sentence, check_plate
from smartlock.errors import InfrastructureError, MessageError
from smartlock.services.intake.auth import (
    AUTHENTICATE,
    CUSTOMS,
    DECLARANT,
    MAX_BODY_BYTES,
    PRINCIPAL,
    Authenticate,
    Principal,
    guard,
    store_authenticator,
)
from smartlock.services.intake.fees import estimate_fee, with_late_charge
from smartlock.services.intake.fields import declaration_deadline
from smartlock.services.intake.forms import openapi
from smartlock.services.intake.lifecycle import (
    STATUSES,
    amend_errors,
    cancel_error,
    form_of,
    live_status,
    snapshot,
)
from smartlock.services.intake.reference import normalise_reference
from smartlock.services.intake.rules import (
    DEFAULT_LIMITS,
    DEFAULT_TZ,
    Accepted,
    FieldError,
    Limits,
    Places,
    bind_errors,
    fee_items,
    validate_submission,
)
from smartlock.services.intake.store import DeclarationStore, DuplicateDeclaration, MemoryStore

log = logging.getLogger(__name__)

#: The fields of a declaration in a list.
SUMMARY = ("reference", "declaration_id", "status", "submitted_at", "vehicle_plate", "version")
Publish = Callable[[str, bytes], Awaitable[None]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


def _errors(errors: list[FieldError]) -> dict[str, Any]:
    return {"errors": [e.to_dict() for e in errors]}


class IntakeService:
    """Submission, lookup, binding and fee estimate, transport-free.

    Args:
        store: where records live.
        publish: async ``(topic, payload)`` that returns once the broker acknowledged (QoS 1).
        clock: the time source (injected so tests are deterministic).
        places: known corridors and zones (default: shipped geofences).
        limits: timing limits and currency table.
        tz: the zone for local times in messages.
    """

    def __init__(
        self,
        store: DeclarationStore,
        publish: Publish,
        clock: Clock = utc_now,
        *,
        places: Places | None = None,
        limits: Limits = DEFAULT_LIMITS,
        tz: str = DEFAULT_TZ,
    ) -> None:
        self.store, self.publish, self.clock = store, publish, clock
        self.places, self.limits, self.tz = places, limits, tz

    async def submit(self, form: Any, caller: Principal) -> tuple[int, dict[str, Any]]:
        """Validates and stores a form filed by ``caller``: 201 with reference and fee, 422 with
        every error, 409 duplicate id, 403 unless the caller is a declarant."""
        if caller.role != DECLARANT:
            return 403, {"error": "only a declarant files declarations; customs staff review them"}
        now = self.clock()
        result = validate_submission(form, now, self.tz, places=self.places, limits=self.limits)
        if not isinstance(result, Accepted):
            return 422, _errors(result.errors)
        fee = estimate_fee(fee_items(result.intake["cargo"], self.limits), self.limits.hkd_rates)  # type: ignore[arg-type]
        deadline = declaration_deadline(result.declaration.eta_ts, self.limits)
        fee = with_late_charge(fee, now - deadline)
        try:
            record = await self.store.create(result, fee.to_dict(), now, caller.name)
        except DuplicateDeclaration as exc:
            return 409, {"error": str(exc)}
        return 201, {
            key: record[key]
            for key in ("reference", "declaration_id", "status", "fee", "declaration")
        }

    async def _own(
        self, reference: str, caller: Principal
    ) -> tuple[dict[str, Any] | None, tuple[int, dict[str, Any]] | None]:
        """The caller's record, or the answer to give (404 also for another's declaration)."""
        record = await self.store.get(normalise_reference(reference))
        if record is None or not caller.may_see(record.get("declarant")):
            return None, (
                404,
                {"error": f"no declaration with reference {reference}; check the reference number"},
            )
        return record, None

    async def _with_status(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with ``status`` following the loop (and ``containers``, ``reasons``): the
        trip's progress from the pipeline's trip hashes, the write-off from the notices the
        intake received (``writeoffs``)."""
        trips = await self.store.pipeline_view(record) if record["status"] == "bound" else {}
        writeoffs = record.get("writeoffs") or {}
        history = [*record.get("history", [])] + [
            {
                "event": "written_off",
                "at": notice.get("written_off_at"),
                "lock_id": lock,
                "gate_id": notice.get("gate_id"),
                "by": notice.get("decided_by"),
            }
            for lock, notice in writeoffs.items()
        ]
        return {**record, "history": history, **live_status(record, trips, writeoffs)}

    async def get(self, reference: str, caller: Principal) -> tuple[int, dict[str, Any]]:
        """200 with the record and its status following the loop, or 404 (also for another
        declarant's declaration: its existence is not disclosed)."""
        record, problem = await self._own(reference, caller)
        if record is None:
            assert problem is not None
            return problem
        return 200, await self._with_status(record)

    async def list(
        self, caller: Principal, status: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """200 with the caller's declarations (customs: all), newest first, optionally only
        those with ``status``; 422 for an unknown status."""
        if status is not None and status not in STATUSES:
            return 422, _errors(
                [
                    FieldError(
                        "status",
                        f"status: {json.dumps(status, ensure_ascii=False)} is not a status; "
                        f"use one of {', '.join(STATUSES)}.",
                    )
                ]
            )
        owner = None if caller.role == CUSTOMS else caller.name
        rows = []
        for record in await self.store.list_records(owner):
            current = await self._with_status(record)
            if status is None or current["status"] == status:
                rows.append(
                    {key: current.get(key) for key in SUMMARY}
                    | {"version": current.get("version", 1)}
                )
        rows.sort(key=lambda r: (r["submitted_at"], r["reference"]), reverse=True)
        return 200, {"declarations": rows}

    async def amend(
        self, reference: str, changes: Any, caller: Principal
    ) -> tuple[int, dict[str, Any]]:
        """Amends a declaration (top-level form fields in ``changes``); keeps every version.

        Before binding any field may change and the whole form is checked again; once bound only
        the vehicle plate, until the container reaches the gate, and the amended declaration is
        published to the pipeline again. 200, 403, 404, 409, 422 or 503.
        """
        if caller.role != DECLARANT:
            return 403, {"error": "only the declarant who filed a declaration amends it"}
        record, problem = await self._own(reference, caller)
        if record is None:
            assert problem is not None
            return problem
        if not isinstance(changes, dict):
            return 400, {
                "error": 'the body must be a JSON object of the fields to change, e.g. {"vehicle_plate": "浙G01346"}'
            }
        status = (await self._with_status(record))["status"]
        refused = amend_errors(record, status, changes)
        if refused is not None:
            return 409, {"error": refused}
        if changes.get("declaration_id", record["declaration_id"]) != record["declaration_id"]:
            return 422, _errors(
                [
                    FieldError(
                        "declaration_id",
                        "declaration_id: cannot be amended; file a new declaration for a new id.",
                    )
                ]
            )
        now = self.clock()
        if status == "accepted":
            return await self._amend_form(record, changes, now)
        return await self._amend_plate(record, changes.get("vehicle_plate"), now)

    async def _amend_form(
        self, record: dict[str, Any], changes: dict[str, Any], now: datetime
    ) -> tuple[int, dict[str, Any]]:
        form = form_of(record) | changes
        result = validate_submission(form, now, self.tz, places=self.places, limits=self.limits)
        if not isinstance(result, Accepted):
            return 422, _errors(result.errors)
        fee = estimate_fee(fee_items(result.intake["cargo"], self.limits), self.limits.hkd_rates)  # type: ignore[arg-type]
        late_by = now - declaration_deadline(result.declaration.eta_ts, self.limits)
        fee = with_late_charge(fee, max(late_by, _filed_late_by(record, self.limits)))
        amended = _next_version(record, now) | {
            "vehicle_plate": result.declaration.vehicle_plate,
            "fee": fee.to_dict(),
            "declaration": result.declaration.to_payload(),
            "intake": result.intake,
        }
        return 200, await self._with_status(await self.store.save(amended))

    async def _amend_plate(
        self, record: dict[str, Any], plate: Any, now: datetime
    ) -> tuple[int, dict[str, Any]]:
        errors = (
            check_plate("vehicle_plate", plate) if record["declaration"]["mode"] == "road" else []
        )
        if errors or not isinstance(plate, str):
            return 422, _errors(
                errors or [FieldError("vehicle_plate", "vehicle_plate: give the new plate.")]
            )
        new_plate = normalise_plate(plate)
        decl = TransitDeclaration.model_validate(
            record["declaration"] | {"vehicle_plate": new_plate}
        )
        try:
            await self.publish(
                DECLARATIONS.topic(),
                json.dumps(decl.to_payload(), ensure_ascii=False).encode("utf-8"),
            )
        except InfrastructureError as exc:
            return 503, {
                "error": f"declaration {record['reference']} not amended: {exc}; try again"
            }
        amended = _next_version(record, now) | {
            "vehicle_plate": new_plate,
            "bound_plate": new_plate,
            "declaration": decl.to_payload(),
        }
        return 200, await self._with_status(await self.store.save(amended))

    async def approve(
        self, reference: str, caller: Principal, seals: Any = None
    ) -> tuple[int, dict[str, Any]]:
        """The origin office (a customs identity) approves a bound declaration and seals it; the
        transfer record (declaration, seal numbers, locks, time, approving office) goes to the
        destination office on ``customs/transfers/{destination_gate}``. ``seals`` maps a lock id
        to the seal number the office recorded (default: the smart lock's id, the lock being
        the electronic seal). 200, 403, 404, 409, 422 or 503."""
        if caller.role != CUSTOMS:
            return 403, {"error": "only customs staff of the origin office approve a declaration."}
        record, problem = await self._own(reference, caller)
        if record is None:
            assert problem is not None
            return problem
        seal_numbers, errors = _seal_numbers(record, seals)
        if errors:
            return 422, _errors(errors)
        status = (await self._with_status(record))["status"]
        if record.get("approval"):
            return 409, {"error": f"declaration {record['reference']} is already approved."}
        if status != "bound":
            return 409, {
                "error": f"declaration {record['reference']} is {status.replace('_', ' ')}; the origin office "
                "approves a bound declaration before its lock is sealed."
            }
        now = self.clock().replace(microsecond=0)
        decl = record["declaration"]
        topic = TRANSFERS.topic(decl["destination_gate"])
        transfer = TransferRecord.model_validate(
            {
                "declaration_id": decl["declaration_id"],
                "reference": record["reference"],
                "origin_site": decl["origin_site"],
                "destination_gate": decl["destination_gate"],
                "approving_office": caller.name,
                "approved_at": format_ts(now),
                "vehicle_plate": decl["vehicle_plate"],
                "seals": [
                    {
                        "lock_id": c["lock_id"],
                        "container_no": c["container_no"],
                        "seal_no": seal_numbers.get(c["lock_id"], c["lock_id"]),
                    }
                    for c in decl.get("locks") or [decl]
                ],
                "declaration": decl,
            }
        ).to_payload()
        try:
            await self.publish(topic, json.dumps(transfer, ensure_ascii=False).encode("utf-8"))
        except InfrastructureError as exc:
            return 503, {
                "error": f"declaration {record['reference']} not approved: {exc}; try again"
            }
        approval = {
            "office": caller.name,
            "at": format_ts(now),
            "transfer_topic": topic,
            "seals": transfer["seals"],
            "transfer": transfer,
        }
        event = {"event": "approved", "at": format_ts(now), "by": caller.name, "transfer": topic}
        approved = record | {"approval": approval, "history": [*record.get("history", []), event]}
        return 200, await self._with_status(await self.store.save(approved))

    async def transfers(self, caller: Principal, gate: str | None) -> tuple[int, dict[str, Any]]:
        """The destination office's inbox: 200 with every transfer record the origin offices
        sent to destination gate ``gate`` (as published on ``customs/transfers/{gate}``),
        newest first, each with its declaration's status now (so the office sees which
        containers are still on their way and which are written off); customs only (403),
        422 without a gate."""
        if caller.role != CUSTOMS:
            return 403, {"error": "only customs staff read the transfer records of a gate."}
        if not gate:
            return 422, _errors(
                [FieldError("gate", "gate: give the destination gate, e.g. ?gate=beilun-gate.")]
            )
        rows = []
        for record in await self.store.list_records(None):
            transfer = (record.get("approval") or {}).get("transfer")
            if transfer and transfer["destination_gate"] == gate:
                current = await self._with_status(record)
                rows.append({"status": current["status"], "transfer": transfer})
        rows.sort(
            key=lambda r: (r["transfer"]["approved_at"], r["transfer"]["reference"]), reverse=True
        )
        return 200, {"gate": gate, "transfers": rows}

    async def record_writeoff(self, notice: WriteOffNotice) -> str:
        """Keeps a write-off notice the destination sent back to the origin office on the
        declaration it writes off; the declarant then reads ``written_off``.

        Returns:
            what happened, as a sentence for the log: recorded, already recorded (a notice
            delivered twice), or why it concerns no declaration filed here.
        """
        reference = await self.store.reference_of(notice.declaration_id)
        record = await self.store.get(reference) if reference else None
        if record is None:
            return (
                f"write-off notice for declaration {notice.declaration_id} ignored: it was not "
                "filed at this intake."
            )
        decl = record["declaration"]
        locks = [c["lock_id"] for c in decl.get("locks") or [decl]]
        if notice.lock_id not in locks:
            return (
                f"write-off notice for declaration {notice.declaration_id} ignored: lock "
                f"{notice.lock_id} is not one of its locks ({', '.join(locks)})."
            )
        if not await self.store.add_writeoff(
            record["reference"], notice.lock_id, notice.to_payload()
        ):
            return (
                f"write-off notice for declaration {notice.declaration_id}, lock "
                f"{notice.lock_id}, received again; it was already recorded."
            )
        named = record["reference"]
        if notice.declaration_id != named:
            named += f" (declaration id {notice.declaration_id})"
        return (
            f"declaration {named}: container {notice.container_no} under lock {notice.lock_id} "
            f"written off at {notice.gate_id} at {format_ts(notice.written_off_at)}; the notice "
            "is recorded."
        )

    async def cancel(
        self, reference: str, reason: Any, caller: Principal
    ) -> tuple[int, dict[str, Any]]:
        """Cancels a declaration before departure: an accepted one at once; a bound one (lock not
        sealed yet) is withdrawn from the pipeline on ``customs/cancellations``. 200, 403, 404,
        409 or 503."""
        if caller.role != DECLARANT:
            return 403, {"error": "only the declarant who filed a declaration cancels it"}
        record, problem = await self._own(reference, caller)
        if record is None:
            assert problem is not None
            return problem
        status = (await self._with_status(record))["status"]
        refused = cancel_error(record, status)
        if refused is not None:
            return 409, {"error": refused}
        now = self.clock()
        note = (
            reason.strip()
            if isinstance(reason, str) and reason.strip()
            else "cancelled by the declarant"
        )
        if status == "bound":
            decl = record["declaration"]
            message = {
                "declaration_id": decl["declaration_id"],
                "locks": [c["lock_id"] for c in decl.get("locks") or [decl]],
                "reason": note[:1000],
                "ts": format_ts(now.replace(microsecond=0)),
            }
            try:
                await self.publish(
                    CANCELLATIONS.topic(), json.dumps(message, ensure_ascii=False).encode("utf-8")
                )
            except InfrastructureError as exc:
                return 503, {
                    "error": f"declaration {record['reference']} not cancelled: {exc}; try again"
                }
        cancelled = record | {
            "status": "cancelled",
            "cancelled_at": format_ts(now),
            "cancel_reason": note[:1000],
            "history": [
                *record.get("history", []),
                {"event": "cancelled", "at": format_ts(now), "reason": note[:1000]},
            ],
        }
        return 200, await self._with_status(await self.store.save(cancelled))

    async def bind(
        self, reference: str, vehicle_plate: Any, caller: Principal, now: datetime | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Binds reference and vehicle and publishes the declaration; 200, 403, 404, 409, 422 or 503.

        Only the declarant who filed it binds a declaration (another's is 404, customs 403).
        """
        if caller.role != DECLARANT:
            return 403, {"error": "only the declarant who filed a declaration binds it"}
        now = now or self.clock()
        reference = normalise_reference(reference)
        record = await self.store.get(reference)
        if record is None or not caller.may_see(record.get("declarant")):
            return 404, {
                "error": f"no declaration with reference {reference}; check the reference number"
            }
        if record["status"] == "cancelled":
            return 409, {"error": f"declaration {reference} is cancelled; file a new declaration."}
        if record["status"] == "bound":
            return 409, {
                "error": f"declaration {reference} is already bound to {record['vehicle_plate']} "
                f"(at {record['bound_at']})"
            }
        decl = TransitDeclaration.model_validate(record["declaration"])
        errors = bind_errors(
            record["vehicle_plate"], vehicle_plate, decl.eta_ts, now, self.tz, self.limits
        )
        if errors:
            return 422, _errors(errors)
        if not await self.store.claim_binding(reference):
            return 409, {"error": f"declaration {reference} is being bound or is already bound"}
        payload = json.dumps(decl.to_payload(), ensure_ascii=False).encode("utf-8")
        try:
            await self.publish(DECLARATIONS.topic(), payload)
        except InfrastructureError as exc:
            await self.store.release_binding(reference)
            return 503, {"error": f"declaration {reference} not bound: {exc}; try again"}
        return 200, await self.store.mark_bound(reference, normalise_plate(str(vehicle_plate)), now)

    def fees(self, body: Any) -> tuple[int, dict[str, Any]]:
        """200 with the fee breakdown of ``body["cargo"]`` (and the late charge for
        ``body["days_late"]`` days after the deadline), or 422."""
        if not isinstance(body, dict):
            return 400, {"error": 'the body must be a JSON object {"cargo": [...]}'}
        items = fee_items(body.get("cargo"), self.limits)
        errors: list[FieldError] = [i for i in items if isinstance(i, FieldError)]
        days_late = body.get("days_late", 0)
        if not _is_days(days_late):
            errors.append(
                FieldError(
                    "days_late",
                    "days_late: must be a number of days from 0 to 3650 (how long after its "
                    "deadline the declaration comes).",
                )
            )
        if errors:
            return 422, _errors(errors)
        fee = estimate_fee(items, self.limits.hkd_rates)  # type: ignore[arg-type]
        return 200, with_late_charge(fee, timedelta(days=float(days_late))).to_dict()


def _next_version(record: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The record with its current version kept in ``versions`` and the version number raised."""
    version = record.get("version", 1) + 1
    return record | {
        "versions": [*record.get("versions", []), snapshot(record)],
        "version": version,
        "amended_at": format_ts(now),
        "history": [
            *record.get("history", []),
            {"event": "amended", "at": format_ts(now), "version": version},
        ],
    }


def _filed_late_by(record: dict[str, Any], limits: Limits) -> timedelta:
    """How long after its deadline the declaration was first filed. An amendment may move the
    arrival later, but it does not undo a late filing: the late charge never falls below it."""
    first = (record.get("versions") or [record])[0]
    arrival = parse_utc(first["declaration"]["eta_ts"])
    return parse_utc(record["submitted_at"]) - declaration_deadline(arrival, limits)


def _seal_numbers(record: dict[str, Any], seals: Any) -> tuple[dict[str, str], list[FieldError]]:
    """The seal numbers the approving office gave (lock id -> seal number), or the errors."""
    if seals is None:
        return {}, []
    decl = record["declaration"]
    locks = [c["lock_id"] for c in decl.get("locks") or [decl]]
    if not isinstance(seals, dict):
        return {}, [
            FieldError(
                "seals",
                f'seals: give an object of lock id to seal number, e.g. {{"{locks[0]}": "YW-000123"}}.',
            )
        ]
    errors = []
    for lock, number in seals.items():
        if lock not in locks:
            errors.append(
                FieldError(
                    f"seals.{lock}",
                    f"seals.{lock}: {lock} is not a lock of this declaration; its locks are "
                    f"{', '.join(locks)}.",
                )
            )
        elif not isinstance(number, str) or not 1 <= len(number.strip()) <= 64:
            errors.append(
                FieldError(
                    f"seals.{lock}", f"seals.{lock}: give the seal number, 1 to 64 characters."
                )
            )
    return {k: v.strip() for k, v in seals.items() if isinstance(v, str)}, errors


def _is_days(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 3650


# --------------------------------------------------------------------------- aiohttp shell

SERVICE = web.AppKey("service", IntakeService)


async def _json_body(request: web.Request) -> Any:
    # The pipeline's one strict JSON door (CONTRACT section 7): depth and size checked before
    # parsing, repeated keys, NaN and endless integers refused; never a 500.
    try:
        return load_json(await request.read(), "body", max_bytes=MAX_BODY_BYTES)
    except MessageError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps(
                {
                    "error": f"The body is not valid JSON ({exc.detail.removeprefix('not JSON: ')}); "
                    "send a JSON object with Content-Type application/json."
                }
            ),
            content_type="application/json",
        ) from exc


def _reply(result: tuple[int, dict[str, Any]]) -> web.Response:
    status, body = result
    if isinstance(body.get("error"), str):  # what a person reads is a sentence
        body = body | {"error": as_sentence(body["error"])}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def _submit(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        return _reply((400, {"error": "the body must be a JSON object (the declaration form)"}))
    return _reply(await request.app[SERVICE].submit(body, request[PRINCIPAL]))


async def _get(request: web.Request) -> web.Response:
    return _reply(
        await request.app[SERVICE].get(request.match_info["reference"], request[PRINCIPAL])
    )


async def _bind(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        return _reply((400, {"error": 'the body must be a JSON object {"vehicle_plate": "..."}'}))
    return _reply(
        await request.app[SERVICE].bind(
            request.match_info["reference"], body.get("vehicle_plate"), request[PRINCIPAL]
        )
    )


async def _list(request: web.Request) -> web.Response:
    status = request.query.get("status")
    return _reply(await request.app[SERVICE].list(request[PRINCIPAL], status))


async def _amend(request: web.Request) -> web.Response:
    body = await _json_body(request)
    return _reply(
        await request.app[SERVICE].amend(request.match_info["reference"], body, request[PRINCIPAL])
    )


async def _cancel(request: web.Request) -> web.Response:
    body = await _json_body(request)
    reason = body.get("reason") if isinstance(body, dict) else None
    return _reply(
        await request.app[SERVICE].cancel(
            request.match_info["reference"], reason, request[PRINCIPAL]
        )
    )


async def _transfers(request: web.Request) -> web.Response:
    gate = request.query.get("gate")
    return _reply(await request.app[SERVICE].transfers(request[PRINCIPAL], gate))


async def _approve(request: web.Request) -> web.Response:
    # {} or {"seals": {lock: seal number}}; the approving office is the authenticated caller.
    body = await _json_body(request)
    seals = body.get("seals") if isinstance(body, dict) else None
    return _reply(
        await request.app[SERVICE].approve(
            request.match_info["reference"], request[PRINCIPAL], seals
        )
    )


async def _fees(request: web.Request) -> web.Response:
    return _reply(request.app[SERVICE].fees(await _json_body(request)))


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi(), dumps=lambda o: json.dumps(o, ensure_ascii=False))


#: The app's health probe: component name -> "ok" or what is wrong (see create_app).
HEALTH = web.AppKey("health", Callable[[], Awaitable[dict[str, str]]])


async def _healthz(request: web.Request) -> web.Response:
    """200 when the intake can store and publish, 503 naming what is down otherwise."""
    probe = request.app.get(HEALTH)
    checks = await probe() if probe is not None else {}
    ok = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ok else "degraded", **checks}, status=200 if ok else 503
    )


@web.middleware
async def unknown_route(request: web.Request, handler: Any) -> web.StreamResponse:
    """An unknown path or method answers JSON with a sentence, like every other refusal."""
    try:
        return await handler(request)
    except web.HTTPNotFound as exc:
        if exc.content_type == "application/json":
            raise
        return web.json_response(
            {"error": f"There is nothing at {request.path}; GET /openapi.json lists the API."},
            status=404,
        )
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return web.json_response(
            {"error": f"{request.method} is not allowed on {request.path}; use {allowed}."},
            status=405,
            headers={"Allow": allowed},
        )


@web.middleware
async def outage(request: web.Request, handler: Any) -> web.StreamResponse:
    """A storage outage is a 503 with a JSON reason and Retry-After, never a bare 500."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        return await handler(request)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        log.warning("intake: Redis unavailable for %s %s: %s", request.method, request.path, exc)
        return web.json_response(
            {"error": "Declaration storage is unavailable; nothing was stored, retry later."},
            status=503,
            headers={"Retry-After": "5"},
        )


def build_app(service: IntakeService, authenticate: Authenticate) -> web.Application:
    """The aiohttp application around an :class:`IntakeService`.

    Args:
        service: the logic.
        authenticate: bearer token -> caller (see :mod:`smartlock.services.intake.auth`).
    """
    app = web.Application(
        middlewares=[unknown_route, outage, guard], client_max_size=MAX_BODY_BYTES
    )
    app[SERVICE] = service
    app[AUTHENTICATE] = authenticate
    app.router.add_post("/declarations", _submit)
    app.router.add_get("/declarations", _list)
    app.router.add_get("/declarations/{reference}", _get)
    app.router.add_patch("/declarations/{reference}", _amend)
    app.router.add_post("/declarations/{reference}/bind", _bind)
    app.router.add_post("/declarations/{reference}/cancel", _cancel)
    app.router.add_post("/declarations/{reference}/approve", _approve)
    app.router.add_get("/transfers", _transfers)
    app.router.add_post("/fees", _fees)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/healthz", _healthz)
    return app


def limits_from(settings: Any) -> Limits:
    """Limits from the ``intake`` settings section."""
    intake = settings.intake
    return Limits(
        intake.max_days_before_departure,
        intake.min_minutes_before_arrival,
        {k.upper(): Decimal(v) for k, v in intake.hkd_rates.items()},
    )


def create_app(
    settings: Any,
    clock: Clock = utc_now,
    places: Places | None = None,
    name: str | None = None,
) -> web.Application:
    """The service with Redis storage and MQTT publishing from ``settings``; connects on start-up.

    The intake is also the origin office's system: it subscribes to the write-off notices on
    ``customs/writeoffs/+`` (QoS 1, a persistent MQTT session named after ``name``, each notice
    acknowledged only once it is stored), so a notice sent while the intake is down arrives
    when it is back, and keeps each on the declaration it writes off.

    Args:
        settings: the frozen :class:`smartlock.settings.Settings`.
        clock: the time source (tests pass a fixed clock).
        places: known corridors and zones (default: from ``settings.geofence_dir`` or shipped).
        name: this intake's name; a restarted intake of the same name resumes its MQTT session
            and receives the notices sent meanwhile (default: the host name).
    """
    from smartlock.adapters.mqtt import MqttClient, Received, client_for
    from smartlock.adapters.redis_auth import async_redis_client
    from smartlock.services.intake.store import RedisStore

    if places is None:
        from smartlock.runtime import load_geofences

        places = Places.from_geofences(load_geofences(settings))
    # resend_s: a declaration the broker acknowledged just before a kill -9 is published again.
    mqtt = client_for(
        settings, "intake", f"{settings.mqtt.client_id_prefix}-intake-{uuid.uuid4().hex[:8]}",
        resend_s=settings.mqtt.resend_s,
    )  # fmt: skip
    redis = async_redis_client(settings, "intake")
    # The origin office's inbox (made at start-up): a persistent session, notices acknowledged
    # once stored.
    inboxes: list[MqttClient] = []

    async def publish(topic: str, payload: bytes) -> None:
        await mqtt.publish_all([(topic, payload, False)], qos=1)

    service = IntakeService(
        RedisStore(redis, settings.redis.prefix),
        publish,
        clock,
        places=places,
        limits=limits_from(settings),
        tz=settings.intake.timezone,
    )
    app = build_app(service, store_authenticator(CredentialStore(settings.credentials_dir)))

    async def health() -> dict[str, str]:
        checks = {"mqtt": "ok" if mqtt.connected else "down: not connected to the MQTT broker"}
        try:
            for inbox in inboxes:
                inbox.raise_if_failed()
                checks["writeoff_notices"] = (
                    "ok" if inbox.connected else "down: not connected to the MQTT broker"
                )
        except InfrastructureError as exc:
            checks["writeoff_notices"] = f"down: {exc}"
        try:
            await asyncio.wait_for(redis.ping(), 2.0)
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["redis"] = f"down: {type(exc).__name__}: {exc}"
        return checks

    app[HEALTH] = health

    async def lifecycle(app: web.Application) -> Any:
        await _ping_redis(redis, settings.redis.url)
        mqtt.connect()
        loop = asyncio.get_running_loop()
        inbox_name, held = claim_inbox(settings.credentials_dir, name)
        inbox = client_for(
            settings, "intake",
            f"{settings.mqtt.client_id_prefix}-intake-{inbox_name}-writeoffs",
            persistent=True, manual_ack=True,
        )  # fmt: skip
        inbox.session_lock = held  # released when it disconnects
        inboxes.append(inbox)
        log.info("intake: write-off notices come to the MQTT session %s", inbox.client_id)

        def on_notice(received: Received) -> None:  # paho's thread
            stored = asyncio.run_coroutine_threadsafe(take_notice(service, received), loop)

            def ack(done: Any) -> None:
                if not done.cancelled():  # cancelled at shutdown: the broker delivers it again
                    inbox.ack(received)

            stored.add_done_callback(ack)

        inbox.subscribe([WRITEOFFS.subscription], on_notice, qos=1)
        inbox.connect()
        yield
        inbox.disconnect()
        mqtt.disconnect()
        await redis.aclose()

    app.cleanup_ctx.append(lifecycle)
    return app


def claim_inbox(credentials_dir: Path, requested: str | None) -> tuple[str, IO[str] | None]:
    """The name of this intake's write-off session, and the lock that holds it.

    ``requested`` (``smartlock intake --name``) as given; otherwise the host name, or
    ``<host>-2``, ``-3`` ... when another intake on this host (same credentials store) runs
    under it: two intakes sharing one MQTT session would take it from each other endlessly.
    The names are agreed through an exclusive ``flock`` per name under
    ``<credentials dir>/.sessions/``, held while the intake runs.
    """
    if requested:
        return requested, None
    base = socket.gethostname()
    names = [base if n == 1 else f"{base}-{n}" for n in range(1, 100)]
    try:
        claimed = hold_first_free(credentials_dir / ".sessions", names, prefix="intake-inbox-")
    except OSError:
        return base, None  # a read-only store: the host name, unclaimed
    if claimed is not None:
        return claimed
    raise InfrastructureError(f"99 intakes already run on host {base}; give this one --name")


async def take_notice(service: IntakeService, received: Any, retry_s: float = 1.0) -> None:
    """Stores one write-off notice received on MQTT, retrying while storage is down (the
    notice is acknowledged to the broker only after this returns: never lost). A payload that
    is not a WriteOffNotice is logged with the reason and dropped."""
    try:
        notice = WriteOffNotice.model_validate(
            load_json(received.payload, "payload", max_bytes=MAX_BODY_BYTES)
        )
    except (MessageError, ValueError) as exc:
        log.error(
            "intake: a message on %s is not a write-off notice (%s); dropped: %r",
            received.topic, exc, received.payload[:2000],
        )  # fmt: skip
        return
    while True:
        try:
            log.info("intake: %s", await service.record_writeoff(notice))
            return
        except Exception as exc:  # noqa: BLE001 - storage down: keep the notice, try again
            log.warning(
                "intake: write-off notice for %s not stored yet (%s); retrying in %.0f s",
                notice.declaration_id, exc, retry_s,
            )  # fmt: skip
            await asyncio.sleep(retry_s)


async def _ping_redis(redis: Any, url: str) -> None:
    try:
        await redis.ping()
    except Exception as exc:  # noqa: BLE001 - any connection failure means the same to the operator
        raise InfrastructureError(
            f"cannot reach Redis at {url} ({exc}); start it with `smartlock stack up`"
        ) from exc


def memory_app(
    publish: Publish, authenticate: Authenticate, clock: Clock = utc_now, **kwargs: Any
) -> web.Application:
    """The service with an in-memory store (tests and demos without Redis)."""
    return build_app(IntakeService(MemoryStore(), publish, clock, **kwargs), authenticate)
