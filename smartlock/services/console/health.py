"""Pipeline health for the gate and loop view: servers up or not, the worker's freshness, counts.

Computed every couple of seconds by one task per console and shared by every browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from smartlock.adapters.keys import RedisKeys
from smartlock.services.console.feed import LiveFeed

#: name -> (host, port) of the servers whose port should answer (MQTT, Kafka).
HealthProbe = Callable[[], dict[str, tuple[str, int]]]


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


class Health:
    """The latest health figures (``latest``), refreshed by :meth:`run`."""

    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, feed: LiveFeed, probe: HealthProbe
    ) -> None:
        self.client, self.keys, self.feed, self.probe = client, keys, feed, probe
        self.latest: dict[str, Any] = {}
        self.version = 0

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
        last = self.feed.last_entry_at
        model = self.feed.model
        writeoffs = sum(1 for v in model.verdicts if v.get("verdict") == "release")
        inspections = sum(1 for v in model.verdicts if v.get("verdict") == "inspect")
        return {
            "at": time.time(),
            "servers": servers,
            "workers": workers,
            "worker_last_write_s": round(time.time() - last, 1) if last is not None else None,
            "counts": trip_counts(model.trips),
            "verdicts": {
                "release": writeoffs,
                "inspect": inspections,
                "total": model.verdict_total,
            },
            "feed": {"updates": self.feed.seq, "browsers_ring": len(self.feed.ring)},
        }
