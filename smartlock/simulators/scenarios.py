"""The scenario library: what can go wrong on a trip, chosen by name, mixed across a fleet.

A scenario is written ``NAME[:PCT%][:key=value,...]`` on the command line
(``detour:2%``, ``stop:1%:minutes=30``) or as a YAML list in a file::

    scenarios:
      - {name: detour, pct: 2}
      - {name: stop, pct: 1, minutes: 30}

Each truck carries at most one scenario. A percentage picks ``round(pct * trucks / 100)``
trucks, but at least one when the percentage is above zero, so a small fleet still shows
the scenario; the choice is deterministic for a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smartlock.errors import ConfigError


@dataclass(frozen=True)
class ScenarioKind:
    """A named scenario: its parameters with defaults and what it must cause.

    ``alerts`` are the alert types the affected truck must raise; ``verdict`` the gate
    verdict it must get; ``rejects``
    the rejection reasons `smartlock evaluate` reports for it; ``needs_signing`` marks the
    scenarios that only mean something when locks sign their messages.
    """

    name: str
    help: str
    params: dict[str, float] = field(default_factory=dict)
    alerts: frozenset[str] = frozenset()
    verdict: str = "release"
    rejects: frozenset[str] = frozenset()
    malformed: bool = False
    needs_signing: bool = False


KINDS: dict[str, ScenarioKind] = {
    k.name: k
    for k in (
        ScenarioKind(
            "detour",
            "leaves the expressway at an exit, drives a few km away and comes back",
            {"minutes": 20, "distance_km": 2.5},
            frozenset({"route_deviation", "route_rejoined"}),
            "inspect",
        ),
        ScenarioKind(
            "tamper",
            "the seal is forced open in transit",
            {},
            frozenset({"seal_breach"}),
            "inspect",
        ),
        ScenarioKind(
            "stop",
            "stops on the hard shoulder, outside any service area",
            {"minutes": 30},
            frozenset({"unauthorized_stop"}),
        ),
        ScenarioKind(
            "signal_loss",
            "goes silent (tunnel, jamming); with upload=1 the buffered fixes arrive later",
            {"minutes": 15, "upload": 1},
            frozenset({"signal_lost"}),
        ),
        ScenarioKind(
            "jump",
            "one spoofed fix far from the truck",
            {"distance_km": 40},
            frozenset({"implausible_jump"}),
        ),
        ScenarioKind(
            "slow",
            "crawls and arrives long after its declared ETA",
            {"speed_kmh": 30},
            frozenset({"overdue"}),
        ),
        ScenarioKind(
            "undeclared", "a lock with no declaration", {}, frozenset({"unknown_lock"}), "inspect"
        ),
        ScenarioKind(
            "plate_mismatch",
            "a different truck shows up at the gate with the container",
            {},
            frozenset(),
            "inspect",
        ),
        ScenarioKind(
            "duplicates",
            "the network delivers some messages twice",
            {"rate": 0.2},
            frozenset(),
            "release",
            frozenset({"duplicate"}),
        ),
        ScenarioKind(
            "out_of_order",
            "the network swaps some neighbouring fixes (inside the anti-replay window: judged late)",
            {"rate": 0.1},
            frozenset(),
            "release",
            frozenset(),
        ),
        ScenarioKind(
            "malformed",
            "some garbled or invalid payloads besides the real ones",
            {"rate": 0.05},
            frozenset(),
            "release",
            malformed=True,
        ),
        ScenarioKind(
            "unsigned",
            "forged unsigned messages claiming the seal is open",
            {"rate": 0.05},
            frozenset(),
            "release",
            frozenset({"missing_signature"}),
            needs_signing=True,
        ),
    )
}


@dataclass(frozen=True)
class ScenarioSpec:
    """A scenario chosen for a fleet: the kind, the share of trucks and the parameters."""

    name: str
    pct: float
    params: dict[str, float]

    @property
    def kind(self) -> ScenarioKind:
        return KINDS[self.name]


def _spec(name: str, pct: float, params: dict[str, Any], where: str) -> ScenarioSpec:
    kind = KINDS.get(name)
    if kind is None:
        raise ConfigError(
            f"{where}: unknown scenario {name!r}; choose from {', '.join(sorted(KINDS))}"
        )
    if not 0 <= pct <= 100:
        raise ConfigError(f"{where}: percentage {pct} must be between 0 and 100")
    merged = dict(kind.params)
    for key, value in params.items():
        if key not in kind.params:
            known = ", ".join(sorted(kind.params)) or "none"
            raise ConfigError(
                f"{where}: scenario {name} has no parameter {key!r} (parameters: {known})"
            )
        try:
            merged[key] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: parameter {key} of {name} must be a number, got {value!r}"
            ) from None
        if merged[key] < 0:
            raise ConfigError(f"{where}: parameter {key} of {name} must not be negative")
    return ScenarioSpec(name, pct, merged)


def scenario(name: str, pct: float, **params: float) -> ScenarioSpec:
    """A scenario chosen in code (a preset), checked like one from the command line.

    Raises:
        ConfigError: an unknown name or parameter, or a percentage out of range.
    """
    return _spec(name, pct, params, f"scenario {name}")


def parse_scenario(text: str) -> ScenarioSpec:
    """Parses ``NAME[:PCT%][:key=value,...]``.

    Raises:
        ConfigError: an unknown name or parameter, or a malformed percentage.
    """
    parts = text.strip().split(":")
    name, pct, params = parts[0], 100.0, {}
    for part in parts[1:]:
        if part.endswith("%"):
            try:
                pct = float(part[:-1])
            except ValueError:
                raise ConfigError(
                    f"scenario {text!r}: {part!r} is not a percentage like 2%"
                ) from None
        elif part:
            for item in part.split(","):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"scenario {text!r}: expected key=value, got {item!r}")
                params[key.strip()] = value.strip()
    return _spec(name, pct, params, f"scenario {text!r}")


def load_scenarios(path: Path) -> list[ScenarioSpec]:
    """Reads a YAML file ``scenarios: [{name: ..., pct: ..., <param>: ...}, ...]``."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"scenario file {path}: {exc}") from None
    items = data.get("scenarios") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"scenario file {path}: expected a top-level 'scenarios:' list")
    specs = []
    for i, item in enumerate(items):
        where = f"scenario file {path}, entry {i + 1}"
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{where}: expected a mapping with a 'name'")
        rest = {k: v for k, v in item.items() if k not in ("name", "pct")}
        pct = str(item.get("pct", 100)).rstrip("%")
        try:
            specs.append(_spec(str(item["name"]), float(pct), rest, where))
        except ValueError:
            raise ConfigError(f"{where}: pct must be a number") from None
    return specs


def assign(specs: list[ScenarioSpec], trucks: int, seed: int) -> dict[int, ScenarioSpec]:
    """Picks the trucks of each scenario (truck index -> its scenario), deterministically.

    Raises:
        ConfigError: the scenarios ask for more trucks than the fleet has.
    """
    rng = random.Random(f"{seed}:scenarios")
    free = list(range(trucks))
    chosen: dict[int, ScenarioSpec] = {}
    for spec in specs:
        count = round(spec.pct * trucks / 100)
        if spec.pct > 0:
            count = max(count, 1)
        if count > len(free):
            raise ConfigError(
                f"scenarios need more trucks than the {trucks} of the fleet; lower the percentages or add --trucks"
            )
        for n in rng.sample(free, count):
            chosen[n] = spec
        free = [n for n in free if n not in chosen]
    return chosen
