"""Special goods: cargo lines that need a permit (endangered species, medicines, dangerous goods).

The classification list ships as ``special_goods.toml`` next to this module (sources named in
its header: CITES appendices, Hong Kong Cap. 586, 138, 134, 549 and 295, the UN Model
Regulations). A cargo line whose description names a listed good, or carries a UN number
(``UN3480``), belongs to that good's class and needs a permit reference of the class's kind in
its ``permits`` list; otherwise the declaration is refused with a field-level message.

Pure: the list is read once from the package; nothing else is read.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from smartlock.core.declaration import FieldError

LIST_FILE = Path(__file__).with_name("special_goods.toml")
_UN_NUMBER = re.compile(r"\bUN ?(\d{4})\b", re.IGNORECASE)
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/ ._-]{3,39}$")
_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class GoodsClass:
    """A class of special goods and the permit it needs."""

    id: str
    title: str
    permit: str
    permit_name: str
    example: str
    law: str


@dataclass(frozen=True)
class ListedGood:
    """One entry of the list: the names that identify it, and its class."""

    cls: str
    name: str
    names: tuple[str, ...]
    unless: tuple[str, ...] = ()
    un: tuple[str, ...] = ()
    appendix: str = ""


@dataclass(frozen=True)
class Match:
    """Why a cargo line is special: the entry and the words of the description that matched."""

    good: ListedGood
    goods_class: GoodsClass
    matched: str

    def label(self) -> str:
        """The listed good, with its CITES appendix: "elephant ivory, CITES Appendix I: ..."."""
        if not self.good.appendix:
            return self.good.name
        appendix = re.sub(r"^(\S+) \((.*)\)$", r"\1: \2", self.good.appendix)
        return f"{self.good.name}, CITES Appendix {appendix}"


@dataclass(frozen=True)
class SpecialGoods:
    """The loaded classification list."""

    classes: Mapping[str, GoodsClass]
    goods: tuple[ListedGood, ...]

    @classmethod
    def from_toml(cls, data: Mapping[str, Any]) -> SpecialGoods:
        classes = {
            key: GoodsClass(key, c["title"], c["permit"], c["permit_name"], c["example"], c["law"])
            for key, c in data["classes"].items()
        }
        goods = []
        for i, g in enumerate(data["goods"]):
            if g["class"] not in classes:
                raise ValueError(
                    f"special goods entry {i} ({g.get('name')}) names unknown class {g['class']!r}"
                )
            goods.append(
                ListedGood(
                    g["class"],
                    g["name"],
                    tuple(g["names"]),
                    tuple(g.get("unless", ())),
                    tuple(u.upper() for u in g.get("un", ())),
                    g.get("appendix", ""),
                )
            )
        return cls(classes, tuple(goods))

    def classify(self, description: str) -> list[Match]:
        """Every class a description falls into (at most one match per class, first entry wins)."""
        text = " ".join(description.split())
        lowered = text.lower()
        found: dict[str, Match] = {}
        for number in _UN_NUMBER.findall(text):
            un = f"UN{number}"
            good = next((g for g in self.goods if un in g.un), None)
            if good is None:
                good = ListedGood("dangerous_goods", f"dangerous goods {un}", (un,), un=(un,))
            found.setdefault(good.cls, Match(good, self.classes[good.cls], un))
        for good in self.goods:
            if good.cls in found:
                continue
            # An "unless" phrase ("paint brushes", "ivory white") is not the goods: taken out of
            # the text, it hides only itself ("paint brushes and paint thinner" still matches).
            rest = lowered
            for phrase in good.unless:
                rest = _remove(rest, phrase.lower())
            hit = next((n for n in good.names if _contains(rest, n.lower())), None)
            if hit is not None:
                found[good.cls] = Match(good, self.classes[good.cls], hit)
        return [found[c] for c in self.classes if c in found]


def _remove(text: str, phrase: str) -> str:
    if _CJK.search(phrase):
        return text.replace(phrase, " ")
    return re.sub(rf"(?<![\w-]){re.escape(phrase)}(?:e?s)?(?![\w-])", " ", text)


def _contains(text: str, name: str) -> bool:
    if _CJK.search(name):
        return name in text
    return re.search(rf"(?<![\w-]){re.escape(name)}(?:e?s)?(?![\w-])", text) is not None


@lru_cache(maxsize=1)
def special_goods() -> SpecialGoods:
    """The shipped list (read once)."""
    return SpecialGoods.from_toml(tomllib.loads(LIST_FILE.read_text(encoding="utf-8")))


def check_permits(
    path: str, description: str, permits: Any, listed: SpecialGoods | None = None
) -> tuple[list[dict[str, str]], list[FieldError]]:
    """A cargo line's permits: one of the right kind for each special class its description
    falls into.

    Args:
        path: the cargo line's dotted path, e.g. ``cargo[0]``.
        description: the line's description.
        permits: the line's ``permits`` value (a list of ``{"kind", "reference"}``, or None).
        listed: the classification list (default: the shipped one).

    Returns:
        The permits, normalised, and every broken rule.
    """
    listed = listed or special_goods()
    errors: list[FieldError] = []
    given = _permit_list(path, permits, listed, errors)
    if errors:
        return given, errors
    kinds = {p["kind"] for p in given}
    for match in listed.classify(description):
        gc = match.goods_class
        if gc.permit in kinds:
            continue
        wrong = sorted(kinds)
        where = f"{path}.permits"
        have = (
            f'; the permit given is of kind "{", ".join(wrong)}", which does not cover {gc.title}'
            if wrong
            else ""
        )
        errors.append(
            FieldError(
                where,
                f'{where}: "{description}" names "{match.matched}" ({match.label()}), so the '
                f'line falls under {gc.title} and needs a permit of kind "{gc.permit}" '
                f'({gc.permit_name}){have}. Add {{"kind": "{gc.permit}", "reference": '
                f'"{gc.example}"}} with your permit number ({gc.law}).',
            )
        )
    return given, errors


def _permit_list(
    path: str, permits: Any, listed: SpecialGoods, errors: list[FieldError]
) -> list[dict[str, str]]:
    if permits is None:
        return []
    kinds = sorted(c.permit for c in listed.classes.values())
    if not isinstance(permits, Sequence) or isinstance(permits, str):
        errors.append(
            FieldError(
                f"{path}.permits",
                f'{path}.permits: must be a list of {{"kind": ..., '
                f'"reference": ...}}, with kind one of {", ".join(kinds)}.',
            )
        )
        return []
    out = []
    for j, permit in enumerate(permits):
        where = f"{path}.permits[{j}]"
        if not isinstance(permit, Mapping):
            errors.append(
                FieldError(where, f'{where}: must be an object {{"kind": ..., "reference": ...}}.')
            )
            continue
        kind, reference = permit.get("kind"), permit.get("reference")
        if kind not in kinds:
            errors.append(
                FieldError(
                    f"{where}.kind",
                    f"{where}.kind: {json.dumps(kind, ensure_ascii=False)} is not a permit "
                    f"kind; use one of {', '.join(kinds)}.",
                )
            )
        if not isinstance(reference, str) or not _REFERENCE.match(reference.strip()):
            errors.append(
                FieldError(
                    f"{where}.reference",
                    f"{where}.reference: give the permit number as "
                    "printed (4 to 40 letters, digits, spaces and / . _ -).",
                )
            )
        if kind in kinds and isinstance(reference, str):
            out.append({"kind": str(kind), "reference": reference.strip()})
    return out
