"""The HTTP request and response bodies, as pydantic models, and the OpenAPI document.

The models document the API (``GET /openapi.json``, ``docs/openapi.json``); the rules in
:mod:`smartlock.services.intake.rules` do the validation, so that every broken rule gets its own
message the declarant can act on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from smartlock.contract.models import TransferRecord, TransitDeclaration
from smartlock.services.intake.auth import MAX_BODY_BYTES

LOCAL_TIME = (
    "YYYY-MM-DD HH:MM and a zone: an offset (+08:00) or an IANA name (Asia/Shanghai); no seconds"
)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(_Doc):
    """A complete address: street, number, district, city, country; postal code outside Hong Kong."""

    street: str = Field(examples=["Canton Road"])
    number: str = Field(examples=["3"])
    district: str = Field(examples=["Tsim Sha Tsui"])
    city: str = Field(examples=["Hong Kong"])
    postal_code: str | None = Field(
        None, description="required unless country is HK", examples=["322000"]
    )
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2", examples=["HK"])


class Party(_Doc):
    """Consignor (shipper) or consignee (receiver): core data items 1 and 2."""

    name: str
    address: Address


class Permit(_Doc):
    """A permit that covers special goods on a cargo line."""

    kind: Literal["cites", "medicine", "dangerous_goods"] = Field(
        description="cites: CITES export permit (AFCD licence, Cap. 586); medicine: Department of "
        "Health licence (Cap. 138, 134, 549); dangerous_goods: Fire Services Department licence "
        "(Cap. 295)"
    )
    reference: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9/ ._-]{3,39}$",
        description="the permit number as printed",
        examples=["CN/2026/00123"],
    )


class CargoLine(_Doc):
    """One cargo line: core data items 3 to 7, plus what the training levy needs."""

    description: str = Field(
        description="specific: name, model and material; vague words such as "
        "'electronics', 'food', 'goods' are refused",
        examples=["Bluetooth earphones, model X12, ABS plastic"],
    )
    packaging: str = Field(
        description="packaging material and type", examples=["corrugated carton"]
    )
    packages: int = Field(gt=0, description="number of packages", examples=[120])
    quantity: float = Field(gt=0, examples=[1200])
    unit: str = Field(examples=["pcs"])
    value: float = Field(gt=0, examples=[5400.0])
    currency: str = Field(
        description="one of the fixed-rate currencies (setting intake.hkd_rates)", examples=["USD"]
    )
    origin: str = Field(
        pattern=r"^[A-Z]{2}$",
        description="place of origin, ISO 3166 alpha-2 (HK for Hong Kong)",
        examples=["CN"],
    )
    garment_or_footwear: bool = Field(
        False,
        description="garments or footwear (Cap. 318 schedule 1); with "
        "origin HK the training levy applies",
    )
    permits: list[Permit] | None = Field(
        None,
        description="special goods (endangered species, medicines, dangerous goods; see the list "
        "in smartlock/services/intake/special_goods.toml) need a permit of their class's kind",
    )


class RailLock(_Doc):
    lock_id: str
    container_no: str = Field(description="ISO 6346 with check digit", examples=["CSQU3054383"])


class DeclarationForm(_Doc):
    """``POST /declarations``: the eight core data items and the transit data."""

    declaration_id: str | None = Field(None, description="omit to use the reference number")
    consignor: Party
    consignee: Party
    cargo: list[CargoLine] = Field(min_length=1)
    mode: Literal["road", "rail"] = "road"
    lock_id: str | None = Field(None, description="road: the smart lock on the container")
    container_no: str | None = Field(
        None, description="road: ISO 6346 with check digit", examples=["CSQU3054383"]
    )
    vehicle_plate: str | None = Field(
        None,
        description="road: mainland (浙G12345, 浙GD12345, 粤Z1234港) or "
        "Hong Kong (AB1234) plate; rail: optional, defaults to train_id",
    )
    train_id: str | None = Field(None, description="rail only")
    locks: list[RailLock] | None = Field(
        None, description="rail only: every container and its lock"
    )
    corridor_id: str = Field(examples=["g1512-yiwu-beilun"])
    origin_site: str = Field(examples=["yiwu-origin"])
    destination_gate: str = Field(examples=["beilun-gate"])
    departure: str = Field(
        description=f"departure time: {LOCAL_TIME}", examples=["2026-11-23 16:05 +08:00"]
    )
    arrival: str = Field(
        description=f"arrival at the control point (gate): {LOCAL_TIME}",
        examples=["2026-11-23 19:35 Asia/Shanghai"],
    )


class FieldErrorModel(_Doc):
    field: str = Field(description="dotted path, e.g. cargo[0].description")
    message: str = Field(description="what to fix; starts with the field")


class Errors(_Doc):
    """422: every broken rule at once."""

    errors: list[FieldErrorModel]


class Problem(_Doc):
    """400, 404, 409, 503: one message."""

    error: str


class LateCharge(_Doc):
    """A late declaration pays the fee once more for every started 14 days after its deadline
    (30 minutes before arrival), at most ten times the fee."""

    late_by_s: int = Field(description="seconds after the deadline")
    periods: int = Field(description="started periods of 14 days")
    multiplier: int = Field(description="min(periods, 10)")
    fee: str = Field(description="declaration charge + training levy, HK$")
    late_charge: str = Field(description="fee x multiplier, HK$")
    message: str


class Fee(_Doc):
    """Fee breakdown in HK$ (amounts as exact decimal strings)."""

    currency: Literal["HKD"]
    value_hkd: str
    levied_value_hkd: str
    exempt: bool
    declaration_charge: str
    training_levy: str
    late_charge: str = Field(description="0.00 unless the declaration is late")
    total: str = Field(description="declaration charge + training levy + late charge")
    late: LateCharge | None = Field(None, description="present when the declaration is late")


class FeeRequest(_Doc):
    """``POST /fees``: cargo lines (value, currency, origin, garment_or_footwear are used); a full
    declaration form is accepted too."""

    model_config = ConfigDict(extra="allow")
    cargo: list[dict[str, Any]]
    days_late: float = Field(
        0, ge=0, le=3650, description="days after the deadline: adds the late charge"
    )


class Accepted(_Doc):
    """201: the declaration is accepted; give the reference to the driver."""

    reference: str = Field(
        pattern=r"^CCRN-\d{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]$", examples=["CCRN-2611-JRQ6-7KMP-T"]
    )
    declaration_id: str
    status: Literal["accepted"]
    fee: Fee
    declaration: TransitDeclaration


class BindRequest(_Doc):
    """``POST /declarations/{reference}/bind``: the driver's vehicle plate."""

    vehicle_plate: str


Status = Literal[
    "accepted", "cancelled", "bound", "sealed", "in_transit", "released", "written_off", "inspect"
]


class ContainerStatus(_Doc):
    """One container of a bound declaration, as the pipeline reports it."""

    model_config = ConfigDict(extra="allow")
    lock_id: str
    container_no: str
    status: Status
    reasons: list[str] | None = Field(None, description="the verdict's reasons (inspect)")
    written_off_at: str | None = None
    decided_by: str | None = None
    gate_id: str | None = None


class HistoryEntry(_Doc):
    """One thing that happened to a declaration: ``submitted``, ``amended`` (with ``version``),
    ``bound`` (``vehicle_plate``), ``approved`` (``by`` the origin office, ``transfer`` topic),
    ``cancelled`` (``reason``) or ``written_off`` (``lock_id``, ``gate_id``, ``by``: from the
    WriteOffNotice the destination sent back on customs/writeoffs/{origin_site})."""

    model_config = ConfigDict(extra="allow")
    event: Literal["submitted", "amended", "bound", "approved", "cancelled", "written_off"]
    at: str


class Approval(_Doc):
    """``POST /declarations/{reference}/approve``: optionally the seal number the origin office
    recorded for each lock (default: the smart lock's id; the lock is the electronic seal)."""

    seals: dict[str, str] | None = Field(
        None, description='lock id -> seal number, e.g. {"LK-0001": "YW-2611-000123"}'
    )


class Record(_Doc):
    """A declaration, with its status following the loop: accepted, cancelled, or once bound
    bound, sealed, in_transit, released, written_off or inspect (with the verdict's reasons).
    The trip's progress comes from the pipeline's live state; ``written_off`` from the
    WriteOffNotice that the intake, as the origin office's system, received for every container
    (kept in ``writeoffs``)."""

    model_config = ConfigDict(extra="allow")
    reference: str
    declaration_id: str
    status: Status
    submitted_at: str
    bound_at: str | None
    vehicle_plate: str
    fee: Fee
    declaration: TransitDeclaration
    intake: dict[str, Any]
    containers: list[ContainerStatus] | None = Field(None, description="bound: per container")
    reasons: list[str] | None = Field(None, description="inspect: the verdict's reasons")
    version: int | None = Field(None, description="after an amendment: 2, 3, ...")
    versions: list[dict[str, Any]] | None = Field(None, description="every earlier version")
    history: list[HistoryEntry] = Field(description="what happened to it, oldest first")
    approval: dict[str, Any] | None = Field(
        None, description="the origin office's approval: office, at, transfer_topic, seals"
    )
    writeoffs: dict[str, Any] | None = Field(
        None, description="lock id -> the WriteOffNotice received for that container"
    )


class Transfer(_Doc):
    """One transfer record as the destination office reads it, with its declaration's status."""

    status: Status
    transfer: TransferRecord


class TransferList(_Doc):
    """``GET /transfers?gate=G``: the transfer records sent to destination gate G, newest first
    (customs only): the destination office's inbox of what the origin offices approved and
    sealed, and so what it monitors and writes off."""

    gate: str
    transfers: list[Transfer]


class Summary(_Doc):
    """One declaration in a list."""

    reference: str
    declaration_id: str
    status: Status
    submitted_at: str
    vehicle_plate: str
    version: int = Field(description="1, then 2, 3, ... after each amendment")


class DeclarationList(_Doc):
    """``GET /declarations``: the caller's declarations (customs: all), newest first."""

    declarations: list[Summary]


class Amendment(_Doc):
    """``PATCH /declarations/{reference}``: the top-level form fields to change (a JSON merge
    of DeclarationForm). Before binding any field; once bound only ``vehicle_plate``, until the
    container reaches the gate."""

    model_config = ConfigDict(extra="allow")


class CancelRequest(_Doc):
    """``POST /declarations/{reference}/cancel``: before departure (lock not sealed)."""

    reason: str | None = Field(None, max_length=1000)


def _response(description: str, model: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if model:
        out["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}
    return out


def _body(model: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }


_REF = [{"name": "reference", "in": "path", "required": True, "schema": {"type": "string"}}]


def _guarded(responses: dict[str, Any], body: bool) -> dict[str, Any]:
    """Adds the answers of the guard every protected request passes (see intake/auth.py)."""
    out = dict(responses)
    out["401"] = _response("no valid API token (Authorization: Bearer <token>)", "Problem")
    out.setdefault("403", _response("the caller's role may not do this", "Problem"))
    if body:
        out["413"] = _response(f"body larger than {MAX_BODY_BYTES} bytes", "Problem")
        out["415"] = _response("body is not Content-Type application/json", "Problem")
    return out


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the intake service, generated from the models."""
    models: list[type[BaseModel]] = [
        DeclarationForm,
        FieldErrorModel,
        Errors,
        Problem,
        Fee,
        FeeRequest,
        Accepted,
        BindRequest,
        Record,
        HistoryEntry,
        Approval,
        DeclarationList,
        TransferList,
        Amendment,
        CancelRequest,
    ]
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    paths = {
        "/declarations": {
            "get": {
                "summary": "The caller's declarations (customs: all), optionally by status",
                "operationId": "listDeclarations",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": list(Status.__args__)},
                    }
                ],
                "responses": _guarded(
                    {
                        "200": _response("newest first", "DeclarationList"),
                        "422": _response("unknown status", "Errors"),
                    },
                    body=False,
                ),
            },
            "post": {
                "summary": "Submit a declaration (Hong Kong road cargo rules)",
                "operationId": "submitDeclaration",
                "requestBody": _body("DeclarationForm"),
                "responses": _guarded(
                    {
                        "201": _response("accepted, with its reference number and fee", "Accepted"),
                        "400": _response("body is not a JSON object", "Problem"),
                        "409": _response("declaration id already declared", "Problem"),
                        "422": _response("refused; every broken rule with what to fix", "Errors"),
                    },
                    body=True,
                ),
            },
        },
        "/declarations/{reference}": {
            "get": {
                "summary": "A declaration by reference",
                "operationId": "getDeclaration",
                "parameters": _REF,
                "responses": _guarded(
                    {
                        "200": _response("the record, status following the loop", "Record"),
                        "404": _response("unknown", "Problem"),
                    },
                    body=False,
                ),
            },
            "patch": {
                "summary": "Amend a declaration (versioned; a bound one is published again)",
                "operationId": "amendDeclaration",
                "parameters": _REF,
                "requestBody": _body("Amendment"),
                "responses": _guarded(
                    {
                        "200": _response("the amended record", "Record"),
                        "400": _response("body is not a JSON object", "Problem"),
                        "404": _response("unknown reference", "Problem"),
                        "409": _response(
                            "cancelled, bound (only the plate may change), or arrived", "Problem"
                        ),
                        "422": _response("the amended form breaks a rule", "Errors"),
                        "503": _response("MQTT broker did not acknowledge; retry", "Problem"),
                    },
                    body=True,
                ),
            },
        },
        "/declarations/{reference}/approve": {
            "post": {
                "summary": "The origin office approves a bound declaration and seals it",
                "description": 'Customs staff only; body {} or {"seals": {lock: seal '
                "number}}. The transfer record (declaration, seal numbers, locks, time, "
                "approving office) is published on MQTT customs/transfers/{destination_gate}, "
                "which only that gate's identity may read (the destination office; see "
                "docs/asyncapi.yaml). The destination's write-off comes back on "
                "customs/writeoffs/{origin_site}; the intake receives it and the declaration "
                "becomes written_off.",
                "operationId": "approveDeclaration",
                "parameters": _REF,
                "requestBody": _body("Approval"),
                "responses": _guarded(
                    {
                        "200": _response("approved; the record carries 'approval'", "Record"),
                        "404": _response("unknown reference", "Problem"),
                        "409": _response("already approved, or not bound, or sealed", "Problem"),
                        "422": _response("a seal number for a lock not declared", "Errors"),
                        "503": _response("MQTT broker did not acknowledge; retry", "Problem"),
                    },
                    body=True,
                ),
            }
        },
        "/transfers": {
            "get": {
                "summary": "The destination office's inbox: transfer records sent to a gate",
                "description": "Customs staff only. Every transfer record the origin offices "
                "published on MQTT customs/transfers/{gate} (see docs/asyncapi.yaml), kept by "
                "the intake, newest first, each with its declaration's status now.",
                "operationId": "listTransfers",
                "parameters": [
                    {
                        "name": "gate",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "the destination gate, e.g. beilun-gate",
                    }
                ],
                "responses": _guarded(
                    {
                        "200": _response("newest first", "TransferList"),
                        "422": _response("no gate given", "Errors"),
                    },
                    body=False,
                ),
            }
        },
        "/declarations/{reference}/cancel": {
            "post": {
                "summary": "Cancel a declaration before departure",
                "description": "A bound declaration whose lock is not sealed yet is withdrawn "
                "from the pipeline on MQTT customs/cancellations.",
                "operationId": "cancelDeclaration",
                "parameters": _REF,
                "requestBody": _body("CancelRequest"),
                "responses": _guarded(
                    {
                        "200": _response("cancelled", "Record"),
                        "404": _response("unknown reference", "Problem"),
                        "409": _response("already cancelled, or sealed and departed", "Problem"),
                        "503": _response("MQTT broker did not acknowledge; retry", "Problem"),
                    },
                    body=True,
                ),
            }
        },
        "/declarations/{reference}/bind": {
            "post": {
                "summary": "Bind reference and vehicle (driver, at least 30 minutes before arrival)",
                "description": "On success the contract TransitDeclaration is published on MQTT "
                "customs/declarations (QoS 1) and acknowledged before the answer.",
                "operationId": "bindDeclaration",
                "parameters": _REF,
                "requestBody": _body("BindRequest"),
                "responses": _guarded(
                    {
                        "200": _response("bound and published", "Record"),
                        "400": _response("body is not a JSON object", "Problem"),
                        "404": _response("unknown reference", "Problem"),
                        "409": _response("already bound (or a bind is in progress)", "Problem"),
                        "422": _response("plate mismatch or too late", "Errors"),
                        "503": _response("MQTT broker did not acknowledge; retry", "Problem"),
                    },
                    body=True,
                ),
            }
        },
        "/fees": {
            "post": {
                "summary": "Fee estimate (HK$)",
                "operationId": "estimateFee",
                "requestBody": _body("FeeRequest"),
                "responses": _guarded(
                    {
                        "200": _response("the breakdown", "Fee"),
                        "400": _response("bad body", "Problem"),
                        "422": _response("bad cargo lines", "Errors"),
                    },
                    body=True,
                ),
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": {"description": "ok"}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smartlock declaration intake",
            "version": "1.0.0",
            "description": "Declarations after the Hong Kong road cargo system rules; bound "
            "declarations are published on MQTT customs/declarations. See docs/intake.md.",
        },
        "paths": paths,
        "security": [{"bearerToken": []}],
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "API token from `smartlock credentials issue declarant NAME` "
                    "(or `customs NAME`); /healthz and /openapi.json need none",
                }
            },
        },
    }


def openapi_json() -> str:
    """The document as committed in ``docs/openapi.json`` (sorted keys, 2-space indent)."""
    return json.dumps(openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_openapi(path: Path) -> Path:
    """Writes :func:`openapi_json` to ``path``."""
    path.write_text(openapi_json(), encoding="utf-8")
    return path
