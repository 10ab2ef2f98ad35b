"""Publishes a stream of messages over MQTT QoS 1, paced by event time or as fast as the
broker acknowledges, counting what was sent and what the broker acknowledged."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.errors import InfrastructureError
from pipeline.mqtt import MqttClient

Payload = dict[str, Any] | str
#: (event time in epoch seconds or None, topic, payload). None: send right after the previous one.
Timed = tuple[float | None, str, Payload]


@dataclass
class PublishReport:
    sent: int = 0
    acked: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0


def encode(payload: Payload) -> bytes:
    """The bytes to publish: a string is raw text as recorded; an object is compact JSON."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_time(payload: Payload) -> float | None:
    """The payload's ``ts`` as epoch seconds, if it has a valid one."""
    ts = payload.get("ts") if isinstance(payload, dict) else None
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Pacer:
    """When each message is due, in seconds after the start: event-time spacing / ``speed``.

    The first timed message is due at once; a message without event time, or with one
    earlier than a message already due (a late upload), is due at once too.
    """

    def __init__(self, speed: float | None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")
        self.speed = speed
        self.first: float | None = None

    def due(self, t: float | None) -> float:
        if self.speed is None or t is None:
            return 0.0
        if self.first is None:
            self.first = t
        return max(0.0, (t - self.first) / self.speed)


async def publish_paced(messages: Iterable[Timed], host: str, port: int, *, speed: float | None, client_id: str,
                        progress: bool = False, total: int | None = None, qos: int = 1, window: int = 2000,
                        timeout: float = 30.0) -> PublishReport:
    """Publishes ``messages`` in order; returns once the broker acknowledged every one.

    Args:
        messages: (event time, topic, payload), lazily iterable.
        speed: event time runs this many times faster than wall time; None: as fast as the
            broker acknowledges (at most ``window`` messages unacknowledged at once).
        progress: show a progress bar (``total`` messages, if known).

    Raises:
        InfrastructureError: the broker is unreachable, or did not acknowledge a message
            within ``timeout`` seconds.
    """
    client = MqttClient(host, port, client_id, max_inflight=min(window, 65_535))
    await asyncio.to_thread(client.connect)
    report, pacer, pending = PublishReport(), Pacer(speed), deque()
    bar = _progress(progress)
    task = bar.add_task("publishing", total=total) if bar else None
    start = time.monotonic()
    try:
        if bar:
            bar.start()
        for t, topic, payload in messages:
            delay = start + pacer.due(t) - time.monotonic()
            if delay > 0.002:
                await asyncio.sleep(delay)
            pending.append(client.publish(topic, encode(payload), qos=qos))
            report.sent += 1
            report.acked += await _settle(pending, window, timeout, client)
            if bar and report.sent % 500 == 0:
                bar.update(task, completed=report.sent, description=f"sent {report.sent}, acked {report.acked}")
        report.acked += await _settle(pending, 0, timeout, client)
        if bar:
            bar.update(task, completed=report.sent, description=f"sent {report.sent}, acked {report.acked}")
    finally:
        report.seconds = time.monotonic() - start
        if bar:
            bar.stop()
        client.disconnect()
    return report


async def _settle(pending: deque[Any], keep: int, timeout: float, client: MqttClient) -> int:
    """Drops acknowledged messages from the front; waits while more than ``keep`` are pending."""
    acked = 0
    deadline = None
    while pending:
        if pending[0].is_published():
            pending.popleft()
            acked += 1
            deadline = None
            continue
        if len(pending) <= keep:
            break
        client.raise_if_failed()
        deadline = deadline or time.monotonic() + timeout
        if time.monotonic() > deadline:
            raise InfrastructureError(f"MQTT broker did not acknowledge message {pending[0].mid} within {timeout}s")
        await asyncio.sleep(0.001)
    return acked


def _progress(enabled: bool) -> Progress | None:
    if not enabled:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=False)
