"""Pipeline health for the gate and loop view: servers up or not, bridges and workers up or
not (their heartbeats), the workers' Kafka lag, gate round trips, counts.

Computed every couple of seconds by one task per console and shared by every browser.

Bridges and workers beat in Redis (:mod:`smartlock.adapters.membership`): a member is up
while its ``alive`` key lives (it expires ``TTL_S`` after the last beat, as ``smartlock stack
status`` reports). A bridge that stops cleanly removes its record; the console remembers every
member it has seen, so one that left shows as stopped rather than vanishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from smartlock.adapters.keys import RedisKeys
from smartlock.services.console.feed import LiveFeed

#: name -> (host, port) of the servers whose port should answer (MQTT, Kafka).
HealthProbe = Callable[[], dict[str, tuple[str, int]]]
#: Measures the workers' Kafka lag (:class:`~smartlock.services.console.lag.KafkaLag`).
LagProbe = Callable[[], Awaitable[dict[str, Any]]]
#: Gate round trips are summed up over this many seconds before now.
ROUND_TRIP_WINDOW_S = 900.0


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def trip_counts(trips: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Trips by colour, overdue trips, in transit, released (pure)."""
    counts = {
        "green": 0,
        "amber": 0,
        "red": 0,
        "in_transit": 0,
        "released": 0,
        "overdue": 0,
        "trips": 0,
    }
    for trip in trips.values():
        if not trip.get("declaration_id"):
            continue
        counts["trips"] += 1
        state = trip.get("state")
        if state in ("released", "closed"):
            counts["released"] += 1
            continue
        counts[trip.get("colour") or "green"] = counts.get(trip.get("colour") or "green", 0) + 1
        if state in ("sealed", "in_transit", "deviating"):
            counts["in_transit"] += 1
        if any(a.get("type") == "overdue" and a.get("open") for a in trip.get("alerts") or []):
            counts["overdue"] += 1
    return counts


def nearest_rank(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0 < q <= 1) of sorted values by the nearest-rank method (pure)."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def round_trips(
    events: Iterable[dict[str, Any]], now_ms: float, window_s: float = ROUND_TRIP_WINDOW_S
) -> dict[str, Any]:
    """Gate round trips (arrival published -> signed verdict received, as the gate clients
    measured them) and manual fallbacks over the last ``window_s`` seconds (pure)."""
    since = now_ms - window_s * 1000
    recent = [e for e in events if e.get("recorded_ms", 0) >= since]
    times = sorted(
        float(e["round_trip_ms"])
        for e in recent
        if e.get("kind") == "verdict" and e.get("round_trip_ms") is not None
    )
    return {
        "window_s": window_s,
        "count": len(times),
        "median_ms": nearest_rank(times, 0.5) if times else None,
        "p95_ms": nearest_rank(times, 0.95) if times else None,
        "max_ms": times[-1] if times else None,
        "manual": sum(1 for e in recent if e.get("kind") == "manual"),
        "reconciled": sum(1 for e in recent if e.get("kind") == "reconciled"),
    }


def member_rows(
    recorded: dict[str, dict[str, Any]],
    alive: set[str],
    seen: dict[str, dict[str, Any]],
    now: float,
) -> list[dict[str, Any]]:
    """Bridges and workers as the health view shows them (pure).

    ``recorded``: ``<role>:<name>`` -> the member's last heartbeat record; ``alive``: the
    members whose heartbeat key still lives; ``seen``: members this console saw before (a
    member missing from ``recorded`` now left cleanly, or its record was removed)."""
    rows = []
    for member_id in sorted(set(recorded) | set(seen)):
        record = recorded.get(member_id) or seen[member_id]
        beat = float(record.get("beat") or 0)
        rows.append(
            {
                "id": member_id,
                "role": record.get("role"),
                "name": record.get("name"),
                "host": record.get("host"),
                "pid": record.get("pid"),
                "owns": record.get("owns") or "",
                "up": member_id in recorded and member_id in alive,
                "left": member_id not in recorded,
                "beat_s": round(max(0.0, now - beat), 1) if beat else None,
            }
        )
    return rows


class Health:
    """The latest health figures (``latest``), refreshed by :meth:`run`."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: RedisKeys,
        feed: LiveFeed,
        probe: HealthProbe,
        lag: LagProbe | None = None,
    ) -> None:
        self.client, self.keys, self.feed, self.probe, self.lag = client, keys, feed, probe, lag
        self.latest: dict[str, Any] = {}
        self.version = 0
        self.seen: dict[str, dict[str, Any]] = {}  # every bridge and worker met since start

    async def members(self) -> list[dict[str, Any]]:
        """Bridges and workers with their heartbeats (see the module docstring)."""
        recorded = {
            k: json.loads(v) for k, v in (await self.client.hgetall(self.keys.members)).items()
        }
        ids = sorted(recorded)
        found = (
            await asyncio.gather(
                *(
                    self.client.exists(self.keys.alive(*member_id.split(":", 1)))
                    for member_id in ids
                )
            )
            if ids
            else []
        )
        alive = {member_id for member_id, n in zip(ids, found, strict=True) if n}
        rows = member_rows(recorded, alive, self.seen, time.time())
        self.seen.update(recorded)
        return rows

    async def run(self, every_s: float) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.latest = await self.measure()
                self.version += 1
            await asyncio.sleep(every_s)

    async def measure(self) -> dict[str, Any]:
        servers: dict[str, bool] = {}
        try:
            servers["redis"] = bool(await self.client.ping())
        except Exception:
            servers["redis"] = False
        for name, (host, port) in self.probe().items():
            servers[name] = await asyncio.to_thread(port_answers, host, port)
        workers: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            workers = {
                k: json.loads(v) for k, v in (await self.client.hgetall(self.keys.workers)).items()
            }
        members: list[dict[str, Any]] | None = None
        with contextlib.suppress(Exception):
            members = await self.members()
        lag = await self.lag() if self.lag is not None else None
        last = self.feed.last_entry_at
        model = self.feed.model
        writeoffs = sum(1 for v in model.verdicts if v.get("verdict") == "release")
        inspections = sum(1 for v in model.verdicts if v.get("verdict") == "inspect")
        return {
            "at": time.time(),
            "servers": servers,
            "workers": workers,
            "members": members,
            "kafka_lag": lag,
            "round_trips": round_trips(model.gate_events, time.time() * 1000),
            "worker_last_write_s": round(time.time() - last, 1) if last is not None else None,
            "counts": trip_counts(model.trips),
            "verdicts": {
                "release": writeoffs,
                "inspect": inspections,
                "total": model.verdict_total,
            },
            "feed": {"updates": self.feed.seq, "browsers_ring": len(self.feed.ring)},
        }
