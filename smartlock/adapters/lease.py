"""An exclusive role held by one process at a time: a Redis key that expires unless renewed.

The bridges use it for the one inbound MQTT session (:mod:`smartlock.stream.bridge`): the
holder connects with the session's client id, the others wait. A holder that dies stops
renewing and another takes the role ``ttl_s`` later; a holder that stops cleanly releases it.
Renewing is one Lua script (renew if mine or free, else report the holder), so a holder
whose key expired while Redis was away takes it back unless another process already has.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """Holds ``key`` for ``name`` (async Redis client ``client``, decode_responses off or on)."""

    def __init__(self, client: Any, key: str, name: str, ttl_s: float) -> None:
        self.client, self.key, self.name = client, key, name
        self.ttl_ms = int(ttl_s * 1000)

    async def take(self) -> str:
        """Takes or renews the lease if it is free or ours; returns the holder's name.

        Raises:
            redis.RedisError: Redis is unreachable (the caller decides what that means).
        """
        holder = await self.client.eval(_RENEW, 1, self.key, self.name, self.ttl_ms)
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    async def release(self) -> None:
        """Gives the lease up (if still ours), so a waiting process takes it at once."""
        try:
            await self.client.eval(_RELEASE, 1, self.key, self.name)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            log.warning("lease %s: not released (%s); it expires by itself", self.key, exc)
