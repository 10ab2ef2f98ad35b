"""The trip view's data: declaration, track, alerts with their desk status, audit, write-off."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from smartlock.adapters.keys import RedisKeys
from smartlock.services.console.model import LiveModel, parse_trip

#: Track points returned at most (the newest); the response says how many there were.
MAX_TRACK = 20_000


def parse_track(raw: list[str]) -> list[list[Any]]:
    """``[ts, lat, lon]`` points from the Redis list in time order, repeats dropped (pure).

    A worker that re-processes its last batch after a crash appends those fixes again.
    """
    points = []
    for item in raw:
        try:
            ts, lat, lon = json.loads(item)
        except (ValueError, TypeError):
            continue
        points.append((ts, lat, lon))
    return [list(p) for p in sorted(set(points), key=lambda p: p[0])]


async def trip_detail(
    client: aioredis.Redis, keys: RedisKeys, model: LiveModel, lock_id: str
) -> dict[str, Any] | None:
    """Everything the trip view shows about the lock's current trip, or None if unknown."""
    fields = await client.hgetall(keys.trip(lock_id))
    if not fields:
        return None
    trip = parse_trip(fields)
    decl = trip.get("declaration_id") or ""
    declaration, track_raw, track_len, audit, writeoff = None, [], 0, [], None
    if decl:
        raw = await client.get(keys.declaration(decl))
        declaration = json.loads(raw) if raw else None
        track_len = await client.llen(keys.track(decl, lock_id))
        track_raw = await client.lrange(keys.track(decl, lock_id), -MAX_TRACK, -1)
        audit = [json.loads(f["json"]) for _, f in await client.xrange(keys.audit(decl))]
        wo = await client.hget(keys.writeoff(decl), lock_id)
        writeoff = json.loads(wo) if wo else None
    alerts = [
        model.alert_row(a)
        for a, row in model.alerts.items()
        if row["lock_id"] == lock_id and row["declaration_id"] in (decl, "UNDECLARED")
    ]
    alerts.sort(key=lambda a: a["ts"])
    return {
        "trip": trip,
        "declaration": declaration,
        "track": parse_track(track_raw),
        "track_total": track_len,
        "alerts": alerts,
        "audit": audit,
        "writeoff": writeoff,
    }
