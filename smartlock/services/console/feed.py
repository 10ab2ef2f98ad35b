"""The live feed: one reader of the worker's Redis streams per console, fanned out to every browser.

At start the feed reads the current state (trip hashes, the alert stream, recent verdicts,
the desk) into a :class:`~smartlock.services.console.model.LiveModel`, then tails the
streams from the ids it read up to (``XREAD BLOCK``), so nothing written in between is
lost. Each batch of entries becomes one numbered update kept in a ring; a browser that
reconnects with ``Last-Event-ID`` gets the updates it missed from the ring, or a fresh
snapshot when its id is older than the ring (or from an earlier console process): either
way it ends up with the whole state. Twenty browsers cost Redis what one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from smartlock.adapters.keys import RedisKeys
from smartlock.services.console.model import Changes, LiveModel

log = logging.getLogger(__name__)

#: Updates kept for browsers that reconnect (at most ten a second: several minutes).
RING = 5000
#: Least time between two updates: entries arriving meanwhile are merged into one.
MIN_INTERVAL_S = 0.1


def with_recorded_ms(event: dict[str, Any], entry_id: str) -> dict[str, Any]:
    """A gate event with ``recorded_ms``: when Redis stored it (from the stream entry id)."""
    return event | {"recorded_ms": int(entry_id.split("-")[0])}


def with_written_ms(verdict: dict[str, Any], entry_id: str) -> dict[str, Any]:
    """The verdict with ``written_ms``: when the worker stored it (Redis's clock, from the
    stream entry id), for the gate view's arrival-to-verdict times."""
    return verdict | {"written_ms": int(entry_id.split("-")[0])}


@dataclass(frozen=True)
class Update:
    """One numbered live update (``id`` is the SSE event id)."""

    id: str
    event: str
    data: str


class LiveFeed:
    """Reads Redis into the model and numbers the updates for the browsers."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys) -> None:
        self.client = client
        self.keys = keys
        self.model = LiveModel()
        self.boot = secrets.token_hex(4)  # ids of an earlier console process never match
        self.seq = 0
        self.ring: deque[Update] = deque(maxlen=RING)
        self.changed = asyncio.Condition()
        self.cursor: dict[str, str] = {}
        self.last_entry_at: float | None = None  # wall time of the newest worker write seen
        self._task: asyncio.Task[None] | None = None
        self._snapshot: tuple[int, str] | None = None

    # ---------------------------------------------------------------- life cycle

    async def start(self) -> None:
        await self.load()
        self._task = asyncio.create_task(self._tail(), name="console-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def load(self) -> None:
        """Reads the current state; remembers where each stream stood, to tail from there."""
        k = self.keys
        for key in (k.alerts, k.verdicts, k.trip_changes, k.desk, k.deadletters, k.gate_events):
            last = await self.client.xrevrange(key, count=1)
            self.cursor[key] = last[0][0] if last else "0-0"
        async for key in self.client.scan_iter(match=k.trip_pattern, count=1000):
            fields = await self.client.hgetall(key)
            if fields.get("lock_id"):
                self.model.load_trip(fields)
        changes = Changes()
        async for fields in self._read_all(k.alerts):
            self.model.apply_alert(json.loads(fields["json"]), changes)
        recent = await self.client.xrevrange(
            k.verdicts, max=self.cursor[k.verdicts], count=self.model.verdicts.maxlen
        )
        for entry_id, fields in reversed(recent):
            self.model.apply_verdict(with_written_ms(json.loads(fields["json"]), entry_id), changes)
        self.model.verdict_total = await self.client.xlen(k.verdicts)
        recent = await self.client.xrevrange(
            k.gate_events, max=self.cursor[k.gate_events], count=self.model.gate_events.maxlen
        )
        for entry_id, fields in reversed(recent):
            self.model.apply_gate(with_recorded_ms(json.loads(fields["json"]), entry_id), changes)
        for alert_id, raw in (await self.client.hgetall(k.acks)).items():
            self.model.acks[alert_id] = json.loads(raw)
        for alert_id, raw in (await self.client.hgetall(k.pending)).items():
            self.model.pending[alert_id] = json.loads(raw)
        # Resolutions the pipeline refused while this console was not running.
        async for fields in self._read_all(k.deadletters):
            self.model.apply_dead_letter(json.loads(fields["json"]), changes)
        for alert_id in list(self.model.alerts):
            self.model.alert_row(alert_id)

    async def _read_all(self, key: str) -> AsyncIterator[dict[str, str]]:
        """Every entry of a stream up to where :meth:`load` found its end, in chunks."""
        start = "-"
        while True:
            entries = await self.client.xrange(key, min=start, max=self.cursor[key], count=5000)
            for _, fields in entries:
                yield fields
            if len(entries) < 5000:
                return
            start = "(" + entries[-1][0]

    async def _tail(self) -> None:
        while True:
            try:
                reply = await self.client.xread(dict(self.cursor), count=1000, block=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarting: say so, wait, go on from the same ids
                log.warning("console feed: reading Redis failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            if not reply:
                continue
            changes = Changes()
            for key, entries in reply:
                for entry_id, fields in entries:
                    self.cursor[key] = entry_id
                    try:
                        self._apply(key, entry_id, fields, changes)
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("console feed: skipped entry %s of %s: %s", entry_id, key, exc)
            self.last_entry_at = time.time()
            if changes:
                await self.publish("update", changes.to_json())
            await asyncio.sleep(MIN_INTERVAL_S)

    def _apply(self, key: str, entry_id: str, fields: dict[str, str], changes: Changes) -> None:
        k = self.keys
        if key == k.trip_changes:
            self.model.apply_trip(json.loads(fields["json"]), changes)
        elif key == k.alerts:
            self.model.apply_alert(json.loads(fields["json"]), changes)
        elif key == k.verdicts:
            self.model.apply_verdict(with_written_ms(json.loads(fields["json"]), entry_id), changes)
        elif key == k.desk:
            self.model.apply_desk(json.loads(fields["json"]), changes)
        elif key == k.deadletters:
            self.model.apply_dead_letter(json.loads(fields["json"]), changes)
        elif key == k.gate_events:
            self.model.apply_gate(with_recorded_ms(json.loads(fields["json"]), entry_id), changes)

    # ---------------------------------------------------------------- fan-out

    async def publish(self, event: str, body: dict[str, Any]) -> Update:
        """Numbers an update, keeps it in the ring and wakes every waiting browser."""
        self.seq += 1
        update = Update(
            f"{self.boot}-{self.seq}",
            event,
            json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        )
        self.ring.append(update)
        async with self.changed:
            self.changed.notify_all()
        return update

    def current_id(self) -> str:
        return f"{self.boot}-{self.seq}"

    def snapshot_json(self) -> str:
        """The model as one JSON text, shared by browsers connecting at the same update."""
        if self._snapshot is None or self._snapshot[0] != self.seq:
            self._snapshot = (
                self.seq,
                json.dumps(self.model.snapshot(), ensure_ascii=False, separators=(",", ":")),
            )
        return self._snapshot[1]

    def since(self, last_id: str | None) -> list[Update] | None:
        """The updates after ``last_id``, or None when they are not all in the ring any more."""
        if not last_id:
            return None
        boot, _, seq_text = last_id.rpartition("-")
        if boot != self.boot or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        if seq > self.seq:
            return None
        if seq == self.seq:
            return []
        first = self.seq - len(self.ring) + 1  # seq of the oldest update in the ring
        if seq + 1 < first:
            return None
        return list(self.ring)[seq + 1 - first :]

    async def wait(self, after_seq: int, timeout: float) -> None:
        """Returns when an update newer than ``after_seq`` exists, or after ``timeout``."""
        async with self.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait_for(lambda: self.seq > after_seq), timeout)
