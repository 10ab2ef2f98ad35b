"""The tree is the architecture: imports point down the layers, and the core stays pure.

Layers, lowest first. A module may import its own package and any lower layer; modules in
the same layer (say ``stream`` and ``services``) do not import each other, so no two
packages import in a cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "smartlock"

LAYERS: dict[str, int] = {
    "errors": 0,
    "contract": 1,
    "core": 2,
    "settings": 3,
    "adapters": 4,
    "runtime": 4,
    "stream": 5,
    "services": 5,
    "simulators": 5,
    "local": 6,
    "cli": 7,
}

#: What the pure layers may never import: I/O libraries, the settings loader, the services.
FORBIDDEN_IN_PURE = {"paho", "redis", "aiokafka", "faust", "aiohttp", "pydantic_settings", "rich"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "smartlock":  # from smartlock import x
                found.extend(f"smartlock.{alias.name}" for alias in node.names)
            else:
                found.append(node.module)
    return found


def test_every_top_level_part_has_a_layer() -> None:
    parts = {_part_of(p) for p in _modules()} - {"__init__"}
    assert parts <= set(LAYERS), f"give {sorted(parts - set(LAYERS))} a layer in LAYERS"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    part = _part_of(path)
    if part == "__init__":
        return
    wrong = []
    for name in _imports(path):
        if not name.startswith("smartlock."):
            continue
        target = name.split(".")[1]
        if target in ("__version__",) or target == part:
            continue
        if LAYERS[target] >= LAYERS[part]:
            wrong.append(name)
    assert not wrong, f"{part} (layer {LAYERS[part]}) imports {wrong}: imports must point down"


@pytest.mark.parametrize(
    "path",
    [p for p in _modules() if _part_of(p) in ("errors", "contract", "core")],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_core_and_contract_do_no_io(path: Path) -> None:
    roots = {name.split(".")[0] for name in _imports(path)}
    assert not roots & FORBIDDEN_IN_PURE, (
        f"{path.name} imports {sorted(roots & FORBIDDEN_IN_PURE)}: the core and the contract stay pure"
    )


# --------------------------------------------------------------------------- one home each

#: Topic strings belong to the topic table; Redis key names to the key builder.
TOPIC_LITERAL = re.compile(r"""["'](?:locks/|gates/|monitoring/|customs/declarations)""")
KEY_LITERAL = re.compile(
    r"""(?:\}|["']smartlock):(?:trip|decl|positions|alerts|alert_ids|verdicts|deadletters|"""
    r"""writeoff|audit|workers|intake|track|declaration|console)\b"""
)
HOMES = {"topic": ("contract", "topics.py"), "key": ("adapters", "keys.py")}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_topics_and_keys_are_built_in_their_one_home(path: Path) -> None:
    rel = path.relative_to(PACKAGE).parts
    text = path.read_text(encoding="utf-8")
    if rel != HOMES["topic"]:
        code = "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith(("#", '"', "'"))
        )
        found = TOPIC_LITERAL.findall(code)
        assert not found, f"{path.name} writes topics out {found}: use smartlock.contract.topics"
    if rel != HOMES["key"]:
        found = KEY_LITERAL.findall(text)
        assert not found, f"{path.name} builds Redis keys {found}: use smartlock.adapters.keys"


#: Constructing a Redis client: only the one factory may (it logs in as a service account);
#: the stack's health probe pings anonymously on purpose (a NOAUTH answer means "up").
REDIS_CLIENT = re.compile(r"\b(?:Redis|StrictRedis)(?:\.from_url)?\(|\bfrom_url\(")
REDIS_FACTORY = {("adapters", "redis_auth.py"), ("local", "stack", "health.py")}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_redis_clients_come_from_the_one_factory(path: Path) -> None:
    if path.relative_to(PACKAGE).parts in REDIS_FACTORY:
        return
    found = REDIS_CLIENT.findall(path.read_text(encoding="utf-8"))
    assert not found, (
        f"{path.name} opens a Redis client {found}: use smartlock.adapters.redis_auth."
        "redis_client(settings, account) (or async_redis_client), which logs in"
    )
