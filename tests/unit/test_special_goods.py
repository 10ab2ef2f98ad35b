"""Special goods need a permit of the right kind; catch-all cargo descriptions are refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from smartlock.services.intake.rules import Accepted, Refused, validate_submission
from smartlock.services.intake.special_goods import LIST_FILE, check_permits, special_goods
from tests.unit.test_intake_rules import road_form

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SCARVES = road_form()["cargo"][0]

# (description, class, permit kind) - one line per class and a few names of each
SPECIAL = [
    ("African elephant ivory carvings, hand-carved", "cites", "cites"),
    ("dried American ginseng roots, grade A", "cites", "cites"),
    ("象牙工艺品 雕刻摆件", "cites", "cites"),
    ("amoxicillin capsules 500 mg, blister packs", "medicine", "medicine"),
    ("中成药 连花清瘟胶囊 0.35g", "medicine", "medicine"),
    ("codeine phosphate tablets 30 mg", "medicine", "medicine"),
    ("lithium-ion batteries UN3480, 18650 cells 3.7 V", "dangerous_goods", "dangerous_goods"),
    ("power banks 10000 mAh, model P10, ABS case", "dangerous_goods", "dangerous_goods"),
    ("consumer fireworks, fountain type, 1.4G", "dangerous_goods", "dangerous_goods"),
    ("industrial solvent UN1993 in steel drums", "dangerous_goods", "dangerous_goods"),
]


def form_with(description: str, permits: Any = None) -> dict[str, Any]:
    line = dict(SCARVES, description=description)
    if permits is not None:
        line["permits"] = permits
    return road_form(cargo=[line])


@pytest.mark.parametrize(("description", "cls", "kind"), SPECIAL)
def test_special_goods_without_a_permit_are_refused_at_the_field(
    description: str, cls: str, kind: str
) -> None:
    result = validate_submission(form_with(description), NOW)
    assert isinstance(result, Refused)
    [error] = result.errors
    assert error.field == "cargo[0].permits"
    title = special_goods().classes[cls].title
    assert error.message.startswith(f'cargo[0].permits: "{description}" names "')
    assert f'so the line falls under {title} and needs a permit of kind "{kind}"' in error.message
    assert error.message.count("(") == error.message.count(")")
    assert error.message.endswith(").")


@pytest.mark.parametrize(("description", "cls", "kind"), SPECIAL)
def test_special_goods_with_a_permit_of_the_right_kind_are_accepted(
    description: str, cls: str, kind: str
) -> None:
    permit = {"kind": kind, "reference": "PERMIT-2026-0001"}
    result = validate_submission(form_with(description, [permit]), NOW)
    assert isinstance(result, Accepted), result
    assert result.intake["cargo"][0]["permits"] == [permit]


@pytest.mark.parametrize(("description", "cls", "kind"), SPECIAL)
def test_a_permit_of_another_kind_does_not_cover_special_goods(
    description: str, cls: str, kind: str
) -> None:
    other = next(k for k in ("cites", "medicine", "dangerous_goods") if k != kind)
    result = validate_submission(
        form_with(description, [{"kind": other, "reference": "PERMIT-2026-0001"}]), NOW
    )
    assert isinstance(result, Refused)
    [error] = result.errors
    assert error.field == "cargo[0].permits"
    assert f'the permit given is of kind "{other}", which does not cover' in error.message


def test_a_line_in_two_classes_needs_both_permits() -> None:
    description = "amoxicillin oral suspension with lithium-ion battery dosing pump"
    refused = validate_submission(
        form_with(description, [{"kind": "medicine", "reference": "DH-1234"}]), NOW
    )
    assert isinstance(refused, Refused)
    assert [e.field for e in refused.errors] == ["cargo[0].permits"]
    assert 'kind "dangerous_goods"' in refused.errors[0].message
    both = [
        {"kind": "medicine", "reference": "DH-1234"},
        {"kind": "dangerous_goods", "reference": "FSD-5678"},
    ]
    assert isinstance(validate_submission(form_with(description, both), NOW), Accepted)


@pytest.mark.parametrize(
    "description",
    [
        "polyester knitted scarves, 180x70 cm",
        "paint brushes, nylon bristle, 50 mm",
        "orchid-print silk scarves, 90x90 cm",
        "medicine cabinets, steel, wall-mounted",
        "lighter weight cotton shirts, 100% cotton",
        "ivory white ceramic mugs, 350 ml",
        "ivory-coloured cotton bed sheets, 200x230 cm",
    ],
)
def test_ordinary_goods_need_no_permit(description: str) -> None:
    assert isinstance(validate_submission(form_with(description), NOW), Accepted)


@pytest.mark.parametrize(
    ("permits", "field", "message"),
    [
        (
            "CITES-1",
            "cargo[0].permits",
            'cargo[0].permits: must be a list of {"kind": ..., "reference": ...}, with '
            "kind one of cites, dangerous_goods, medicine.",
        ),
        (
            ["CITES-1"],
            "cargo[0].permits[0]",
            'cargo[0].permits[0]: must be an object {"kind": ..., "reference": ...}.',
        ),
        (
            [{"kind": "licence", "reference": "AB-1234"}],
            "cargo[0].permits[0].kind",
            'cargo[0].permits[0].kind: "licence" is not a permit kind; use one of cites, dangerous_goods, '
            "medicine.",
        ),
        (
            [{"kind": "cites", "reference": " "}],
            "cargo[0].permits[0].reference",
            "cargo[0].permits[0].reference: give the permit number as printed (4 to 40 letters, digits, spaces and "
            "/ . _ -).",
        ),
    ],
)
def test_malformed_permits_get_their_message(permits: Any, field: str, message: str) -> None:
    result = validate_submission(form_with("African elephant ivory carvings", permits), NOW)
    assert isinstance(result, Refused)
    assert (result.errors[0].field, result.errors[0].message) == (field, message)


def test_the_shipped_list_names_its_sources_and_every_class_and_good_is_usable() -> None:
    text = LIST_FILE.read_text(encoding="utf-8")
    for source in (
        "CITES Appendices I, II and III",
        "Cap. 586",
        "Cap. 138",
        "Cap. 134",
        "Cap. 549",
        "Cap. 295",
        "UN Recommendations on the Transport of Dangerous Goods",
    ):
        assert source in text
    listed = special_goods()
    assert set(listed.classes) == {"cites", "medicine", "dangerous_goods"}
    for good in listed.goods:
        for name in good.names:  # every listed name classifies into its own class
            assert good.cls in {
                m.goods_class.id for m in listed.classify(f"{name} samples, 10 kg")
            }, name
    for cls in listed.classes.values():  # every example permit passes the format check
        permit = [{"kind": cls.permit, "reference": cls.example}]
        assert check_permits("cargo[0]", "ivory, rhino horn, amoxicillin, UN3480", permit)[1] != []
        assert check_permits("cargo[0]", "plain steel bolts M8", permit) == (permit, [])


@pytest.mark.parametrize(
    "description",
    [
        "goods for sale",
        "FAK freight all kinds",
        "plastic toys and related items",
        "stainless steel cups etc.",
        "cotton towels and other products",
        "general merchandise, mixed",
        "said to contain garden tools",
        "T恤等",
        "日用杂货",
    ],
)
def test_catch_all_descriptions_are_refused(description: str) -> None:
    result = validate_submission(form_with(description), NOW)
    assert isinstance(result, Refused)
    [error] = result.errors
    assert error.field == "cargo[0].description"
    assert error.message.startswith(f'cargo[0].description: "{description}" is too vague')


def test_catch_all_message_says_what_opens_the_line() -> None:
    result = validate_submission(form_with("plastic toys and related items"), NOW)
    assert isinstance(result, Refused)
    assert result.errors[0].message == (
        'cargo[0].description: "plastic toys and related items" is too vague: "and related items" lets the line '
        "cover anything; list each kind of goods on its own cargo line by name, model and material, e.g. "
        '"Bluetooth earphones, model X12, ABS plastic".'
    )


@pytest.mark.parametrize(
    ("description", "cls"),
    [
        ("ivory white ivory carvings, 10 cm", "cites"),
        ("paint brushes and spray paint 400 ml, model S1", "dangerous_goods"),
        ("e-cigarettes with lithium battery, model V2", "dangerous_goods"),
    ],
)
def test_a_harmless_phrase_hides_only_itself(description: str, cls: str) -> None:
    assert [m.goods_class.id for m in special_goods().classify(description)] == [cls]


def test_the_permit_message_names_the_match_the_class_and_the_law_without_nested_brackets() -> None:
    result = validate_submission(form_with("carved ivory figurines, 10 cm"), NOW)
    assert isinstance(result, Refused)
    assert result.errors[0].message == (
        'cargo[0].permits: "carved ivory figurines, 10 cm" names "ivory" (elephant ivory, CITES '
        "Appendix I: Loxodonta africana, Elephas maximus; some African populations in II, ivory "
        "trade suspended), so the line falls under endangered species (CITES) and needs a permit "
        'of kind "cites" (a CITES export permit or re-export certificate; in Hong Kong an AFCD '
        'licence under Cap. 586). Add {"kind": "cites", "reference": "CN/2026/00123"} with your '
        "permit number (CITES and Hong Kong Cap. 586)."
    )
