"""Who runs: unique names for bridges and workers, and their heartbeats in Redis.

A bridge or worker started without ``--name`` takes its host name (a container's host name
is unique per container), or ``<host>-2``, ``<host>-3``, ... when a live copy on the same
host already holds it. A name is held by a key that expires ``TTL_S`` after the last
heartbeat, so a copy restarted after a crash gets its old name (and its MQTT session or data
directory) back once the old key has expired, and two live copies never share one.

Keys (:class:`~smartlock.adapters.keys.RedisKeys`): ``alive(role, name)`` holds the member's
JSON and expires ``TTL_S`` after the last beat; ``members`` keeps the same JSON per
``<role>:<name>`` after that key expired, so ``smartlock stack status`` can report a member
whose heartbeat stopped. A clean stop removes the member from both.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.redis_auth import redis_client

if TYPE_CHECKING:
    from smartlock.settings import Settings

log = logging.getLogger(__name__)

#: Seconds between heartbeats, and how long a name stays held without one.
HEARTBEAT_S = 5.0
TTL_S = 15


@dataclass
class Member:
    """A running bridge or worker as recorded in Redis."""

    role: str
    name: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    beat: float = field(default_factory=time.time)
    owns: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _alive_key(prefix: str, role: str, name: str) -> str:
    return RedisKeys(prefix).alive(role, name)


def claim_name(settings: Settings, role: str, requested: str | None = None) -> str:
    """The name this process runs under: ``requested``, or the first free ``<host>[-n]``.

    ``role`` (``bridge`` or ``worker``) is also the Redis user it logs in as. Without Redis
    the name is ``<host>-<pid>`` (unique, but not kept across restarts).
    """
    import redis

    prefix = settings.redis.prefix
    client = redis_client(settings, role, socket_connect_timeout=3, socket_timeout=3)
    base = socket.gethostname()
    try:
        if requested:
            member = Member(role, requested)
            client.set(_alive_key(prefix, role, requested), member.to_json(), ex=TTL_S)
            client.hset(RedisKeys(prefix).members, f"{role}:{requested}", member.to_json())
            return requested
        for n in range(1, 1000):
            name = base if n == 1 else f"{base}-{n}"
            member = Member(role, name)
            if client.set(_alive_key(prefix, role, name), member.to_json(), ex=TTL_S, nx=True):
                client.hset(RedisKeys(prefix).members, f"{role}:{name}", member.to_json())
                return name
    except redis.RedisError as exc:
        name = f"{base}-{os.getpid()}"
        log.warning("%s: Redis unreachable (%s); running as %s", role, exc, name)
        return requested or name
    finally:
        client.close()
    raise RuntimeError(f"no free {role} name on host {base}")  # pragma: no cover


class Heartbeat:
    """Renews a member's name and record every :data:`HEARTBEAT_S` seconds (async Redis)."""

    def __init__(self, client: Any, prefix: str, role: str, name: str) -> None:
        self.client, self.prefix = client, prefix
        self.member = Member(role, name)
        self._last = 0.0

    async def beat(self, owns: str | None = None, *, force: bool = False) -> None:
        """Writes the heartbeat if one is due; a Redis failure is logged, never raised."""
        if owns is not None:
            self.member.owns = owns
        now = time.time()
        if not force and now - self._last < HEARTBEAT_S:
            return
        self.member.beat = now
        m = self.member
        try:
            await self.client.set(_alive_key(self.prefix, m.role, m.name), m.to_json(), ex=TTL_S)
            await self.client.hset(
                RedisKeys(self.prefix).members, f"{m.role}:{m.name}", m.to_json()
            )
            self._last = now
        except Exception as exc:  # noqa: BLE001 - a missed beat is reported by stack status
            log.warning("%s %s: heartbeat to Redis failed (%s)", m.role, m.name, exc)

    async def leave(self) -> None:
        """Removes the member (a clean stop is not a missing heartbeat)."""
        m = self.member
        try:
            await self.client.delete(_alive_key(self.prefix, m.role, m.name))
            await self.client.hdel(RedisKeys(self.prefix).members, f"{m.role}:{m.name}")
        except Exception as exc:  # noqa: BLE001
            log.warning("%s %s: could not deregister (%s)", m.role, m.name, exc)


@dataclass(frozen=True)
class MemberStatus:
    """A member as ``stack status`` reports it."""

    member: Member
    alive: bool
    silent_s: float


def members(settings: Settings, now: float | None = None) -> list[MemberStatus]:
    """Every recorded bridge and worker, alive (fresh heartbeat) or not (read as ``reader``)."""
    prefix = settings.redis.prefix
    client = redis_client(settings, "reader", socket_timeout=3)
    try:
        recorded = client.hgetall(RedisKeys(prefix).members)
        now = time.time() if now is None else now
        result = []
        for raw in recorded.values():
            member = Member(**json.loads(raw))
            alive = bool(client.exists(_alive_key(prefix, member.role, member.name)))
            result.append(MemberStatus(member, alive, max(0.0, now - member.beat)))
        return sorted(result, key=lambda s: (s.member.role, s.member.name))
    finally:
        client.close()
