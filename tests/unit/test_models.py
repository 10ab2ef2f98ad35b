"""Payload models and the decoding boundary (CONTRACT sections 2, 6, 7)."""

from __future__ import annotations

import json

import pytest

from smartlock.contract.codec import canonical_json, decode, sign, signature_valid
from smartlock.contract.models import LockTelemetry, TransitDeclaration, iso6346_check_digit
from smartlock.errors import MessageError

TELEMETRY = {
    "lock_id": "L1",
    "seq": 1,
    "ts": "2026-11-22T08:15:00Z",
    "lat": 29.3,
    "lon": 120.1,
    "seal": "sealed",
}
DECLARATION = {
    "declaration_id": "D1",
    "lock_id": "L1",
    "container_no": "CSQU3054383",
    "vehicle_plate": "浙G12345",
    "mode": "road",
    "corridor_id": "c",
    "origin_site": "o",
    "destination_gate": "g",
    "departure_ts": "2026-11-22T08:00:00Z",
    "eta_ts": "2026-11-22T11:00:00Z",
    "cargo": [
        {
            "description": "cotton T-shirts, men's, size L",
            "quantity": 500,
            "unit": "pcs",
            "value": 2000,
            "currency": "USD",
        }
    ],
}


@pytest.mark.parametrize("number,digit", [("CSQU305438", 3), ("MSCU123456", 6), ("TGHU987654", 2)])
def test_iso6346_check_digit(number: str, digit: int) -> None:
    assert iso6346_check_digit(number) == digit


def test_container_with_wrong_check_digit_is_refused() -> None:
    with pytest.raises(MessageError, match=r"container_no: .*check digit 4, expected 3"):
        decode("customs/declarations", dict(DECLARATION, container_no="CSQU3054384"))


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("ts", "2026-11-22T08:15:00+08:00", "not RFC 3339 UTC"),
        ("ts", "2026-11-22 08:15:00", "not RFC 3339 UTC"),
        ("ts", 1763799300, "RFC 3339 string"),
        ("lat", 91.0, "less than or equal to 90"),
        ("lon", -180.5, "greater than or equal to -180"),
        ("seq", -1, "greater than or equal to 0"),
        ("seq", True, "valid integer"),
        ("seq", 1.5, "valid integer"),
        ("seal", "open", "'sealed', 'unsealed' or 'tampered'"),
        ("colour", "red", "Extra inputs are not permitted"),
    ],
)
def test_telemetry_is_strict(field: str, value: object, fragment: str) -> None:
    with pytest.raises(MessageError) as info:
        decode("locks/L1/telemetry", dict(TELEMETRY, **{field: value}))
    assert info.value.reason == "invalid_payload"
    assert field in info.value.detail and fragment in info.value.detail


def test_decode_reasons() -> None:
    cases = [
        ("locks/L1/telemetry", b"{not json", "invalid_json"),
        ("locks/L1/telemetry", b"[1, 2]", "not_an_object"),
        ("locks/L2/telemetry", json.dumps(TELEMETRY).encode(), "topic_mismatch"),
        ("locks/L1/position", json.dumps(TELEMETRY).encode(), "unknown_topic"),
        ("locks/L1/telemetry", b"\xff\xfe", "invalid_json"),
        ("locks/L1/telemetry", b" " * 70_000, "too_large"),
    ]
    for topic, data, reason in cases:
        with pytest.raises(MessageError) as info:
            decode(topic, data)
        assert info.value.reason == reason, topic


def test_decode_keeps_the_raw_payload_and_normalises_the_model() -> None:
    env = decode("locks/L1/telemetry", json.dumps(TELEMETRY).encode())
    assert isinstance(env.message, LockTelemetry)
    assert env.raw == TELEMETRY
    assert env.message.to_payload() == TELEMETRY


def test_declaration_rules() -> None:
    decl = TransitDeclaration.model_validate(DECLARATION)
    assert [c.lock_id for c in decl.bound_locks()] == ["L1"]
    with pytest.raises(ValueError, match="eta_ts must be after departure_ts"):
        TransitDeclaration.model_validate(dict(DECLARATION, eta_ts="2026-11-22T07:00:00Z"))
    with pytest.raises(ValueError, match="only a rail declaration"):
        TransitDeclaration.model_validate(
            dict(DECLARATION, locks=[{"lock_id": "L1", "container_no": "CSQU3054383"}])
        )
    rail = TransitDeclaration.model_validate(
        dict(
            DECLARATION,
            mode="rail",
            train_id="T1",
            locks=[
                {"lock_id": "L1", "container_no": "CSQU3054383"},
                {"lock_id": "L2", "container_no": "MSCU1234566"},
            ],
        )
    )
    assert [c.lock_id for c in rail.bound_locks()] == ["L1", "L2"]


def test_signature_is_hmac_of_canonical_json_without_sig() -> None:
    payload = dict(TELEMETRY)
    assert canonical_json(payload) == (
        b'{"lat":29.3,"lock_id":"L1","lon":120.1,"seal":"sealed","seq":1,"ts":"2026-11-22T08:15:00Z"}'
    )
    payload["sig"] = sign(payload, "secret")
    assert signature_valid(payload, "secret")
    assert not signature_valid(payload, "other")
    assert not signature_valid(dict(payload, seq=2), "secret")
    assert not signature_valid(TELEMETRY, "secret")
