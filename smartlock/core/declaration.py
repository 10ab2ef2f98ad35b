"""A declaration's own rules, in one place: what the intake and the pipeline both hold it to.

* the cargo description and vehicle plate rules of the Hong Kong road cargo system that a
  contract payload can show (:func:`check_description`, :func:`check_plate`);
* the places it names must exist in the geofences, with a corridor of its mode
  (:func:`place_errors`);
* :func:`check_contract_declaration`, the rules above for a ``customs/declarations`` payload.

The intake reports every broken rule to the declarant as a :class:`FieldError`; the detector
dead-letters a declaration published on MQTT that breaks one. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from smartlock.contract.models import Mode, TransitDeclaration, normalise_plate


def as_sentence(text: str) -> str:
    """A message a person reads as a sentence: capital first letter, final full stop."""
    text = text.strip()
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    return text if not text or text[-1] in ".!?" else text + "."


@dataclass(frozen=True)
class FieldError:
    """One broken rule: the field's dotted path and what to fix (the message starts with the
    path, and is a sentence: it ends with a full stop, added here when the rule left it out)."""

    field: str
    message: str

    def __post_init__(self) -> None:
        text = self.message.rstrip()
        if text and text[-1] not in ".!?":
            object.__setattr__(self, "message", text + ".")

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


# --------------------------------------------------------------------------- cargo descriptions

#: Descriptions that say nothing about what the goods are (whole description, case-insensitive).
VAGUE_WORDS = frozenset(
    {
        "electronics",
        "electronic",
        "electronic products",
        "electronic goods",
        "electronic equipment",
        "electrical appliances",
        "electrical appliance",
        "appliances",
        "electricals",
        "food",
        "foods",
        "foodstuff",
        "foodstuffs",
        "goods",
        "general goods",
        "general cargo",
        "cargo",
        "merchandise",
        "products",
        "items",
        "sundries",
        "daily necessities",
        "samples",
        "parts",
        "spare parts",
        "accessories",
        "gifts",
        "clothing",
        "clothes",
        "garments",
        "textiles",
        "toys",
        "machinery",
        "equipment",
        "materials",
        "commodities",
        "consumer goods",
        "household goods",
        "misc",
        "miscellaneous",
        "various",
        "stuff",
        "freight",
        "电子设备",
        "电子产品",
        "电器",
        "食品",
        "货物",
        "商品",
        "杂货",
        "日用品",
        "配件",
        "样品",
        "服装",
    }
)
#: Words that, alone or together, say nothing about the goods ("assorted electronic goods").
VAGUE_TOKENS = frozenset(w for phrase in VAGUE_WORDS for w in phrase.split() if w.isascii()) | {
    "and",
    "or",
    "of",
    "other",
    "others",
    "assorted",
    "mixed",
    "general",
    "some",
    "batch",
    "lot",
    "lots",
    "electric",
    "new",
    "used",
    "etc",
    "for",
    "sale",
    "trade",
    "all",
    "kinds",
    "fak",
    "related",
}
#: Catch-all phrases: wherever they stand, they let a cargo line cover anything ("plastic toys
#: and related items", "FAK freight all kinds", "goods for sale", "T恤等").
CATCH_ALL = re.compile(
    r"\bfak\b|\bfreight (?:of )?all kinds\b|\ball kinds\b"
    r"|\b(?:and|or|plus|with|&) (?:other|related|similar|assorted|various|misc\w*|sundry) "
    r"(?:items?|goods|products?|articles?|things|stuff|accessories|merchandise|parts)\b"
    r"|\brelated (?:items|goods|products|articles)\b"
    r"|\betc\b|\band so on\b"
    r"|\bvarious (?:items|goods|products|articles|kinds|things|merchandise)\b"
    r"|\bmisc(?:ellaneous)?\b(?! (?:sizes|colou?rs))|\bsundr(?:y|ies)\b"
    r"|\bgeneral (?:cargo|merchandise|goods|items)\b"
    r"|\bsaid to contain\b|\bstc\b"
    r"|\bfor (?:sale|resale|trade|export)\b"
    r"|杂货|等等|其他(?:商品|货物|物品)|相关(?:产品|商品|物品)|各类|各种|一批|等(?:商品|货物|物品)?$"
)
_EXAMPLE = '"Bluetooth earphones, model X12, ABS plastic"'
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[\w%]+", re.UNICODE)


def check_description(path: str, description: Any) -> list[FieldError]:
    """Cargo description rules: present, not vague, specific enough (name, model, material).

    Vague: the whole description is a vague word (:data:`VAGUE_WORDS`), every word of it is
    a vague or filler word ("assorted electronic goods", "goods for sale"), or it holds a
    catch-all phrase (:data:`CATCH_ALL`: "and related items", "FAK", "etc."). Specific enough:
    three words or more, or two when one carries a model number ("iPhone 15"); CJK characters
    count as words.
    """
    if not isinstance(description, str) or not description.strip():
        return [
            FieldError(
                path,
                f"{path}: missing; describe the goods by name, model and material, e.g. {_EXAMPLE}",
            )
        ]
    text = " ".join(description.split())
    bare = re.sub(r"[^\w\s]", "", text.lower()).strip()
    tokens = re.findall(r"[a-z0-9]+", bare)
    if bare in VAGUE_WORDS or (
        tokens and not _CJK.search(text) and all(t in VAGUE_TOKENS for t in tokens)
    ):
        return [
            FieldError(
                path,
                f'{path}: "{text}" is too vague; say what the goods are: name, model and '
                f"material, e.g. {_EXAMPLE}",
            )
        ]
    catch_all = CATCH_ALL.search(" ".join(re.sub(r"[^\w\s&]", " ", text.lower()).split()))
    if catch_all is not None:
        return [
            FieldError(
                path,
                f'{path}: "{text}" is too vague: "{catch_all.group(0)}" lets the line cover '
                "anything; list each kind of goods on its own cargo line by name, model and "
                f"material, e.g. {_EXAMPLE}.",
            )
        ]
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(text)) if not cjk else cjk + len(re.findall(r"[A-Za-z0-9]+", text))
    if words < 2 or (words == 2 and not re.search(r"\d", text)):
        return [
            FieldError(
                path,
                f'{path}: "{text}" is not specific enough; give at least the name and the model '
                f"or material (a model number, or three words or more), e.g. {_EXAMPLE}",
            )
        ]
    return []


# --------------------------------------------------------------------------- vehicle plates

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_LETTER = "A-HJ-NP-Z"  # no I or O on plates
MAINLAND_PLATE = re.compile(
    rf"^[{_PROVINCES}][{_LETTER}](?:[{_LETTER}0-9]{{5,6}}|[{_LETTER}0-9]{{4}}[港澳])$"
)
HONG_KONG_PLATE = re.compile(r"^[A-HJ-NPR-Z]{1,2}[1-9][0-9]{0,3}$")


def check_plate(path: str, plate: Any) -> list[FieldError]:
    """Plate format: a mainland plate (浙G12345, new-energy 浙GD12345, cross-border 粤Z1234港)
    or a Hong Kong plate (AB1234)."""
    if not isinstance(plate, str) or not plate.strip():
        return [
            FieldError(path, f"{path}: missing; give the vehicle plate, e.g. 浙G12345 or AB1234")
        ]
    norm = normalise_plate(plate)
    if MAINLAND_PLATE.match(norm) or HONG_KONG_PLATE.match(norm):
        return []
    return [
        FieldError(
            path,
            f'{path}: "{plate}" is not a vehicle plate; use a mainland plate (province '
            "character, letter, 5 letters or digits, e.g. 浙G12345; new-energy 6, e.g. "
            "浙GD12345) or a Hong Kong plate (1-2 letters and 1-4 digits, e.g. AB1234)",
        )
    ]


# --------------------------------------------------------------------------- places


@dataclass(frozen=True)
class Places:
    """The corridor and zone ids a declaration may name (from the geofences)."""

    corridors: Mapping[str, str]  # id -> mode
    origin_sites: frozenset[str]
    destination_gates: frozenset[str]

    @classmethod
    def from_geofences(cls, geofences: Any) -> Places:
        """Builds the catalogue from loaded :class:`~smartlock.core.geofence.Geofences`."""
        zones = geofences.zones.values()
        return cls(
            corridors={c.id: c.mode for c in geofences.corridors.values()},
            origin_sites=frozenset(z.id for z in zones if z.role == "origin_site"),
            destination_gates=frozenset(z.id for z in zones if z.role == "destination_gate"),
        )


@dataclass(frozen=True)
class PlaceError:
    """A place the declaration names that the geofences do not have (or of the wrong mode)."""

    field: str  # corridor_id, origin_site or destination_gate
    reason: str  # machine-readable, the dead letter's reason
    message: str  # starts with the field, says what to use instead

    def field_error(self) -> FieldError:
        return FieldError(self.field, self.message)


def place_errors(
    places: Places, corridor: str, mode: str, origin: str, gate: str
) -> list[PlaceError]:
    """Corridor (of the declared mode), origin site and destination gate must exist.

    Empty ids are skipped (the intake reports them as missing fields).
    """
    errors: list[PlaceError] = []
    if corridor and corridor not in places.corridors:
        errors.append(
            PlaceError(
                "corridor_id",
                "unknown_corridor",
                f'corridor_id: "{corridor}" is not a known corridor; use one of '
                f"{', '.join(sorted(places.corridors))}",
            )
        )
    elif corridor and mode in (Mode.ROAD, Mode.RAIL) and places.corridors[corridor] != mode:
        fitting = sorted(c for c, m in places.corridors.items() if m == mode)
        errors.append(
            PlaceError(
                "corridor_id",
                "mode_mismatch",
                f'corridor_id: "{corridor}" is a {places.corridors[corridor]} '
                f"corridor but the declaration is {mode}; use one of "
                f"{', '.join(fitting)}",
            )
        )
    if origin and origin not in places.origin_sites:
        errors.append(
            PlaceError(
                "origin_site",
                "unknown_origin_site",
                f'origin_site: "{origin}" is not a known origin site; use one of '
                f"{', '.join(sorted(places.origin_sites))}",
            )
        )
    if gate and gate not in places.destination_gates:
        errors.append(
            PlaceError(
                "destination_gate",
                "unknown_destination_gate",
                f'destination_gate: "{gate}" is not a known destination '
                f"gate; use one of {', '.join(sorted(places.destination_gates))}",
            )
        )
    return errors


# --------------------------------------------------------------------------- contract payloads


def check_contract_declaration(decl: TransitDeclaration) -> list[FieldError]:
    """The Hong Kong rules that apply to a contract payload (``customs/declarations``).

    Cargo descriptions must be specific, cargo lines complete (a unit that is not blank, a
    positive value), and a road declaration's plate must be a mainland or Hong Kong plate.
    The pipeline may dead-letter a declaration for which this returns errors.
    """
    errors: list[FieldError] = []
    for i, item in enumerate(decl.cargo):
        errors.extend(check_description(f"cargo[{i}].description", item.description))
        if not item.unit.strip():
            errors.append(
                FieldError(f"cargo[{i}].unit", f"cargo[{i}].unit: missing; give the unit, e.g. pcs")
            )
        if item.value <= 0:
            errors.append(
                FieldError(
                    f"cargo[{i}].value",
                    f"cargo[{i}].value: must be above 0; declare the value of the goods",
                )
            )
    if decl.mode is Mode.ROAD:
        errors.extend(check_plate("vehicle_plate", decl.vehicle_plate))
    return errors
