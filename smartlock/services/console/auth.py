"""Sign-in for the console: who is at the desk, and whether they may act.

Operators and observers are the identities of the monitoring centre (CONTRACT section 6):
operators may acknowledge and resolve alerts, observers (wall screens, visitors) only look.
The password check is one function, :func:`verify_identity`, over the project's credential
store (the same secret the identity uses on MQTT); everything else here is sessions.

A session is a random token in an ``HttpOnly; SameSite=Strict`` cookie. Redis keeps only
the token's SHA-256 (so whoever reads Redis cannot take over a session) with the identity,
and lets it expire after ``console.session_ttl_s``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from smartlock.adapters.credentials import CredentialStore

Role = Literal["operator", "observer"]
COOKIE = "smartlock_console"


@dataclass(frozen=True)
class Principal:
    """A signed-in identity."""

    name: str
    role: Role

    @property
    def may_act(self) -> bool:
        """Operators acknowledge and resolve; observers only look."""
        return self.role == "operator"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Session tokens in Redis (digest -> identity), with expiry."""

    def __init__(self, client: aioredis.Redis, key_of: object, ttl_s: int) -> None:
        self.client = client
        self.key_of = key_of  # digest -> Redis key
        self.ttl_s = ttl_s

    async def open(self, principal: Principal) -> str:
        token = secrets.token_urlsafe(32)
        value = json.dumps({"name": principal.name, "role": principal.role})
        await self.client.set(self._key(token), value, ex=self.ttl_s)
        return token

    async def get(self, token: str | None) -> Principal | None:
        if not token or len(token) > 200:
            return None
        raw = await self.client.get(self._key(token))
        if raw is None:
            return None
        data = json.loads(raw)
        return Principal(data["name"], data["role"])

    async def close(self, token: str | None) -> None:
        if token:
            await self.client.delete(self._key(token))

    def _key(self, token: str) -> str:
        return self.key_of(token_digest(token))  # type: ignore[operator]


# --- the credential check: the one place that asks the credential store -----------------


def verify_identity(store: CredentialStore, name: str, password: str) -> Principal | None:
    """The operator or observer ``name`` if ``password`` is its secret, else None.

    The secret is the identity's MQTT password from the project's credential store
    (``smartlock credentials issue operator NAME``); locks, gates and services cannot sign in.
    """
    identity = store.verify_password(name, password, roles=("operator", "observer"))
    if identity is None:
        return None
    role: Role = "operator" if identity.role == "operator" else "observer"
    return Principal(identity.name, role)


def still_active(store: CredentialStore, who: Principal) -> bool:
    """Whether the store still has ``who`` with the same role (revocation ends its sessions)."""
    identity = store.find(who.name)
    return identity is not None and identity.role == who.role
