"""Declaration intake rules (Hong Kong road cargo system), each with the message it gives;
reference numbers; binding; the service logic on an in-memory store; the OpenAPI document."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smartlock.contract.models import TransitDeclaration
from smartlock.services.intake.auth import Principal
from smartlock.services.intake.forms import openapi, openapi_json
from smartlock.services.intake.reference import ALPHABET, is_valid_reference, make_reference
from smartlock.services.intake.rules import (
    PENDING_ID,
    Accepted,
    FieldError,
    Refused,
    bind_errors,
    check_contract_declaration,
    validate_submission,
)
from smartlock.services.intake.service import IntakeService
from smartlock.services.intake.store import MemoryStore

DOCS = Path(__file__).resolve().parents[2] / "docs"
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "acceptance.jsonl"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
FORMAT = 'write YYYY-MM-DD HH:MM with a zone, e.g. "2026-11-23 14:30 +08:00" or "2026-11-23 14:30 Asia/Shanghai"'
EXAMPLE = '"Bluetooth earphones, model X12, ABS plastic"'
PLATE_HINT = (
    "use a mainland plate (province character, letter, 5 letters or digits, e.g. 浙G12345; new-energy 6, "
    "e.g. 浙GD12345) or a Hong Kong plate (1-2 letters and 1-4 digits, e.g. AB1234)"
)


def road_form(**changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "consignor": {
            "name": "Yiwu Scarf Co.",
            "address": {
                "street": "Chouzhou North Road",
                "number": "1088",
                "district": "Futian",
                "city": "Yiwu",
                "postal_code": "322000",
                "country": "CN",
            },
        },
        "consignee": {
            "name": "Harbour Trading Ltd",
            "address": {
                "street": "Canton Road",
                "number": "3",
                "district": "Tsim Sha Tsui",
                "city": "Hong Kong",
                "country": "HK",
            },
        },
        "cargo": [
            {
                "description": "polyester knitted scarves, 180x70 cm",
                "packaging": "corrugated carton",
                "packages": 120,
                "quantity": 1200,
                "unit": "pcs",
                "value": 5400,
                "currency": "USD",
                "origin": "CN",
            }
        ],
        "mode": "road",
        "lock_id": "LK-01",
        "container_no": "CSQU3054383",
        "vehicle_plate": "浙G 01345",
        "corridor_id": "g1512-yiwu-beilun",
        "origin_site": "yiwu-origin",
        "destination_gate": "beilun-gate",
        "departure": "2026-11-23 16:05 +08:00",
        "arrival": "2026-11-23 19:35 Asia/Shanghai",
    }
    form.update(changes)
    return form


def rail_form(**changes: Any) -> dict[str, Any]:
    form = road_form(
        mode="rail",
        train_id="X9011",
        corridor_id="rail-yiwu-beilun",
        origin_site="yiwu-rail-origin",
        destination_gate="beilun-rail-gate",
        locks=[
            {"lock_id": "LK-R1", "container_no": "CSQU3054383"},
            {"lock_id": "LK-R2", "container_no": "MSCU1234566"},
        ],
    )
    for key in ("lock_id", "container_no", "vehicle_plate"):
        del form[key]
    form.update(changes)
    return form


def errors_of(form: Any, now: datetime = NOW) -> list[tuple[str, str]]:
    result = validate_submission(form, now)
    assert isinstance(result, Refused), result
    return [(e.field, e.message) for e in result.errors]


def with_path(form: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``form`` with the dotted ``path`` (``cargo.0.description``) set, or deleted if value is ...."""
    form = copy.deepcopy(form)
    *parents, last = path.split(".")
    target: Any = form
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return form


# --------------------------------------------------------------------------- accepted forms


def test_a_complete_road_form_is_accepted_and_normalised_to_the_contract() -> None:
    result = validate_submission(road_form(), NOW)
    assert isinstance(result, Accepted)
    payload = result.declaration.to_payload()
    assert payload["declaration_id"] == PENDING_ID and result.generated_id
    assert payload["vehicle_plate"] == "浙G01345"
    assert (payload["departure_ts"], payload["eta_ts"]) == (
        "2026-11-23T08:05:00Z",
        "2026-11-23T11:35:00Z",
    )
    assert payload["cargo"] == [
        {
            "description": "polyester knitted scarves, 180x70 cm",
            "quantity": 1200.0,
            "unit": "pcs",
            "value": 5400.0,
            "currency": "USD",
        }
    ]
    assert result.intake["consignee"]["address"]["street"] == "Canton Road"
    assert result.intake["cargo"][0]["packages"] == 120
    filled = result.with_reference("CCRN-2611-JRQ6-5")
    assert filled.declaration.declaration_id == "CCRN-2611-JRQ6-5" and not filled.generated_id


def test_a_given_declaration_id_is_kept() -> None:
    result = validate_submission(road_form(declaration_id="DCL-77"), NOW)
    assert isinstance(result, Accepted) and not result.generated_id
    assert result.with_reference("CCRN-2611-JRQ6-5").declaration.declaration_id == "DCL-77"


def test_a_rail_form_binds_several_locks_to_a_train() -> None:
    result = validate_submission(rail_form(), NOW)
    assert isinstance(result, Accepted)
    payload = result.declaration.to_payload()
    assert payload["train_id"] == "X9011" and payload["vehicle_plate"] == "X9011"
    assert [c["lock_id"] for c in payload["locks"]] == ["LK-R1", "LK-R2"]
    assert payload["lock_id"] == "LK-R1"


@pytest.mark.parametrize(
    "description",
    [
        "iPhone 15",
        "纯棉T恤，含棉量100%",
        "cotton T-shirts, 100% cotton",
        "Bluetooth earphones, model X12, ABS plastic",
        "electronic kitchen scales",
    ],
)
def test_specific_descriptions_are_accepted(description: str) -> None:
    assert isinstance(
        validate_submission(with_path(road_form(), "cargo.0.description", description), NOW),
        Accepted,
    )


@pytest.mark.parametrize(
    "plate", ["浙G12345", "浙G1234D", "浙GD12345", "粤Z1234港", "AB1234", "K9", "浙g·12345"]
)
def test_accepted_plates(plate: str) -> None:
    assert isinstance(validate_submission(road_form(vehicle_plate=plate), NOW), Accepted)


@pytest.mark.parametrize(
    "departure",
    [
        "2026-11-23 16:05 +08:00",
        "2026-11-23 08:05 UTC",
        "2026-11-23 08:05 Z",
        "2026-11-23 16:05 Asia/Shanghai",
        "2026-11-23 09:05 Europe/Paris",
    ],
)
def test_accepted_time_zones(departure: str) -> None:
    result = validate_submission(road_form(departure=departure), NOW)
    assert isinstance(result, Accepted)
    assert result.declaration.departure_ts == datetime(2026, 11, 23, 8, 5, tzinfo=UTC)


# --------------------------------------------------------------------------- every rule, with its message


MISSING = [
    ("consignor", "consignor: missing; give the consignor (shipper): name and address."),
    ("consignee", "consignee: missing; give the consignee (receiver): name and address."),
    ("consignor.name", "consignor.name: missing; give the consignor (shipper)'s name."),
    (
        "consignee.address",
        "consignee.address: missing; give street, number, district, city, postal code and country.",
    ),
    (
        "consignee.address.street",
        "consignee.address.street: missing; give the street name, e.g. Canton Road.",
    ),
    (
        "consignee.address.number",
        "consignee.address.number: missing; give the building or house number, e.g. 3.",
    ),
    (
        "consignee.address.district",
        "consignee.address.district: missing; give the district, e.g. Tsim Sha Tsui.",
    ),
    (
        "consignee.address.city",
        "consignee.address.city: missing; give the city, e.g. Hong Kong or Yiwu.",
    ),
    (
        "consignee.address.country",
        "consignee.address.country: missing; give the ISO country code, e.g. HK or CN.",
    ),
    (
        "consignor.address.postal_code",
        "consignor.address.postal_code: missing; addresses outside Hong Kong need a postal code, e.g. 322000.",
    ),
    (
        "cargo",
        "cargo: missing; list at least one cargo line with description, packaging, packages, quantity, unit, "
        "value, currency and origin.",
    ),
    (
        "cargo.0.description",
        "cargo[0].description: missing; describe the goods by name, model and material, "
        f"e.g. {EXAMPLE}.",
    ),
    (
        "cargo.0.packaging",
        "cargo[0].packaging: missing; give the packaging material and type, e.g. corrugated carton.",
    ),
    ("cargo.0.packages", "cargo[0].packages: missing; give the number of packages, e.g. 120."),
    ("cargo.0.quantity", "cargo[0].quantity: missing; give the quantity, e.g. 1200."),
    ("cargo.0.unit", "cargo[0].unit: missing; give the unit of the quantity, e.g. pcs, kg, pairs."),
    ("cargo.0.value", "cargo[0].value: missing; give the value of this line, e.g. 5400.00."),
    ("cargo.0.currency", "cargo[0].currency: missing; give the currency code, e.g. HKD."),
    (
        "cargo.0.origin",
        "cargo[0].origin: missing; give the place of origin as an ISO country code, e.g. CN or HK.",
    ),
    ("lock_id", "lock_id: missing; give the id of the smart lock on the container."),
    (
        "container_no",
        "container_no: missing; give the ISO 6346 container number, e.g. CSQU3054383.",
    ),
    ("vehicle_plate", "vehicle_plate: missing; give the vehicle plate, e.g. 浙G12345 or AB1234."),
    ("corridor_id", "corridor_id: missing; give the approved route corridor."),
    ("origin_site", "origin_site: missing; give the origin site zone."),
    ("destination_gate", "destination_gate: missing; give the destination gate zone."),
    ("departure", f"departure: missing; {FORMAT}."),
    ("arrival", f"arrival: missing; {FORMAT}."),
]


@pytest.mark.parametrize(("path", "message"), MISSING, ids=[p for p, _ in MISSING])
def test_each_core_item_must_be_present(path: str, message: str) -> None:
    field = message.split(":")[0]
    assert errors_of(with_path(road_form(), path, ...)) == [(field, message)]


INVALID = [
    (
        "cargo.0.description",
        "electronics",
        'cargo[0].description: "electronics" is too vague; say what the goods are: name, model and material, '
        f"e.g. {EXAMPLE}.",
    ),
    (
        "cargo.0.description",
        "Food.",
        f'cargo[0].description: "Food." is too vague; say what the goods are: name, model and material, e.g. {EXAMPLE}.',
    ),
    (
        "cargo.0.description",
        "  GOODS ",
        f'cargo[0].description: "GOODS" is too vague; say what the goods are: name, model and material, e.g. {EXAMPLE}.',
    ),
    (
        "cargo.0.description",
        "Electrical appliances",
        'cargo[0].description: "Electrical appliances" is too vague; say what the goods are: name, model and '
        f"material, e.g. {EXAMPLE}.",
    ),
    (
        "cargo.0.description",
        "电子设备",
        f'cargo[0].description: "电子设备" is too vague; say what the goods are: name, model and material, e.g. {EXAMPLE}.',
    ),
    (
        "cargo.0.description",
        "assorted electronic goods",
        'cargo[0].description: "assorted electronic goods" is too vague; say what the goods are: name, model and '
        f"material, e.g. {EXAMPLE}.",
    ),
    (
        "cargo.0.description",
        "electronics and other goods",
        'cargo[0].description: "electronics and other goods" is too vague; say what the goods are: name, model and '
        f"material, e.g. {EXAMPLE}.",
    ),
    (
        "cargo.0.description",
        "mobile phones",
        'cargo[0].description: "mobile phones" is not specific enough; give at least the name and the model or '
        f"material (a model number, or three words or more), e.g. {EXAMPLE}.",
    ),
    (
        "cargo.0.description",
        "scarves",
        'cargo[0].description: "scarves" is not specific enough; give at least the name and the model or '
        f"material (a model number, or three words or more), e.g. {EXAMPLE}.",
    ),
    (
        "cargo.0.packages",
        2.5,
        "cargo[0].packages: 2.5 must be a whole number; give the number of packages, e.g. 120.",
    ),
    ("cargo.0.quantity", 0, "cargo[0].quantity: must be above 0; give the quantity, e.g. 1200."),
    (
        "cargo.0.value",
        "lots",
        "cargo[0].value: 'lots' is not a number; give the value of this line, e.g. 5400.00.",
    ),
    (
        "cargo.0.value",
        True,
        "cargo[0].value: True is not a number; give the value of this line, e.g. 5400.00.",
    ),
    (
        "cargo.0.currency",
        "JPY",
        'cargo[0].currency: "JPY" is not accepted; use one of CNY, EUR, HKD, USD.',
    ),
    (
        "cargo.0.origin",
        "China",
        'cargo[0].origin: "China" is not an ISO 3166 country code; use two letters, e.g. CN or HK.',
    ),
    (
        "cargo.0.garment_or_footwear",
        "yes",
        "cargo[0].garment_or_footwear: must be true or false (garments or footwear).",
    ),
    (
        "cargo.0",
        "scarves",
        "cargo[0]: must be an object with description, packaging, packages, quantity, unit, "
        "value, currency and origin.",
    ),
    (
        "consignee.address.country",
        "Hong Kong",
        'consignee.address.country: "Hong Kong" is not an ISO 3166 country code; use two capital letters, e.g. HK or CN.',
    ),
    (
        "vehicle_plate",
        "ABC-12345",
        f'vehicle_plate: "ABC-12345" is not a vehicle plate; {PLATE_HINT}.',
    ),
    (
        "vehicle_plate",
        "浙I12345",
        f'vehicle_plate: "浙I12345" is not a vehicle plate; {PLATE_HINT}.',
    ),
    ("vehicle_plate", "IO1234", f'vehicle_plate: "IO1234" is not a vehicle plate; {PLATE_HINT}.'),
    (
        "container_no",
        "CSQU3054384",
        "container_no: container number 'CSQU3054384' has check digit 4, expected 3.",
    ),
    (
        "container_no",
        "CSQ3054383",
        "container_no: container number 'CSQ3054383' is not ISO 6346 (3-letter owner "
        "code, category U/J/Z, 6-digit serial, check digit), e.g. CSQU3054383.",
    ),
    (
        "lock_id",
        "lock 1",
        'lock_id: "lock 1" may hold only letters, digits and . _ : - (up to 64, starting with a '
        "letter or digit).",
    ),
    ("mode", "air", 'mode: "air" is not a transport mode; use "road" or "rail".'),
    (
        "train_id",
        "X9011",
        'train_id: only a rail declaration names a train; remove it or set mode to "rail".',
    ),
    (
        "corridor_id",
        "g60-yiwu-shanghai",
        'corridor_id: "g60-yiwu-shanghai" is not a known corridor; use one of '
        "g1512-yiwu-beilun, g1512-yiwu-daxie, rail-yiwu-beilun.",
    ),
    (
        "corridor_id",
        "rail-yiwu-beilun",
        'corridor_id: "rail-yiwu-beilun" is a rail corridor but the declaration is '
        "road; use one of g1512-yiwu-beilun, g1512-yiwu-daxie.",
    ),
    (
        "origin_site",
        "beilun-gate",
        'origin_site: "beilun-gate" is not a known origin site; use one of yiwu-origin, '
        "yiwu-rail-origin.",
    ),
    (
        "destination_gate",
        "rest-fenghua",
        'destination_gate: "rest-fenghua" is not a known destination gate; use '
        "one of beilun-gate, beilun-rail-gate, daxie-gate.",
    ),
    (
        "departure",
        "2026-11-23 16:05:00 +08:00",
        f'departure: "2026-11-23 16:05:00 +08:00" has seconds; give the time to the minute: {FORMAT}.',
    ),
    ("departure", "2026-11-23 16:05", f'departure: "2026-11-23 16:05" has no time zone; {FORMAT}.'),
    (
        "departure",
        "2026-11-23T08:05:00Z",
        f'departure: "2026-11-23T08:05:00Z" is not a time to the minute; {FORMAT}.',
    ),
    (
        "departure",
        "23/11/2026 16:05 +08:00",
        f'departure: "23/11/2026 16:05 +08:00" is not a time to the minute; {FORMAT}.',
    ),
    (
        "departure",
        "2026-02-30 16:05 +08:00",
        f'departure: "2026-02-30 16:05 +08:00" is not a valid date and time; {FORMAT}.',
    ),
    (
        "departure",
        "2026-11-23 16:05 Mars/Olympus",
        'departure: "Mars/Olympus" is not a time zone; use an offset such as +08:00 or an IANA name such as '
        "Asia/Shanghai.",
    ),
    (
        "arrival",
        "2026-11-23 15:05 +08:00",
        "arrival: must be after departure; give the expected arrival at the control point.",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), INVALID, ids=[f"{p}={v}" for p, v, _ in INVALID]
)
def test_each_invalid_value_gets_its_message(path: str, value: Any, message: str) -> None:
    field = message.split(":")[0]
    assert errors_of(with_path(road_form(), path, value)) == [(field, message)]


def test_submission_earlier_than_14_days_before_departure_is_refused() -> None:
    now = datetime(2026, 11, 9, 8, 4, tzinfo=UTC)  # 14 days and one minute before departure
    assert errors_of(road_form(), now) == [
        (
            "departure",
            "departure: too early to declare; submit no earlier than "
            "14 days before departure, i.e. from 2026-11-09 16:05 "
            "Asia/Shanghai.",
        )
    ]
    assert isinstance(validate_submission(road_form(), now + timedelta(minutes=1)), Accepted)


def test_submission_later_than_30_minutes_before_arrival_is_accepted_as_late() -> None:
    now = datetime(
        2026, 11, 23, 11, 5, 1, tzinfo=UTC
    )  # 29 min 59 s before arrival at the control point: late, not refused
    assert isinstance(validate_submission(road_form(), now), Accepted)
    assert isinstance(validate_submission(road_form(), now - timedelta(seconds=1)), Accepted)


def test_every_error_is_reported_at_once() -> None:
    form = with_path(
        road_form(vehicle_plate="XYZ", departure="2026-11-23 16:05"), "cargo.0.description", "goods"
    )
    form = with_path(form, "consignor.address.street", ...)
    assert [f for f, _ in errors_of(form)] == [
        "consignor.address.street",
        "cargo[0].description",
        "vehicle_plate",
        "departure",
    ]


def test_not_an_object_is_refused() -> None:
    assert errors_of(["not", "a", "form"]) == [
        ("", "the declaration must be a JSON object; see GET /openapi.json.")
    ]


def test_rail_rules() -> None:
    assert errors_of(rail_form(locks=[])) == [
        (
            "locks",
            'locks: missing; a rail declaration lists its containers as [{"lock_id": ..., "container_no": ...}, '
            "...].",
        )
    ]
    twice = [
        {"lock_id": "LK-R1", "container_no": "CSQU3054383"},
        {"lock_id": "LK-R1", "container_no": "MSCU1234566"},
    ]
    assert errors_of(rail_form(locks=twice)) == [
        ("locks", "locks: a lock id appears twice; list each lock once.")
    ]
    assert errors_of(rail_form(train_id=None)) == [
        ("train_id", "train_id: missing; give the train number, e.g. X9011.")
    ]
    assert errors_of(rail_form(corridor_id="g1512-yiwu-beilun")) == [
        (
            "corridor_id",
            'corridor_id: "g1512-yiwu-beilun" is a road corridor but the declaration is rail; use one of '
            "rail-yiwu-beilun.",
        )
    ]
    bad = [{"lock_id": "LK-R1", "container_no": "CSQU3054384"}]
    assert errors_of(rail_form(locks=bad)) == [
        (
            "locks[0].container_no",
            "locks[0].container_no: container number 'CSQU3054384' has check digit 4, expected 3.",
        )
    ]


# --------------------------------------------------------------------------- binding


def test_bind_rules() -> None:
    eta = datetime(2026, 11, 23, 11, 35, tzinfo=UTC)
    assert bind_errors("浙G01345", "浙g 01345", eta, NOW) == []
    assert bind_errors("浙G01345", "浙G01345", eta, eta - timedelta(minutes=30)) == []
    assert bind_errors("浙G01345", "浙B88888", eta, NOW) == [
        FieldError(
            "vehicle_plate",
            'vehicle_plate: "浙B88888" does not match the declared plate 浙G01345; bind with the '
            "declared vehicle or amend the declaration",
        )
    ]
    assert bind_errors("浙G01345", "", eta, NOW) == [
        FieldError(
            "vehicle_plate",
            "vehicle_plate: missing; give the plate of the vehicle carrying the goods",
        )
    ]
    assert bind_errors("浙G01345", "浙G01345", eta, eta - timedelta(minutes=29)) == [
        FieldError(
            "arrival",
            "arrival: too late to bind; the driver binds at least 30 minutes before arrival at the control "
            "point, i.e. by 2026-11-23 19:05 Asia/Shanghai; declare again with a later arrival",
        )
    ]


# --------------------------------------------------------------------------- contract payloads


def test_golden_declarations_pass_the_contract_rules() -> None:
    declarations = [
        json.loads(line)["payload"]
        for line in GOLDEN.read_text(encoding="utf-8").splitlines()
        if json.loads(line)["topic"] == "customs/declarations"
    ]
    assert declarations
    for payload in declarations:
        assert check_contract_declaration(TransitDeclaration.model_validate(payload)) == [], (
            payload["declaration_id"]
        )


def test_vague_contract_declaration_is_flagged() -> None:
    result = validate_submission(road_form(), NOW)
    assert isinstance(result, Accepted)
    payload = result.declaration.to_payload()
    payload["cargo"][0]["description"] = "electronics"
    payload["cargo"][0]["value"] = 0
    payload["vehicle_plate"] = "TRUCK-1"
    errors = check_contract_declaration(TransitDeclaration.model_validate(payload))
    assert [e.field for e in errors] == ["cargo[0].description", "cargo[0].value", "vehicle_plate"]
    assert errors[1].message == "cargo[0].value: must be above 0; declare the value of the goods."


# --------------------------------------------------------------------------- reference numbers


def test_references_are_random_checked_and_friendly() -> None:
    refs = [make_reference(NOW) for _ in range(5000)]
    assert len(set(refs)) == 5000
    assert make_reference(NOW, "JRQ67KMP") == "CCRN-2611-JRQ6-7KMP-T"
    assert all(is_valid_reference(r) for r in refs)
    assert is_valid_reference(" ccrn-2611-jrq6-7kmp-t ")
    ref = refs[0]
    for i, ch in enumerate(ref):
        if ref[i] in ALPHABET and 10 <= i <= 18 and i != 14:  # every mistyped body symbol is caught
            for other in "123456789ABCDEFGHJKMNPQRSTVWXY":
                if other != ch:
                    assert not is_valid_reference(ref[:i] + other + ref[i + 1 :]), (i, other)
    with pytest.raises(ValueError, match="must be 8 symbols"):
        make_reference(NOW, "JRQ6")


def test_references_are_not_enumerable() -> None:
    """Consecutive references share no structure: the old scrambled counter made the difference
    of consecutive bodies a constant; random bodies make every difference different."""

    def number(reference: str) -> int:
        body = reference[10:14] + reference[15:19]
        return sum(ALPHABET.index(ch) * 32**i for i, ch in enumerate(reversed(body)))

    numbers = [number(make_reference(NOW)) for _ in range(1000)]
    steps = {(b - a) % 32**8 for a, b in zip(numbers, numbers[1:], strict=False)}
    assert len(steps) > 990
    # Each of the 40 bits is set in about half the references (a counter fills the low bits first).
    for bit in range(40):
        share = sum(n >> bit & 1 for n in numbers) / len(numbers)
        assert 0.38 < share < 0.62, (bit, share)


# --------------------------------------------------------------------------- service logic (memory store)


DECLARANT = Principal("acme-forwarding", "declarant")


def _service(clock: datetime = NOW) -> tuple[IntakeService, list[tuple[str, bytes]]]:
    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes) -> None:
        sent.append((topic, payload))

    return IntakeService(MemoryStore(), publish, lambda: clock), sent


def test_submit_then_bind_publishes_the_contract_declaration() -> None:
    async def scenario() -> None:
        service, sent = _service()
        status, body = await service.submit(road_form(), DECLARANT)
        assert status == 201 and body["status"] == "accepted"
        assert body["declaration_id"] == body["reference"] == body["declaration"]["declaration_id"]
        assert body["fee"]["total"] == "0.50"
        assert sent == []  # unbound: unknown to the pipeline
        assert (await service.bind(body["reference"], "浙B88888", DECLARANT))[0] == 422
        status, record = await service.bind(body["reference"].lower(), "浙g01345", DECLARANT)
        assert (
            status == 200
            and record["status"] == "bound"
            and record["bound_at"] == "2026-11-23T02:00:00Z"
        )
        assert sent == [
            ("customs/declarations", json.dumps(body["declaration"], ensure_ascii=False).encode())
        ]
        assert (await service.bind(body["reference"], "浙G01345", DECLARANT))[0] == 409
        assert (await service.get(body["reference"], DECLARANT))[1]["status"] == "bound"
        assert (await service.get("CCRN-2611-0000-0000-0", DECLARANT))[0] == 404
        assert (await service.bind("CCRN-2611-0000-0000-0", "浙G01345", DECLARANT))[0] == 404

    asyncio.run(scenario())


def test_a_late_declaration_is_accepted_with_its_late_charge_but_cannot_be_bound() -> None:
    async def scenario() -> None:
        # arrival 2026-11-23 11:35Z, deadline 11:05Z; submitted 15 days and 1 minute later
        service, sent = _service(datetime(2026, 12, 8, 11, 6, tzinfo=UTC))
        status, body = await service.submit(
            road_form(departure="2026-11-23 16:05 +08:00"), DECLARANT
        )
        assert status == 201, body
        fee = body["fee"]
        assert (fee["declaration_charge"], fee["late_charge"], fee["total"]) == (
            "0.50",
            "1.00",
            "1.50",
        )
        assert (fee["late"]["periods"], fee["late"]["multiplier"]) == (2, 2)
        assert fee["late"]["message"].startswith("The declaration is 15 days and 1 minute late")
        assert (await service.bind(body["reference"], "浙G01345", DECLARANT))[0] == 422
        assert sent == []
        on_time, _ = _service()
        status, body = await on_time.submit(road_form(), DECLARANT)
        assert (body["fee"]["late_charge"], "late" in body["fee"]) == ("0.00", False)

    asyncio.run(scenario())


def test_fee_endpoint_adds_the_late_charge_for_days_late() -> None:
    service, _ = _service()
    status, body = service.fees({"cargo": [{"value": 47001}], "days_late": 28.5})
    assert status == 200 and (body["late_charge"], body["total"]) == ("3.00", "4.00")
    status, body = service.fees({"cargo": [{"value": 47001}], "days_late": "3"})
    assert status == 422 and body["errors"][0]["field"] == "days_late"
    assert body["errors"][0]["message"].endswith("the declaration comes).")
    assert service.fees({"cargo": [], "days_late": -1})[1]["errors"][-1]["field"] == "days_late"


def test_refused_and_duplicate_submissions() -> None:
    async def scenario() -> None:
        service, _ = _service()
        status, body = await service.submit(road_form(vehicle_plate="XYZ"), DECLARANT)
        assert status == 422 and body["errors"][0]["field"] == "vehicle_plate"
        assert (await service.submit(road_form(declaration_id="DCL-9"), DECLARANT))[0] == 201
        status, body = await service.submit(road_form(declaration_id="DCL-9"), DECLARANT)
        assert status == 409 and body["error"].startswith(
            "declaration id DCL-9 is already declared"
        )

    asyncio.run(scenario())


def test_fee_endpoint_logic() -> None:
    service, _ = _service()
    assert service.fees({"cargo": [{"value": 47001}]})[1]["total"] == "1.00"
    assert (
        service.fees({"cargo": [{"value": 47001, "garment_or_footwear": True, "origin": "HK"}]})[1][
            "total"
        ]
        == "15.40"
    )
    assert service.fees(road_form())[1]["declaration_charge"] == "0.50"
    assert service.fees({"cargo": []}) == (
        422,
        {
            "errors": [
                {
                    "field": "cargo",
                    "message": "cargo: missing; list the cargo lines with value and currency.",
                }
            ]
        },
    )
    assert service.fees([1])[0] == 400


# --------------------------------------------------------------------------- OpenAPI


def test_committed_openapi_document_is_current() -> None:
    committed = (DOCS / "openapi.json").read_text(encoding="utf-8")
    assert committed == openapi_json(), (
        "docs/openapi.json is stale: run "
        "`smartlock intake --write-openapi docs/openapi.json` and commit it"
    )


def test_openapi_document_references_resolve() -> None:
    doc = openapi()
    assert doc["openapi"] == "3.1.0"
    text = json.dumps(doc)
    for ref in set(__import__("re").findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref
    assert {
        "/declarations",
        "/declarations/{reference}",
        "/declarations/{reference}/bind",
        "/fees",
        "/openapi.json",
        "/healthz",
    } <= set(doc["paths"])


def test_a_bind_whose_publish_is_not_acknowledged_stays_accepted() -> None:
    from smartlock.errors import InfrastructureError

    async def scenario() -> None:
        calls: list[bytes] = []

        async def failing(topic: str, payload: bytes) -> None:
            calls.append(payload)
            if len(calls) == 1:
                raise InfrastructureError("MQTT broker did not acknowledge message 1 within 10.0s")

        service = IntakeService(MemoryStore(), failing, lambda: NOW)
        _, body = await service.submit(road_form(), DECLARANT)
        status, answer = await service.bind(body["reference"], "浙G01345", DECLARANT)
        assert status == 503 and "not bound" in answer["error"] and "try again" in answer["error"]
        assert (await service.get(body["reference"], DECLARANT))[1]["status"] == "accepted"
        assert (await service.bind(body["reference"], "浙G01345", DECLARANT))[0] == 200
        assert len(calls) == 2

    asyncio.run(scenario())


def test_intake_command_writes_the_openapi_document(tmp_path: Path) -> None:
    import argparse

    from smartlock.cli.commands import intake

    parser = argparse.ArgumentParser()
    intake.configure(parser)
    assert intake.run(parser.parse_args(["--write-openapi", str(tmp_path / "openapi.json")])) == 0
    assert (tmp_path / "openapi.json").read_text(encoding="utf-8") == openapi_json()
