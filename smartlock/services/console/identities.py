"""Where the console finds the operators and observers who may sign in (interim store).

A JSON file ``{name: {"role": "operator" | "observer", "password": "scrypt$..."}}``, owner-only,
named by ``console.identities_file``. Replaced by the project's credential store once it lands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from smartlock.errors import ConfigError
from smartlock.services.console.auth import hash_password
from smartlock.settings import Settings


def load_identities(settings: Settings) -> dict[str, dict[str, str]]:
    path = settings.console.identities_file
    if path is None:
        raise ConfigError(
            "no console identities: set console.identities_file (see `smartlock console add-identity`)"
        )
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"console identities file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"console identities file {path}: expected a JSON object")
    return data


def add_identity(path: Path, name: str, role: str, password: str) -> None:
    """Adds or replaces one identity in the file (created owner-only)."""
    if role not in ("operator", "observer"):
        raise ConfigError(f"role must be operator or observer, not {role!r}")
    data: dict[str, dict[str, str]] = {}
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
    data[name] = {"role": role, "password": hash_password(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
