"""Publishes a stream of messages over MQTT QoS 1, paced by event time or as fast as the
broker acknowledges, counting what was sent and what the broker acknowledged.

The pacing (when message i is due) and the payload encoding are pure functions
(:class:`Pacer`, :func:`encode`, :func:`event_time`); :func:`publish_paced` is the shell
that sleeps, publishes and counts PUBACKs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from smartlock.adapters.mqtt import Login, MqttClient
from smartlock.contract.timestamps import epoch
from smartlock.errors import InfrastructureError

Payload = dict[str, Any] | str
#: What :func:`publish_paced` takes: (topic, payload), or (event time in epoch seconds or
#: None, topic, payload) when the caller knows the event time better than the payload does.
Message = tuple[str, Payload] | tuple[float | None, str, Payload]

#: Below this, sleeping costs more than it buys (the event loop's timer resolution).
_MIN_SLEEP_S = 0.002


@dataclass
class PublishReport:
    """What a run of :func:`publish_paced` achieved."""

    sent: int = 0  # messages handed to the broker
    acked: int = 0  # QoS 1 PUBACKs received (QoS 0: counted as sent)
    seconds: float = 0.0  # wall time from the first publish to the last ack

    @property
    def rate(self) -> float:
        """Acknowledged messages per second."""
        return self.acked / self.seconds if self.seconds > 0 else 0.0


def encode(payload: Payload) -> bytes:
    """The bytes to publish.

    A string is published as its raw UTF-8 text, so a malformed payload kept in a trace is
    replayed as the same bytes; an object is compact JSON with non-ASCII characters kept.
    """
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_time(payload: Payload) -> float | None:
    """The payload's ``ts`` (RFC 3339) as epoch seconds, or None if it has no valid one."""
    ts = payload.get("ts") if isinstance(payload, dict) else None
    if not isinstance(ts, str):
        return None
    try:
        # A naive time is not RFC 3339 (refused): as local time, pacing would depend on the machine.
        return epoch(ts)
    except ValueError:
        return None


class Pacer:
    """When each message is due, in seconds after the start: event-time spacing / ``speed``.

    The first timed message is due at once and anchors the clock. A message without an
    event time goes out right after the previous one; so does one whose event time is
    earlier than a message already sent (a late upload): pacing never goes backwards.

    Args:
        speed: event time runs this many times faster than wall time; None: no pacing.
    """

    def __init__(self, speed: float | None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")
        self.speed = speed
        self._first: float | None = None
        self._last_due = 0.0

    def due(self, t: float | None) -> float:
        """Seconds after the start at which a message with event time ``t`` is due."""
        if self.speed is None:
            return 0.0
        if t is not None:
            if self._first is None:
                self._first = t
            self._last_due = max(self._last_due, (t - self._first) / self.speed)
        return self._last_due


def due_times(times: Iterable[float | None], speed: float | None) -> list[float]:
    """The due time of each message of ``times`` (a convenience over :class:`Pacer`)."""
    pacer = Pacer(speed)
    return [pacer.due(t) for t in times]


def timed(messages: Iterable[Message]) -> Iterator[tuple[float | None, str, Payload]]:
    """(event time, topic, payload) for each message; the event time comes from the payload's
    ``ts`` unless the caller gave one."""
    for message in messages:
        if len(message) == 3:
            yield message  # type: ignore[misc]
        else:
            topic, payload = message  # type: ignore[misc]
            yield event_time(payload), topic, payload


async def publish_paced(
    messages: Iterable[Message],
    host: str,
    port: int,
    *,
    speed: float | None,
    client_id: str,
    progress: bool = False,
    qos: int = 1,
    total: int | None = None,
    window: int = 2000,
    timeout: float = 30.0,
    login: Login | None = None,
    resend_s: float = 0.0,
    reconnect_wait_s: float = 60.0,
) -> PublishReport:
    """Publishes ``messages`` in order; returns once the broker acknowledged every one.

    Args:
        messages: (topic, payload) in publish order, lazily iterable (never materialised).
            A dict payload is sent as compact JSON, a str as its raw text. A 3-tuple
            (event time, topic, payload) overrides the event time taken from ``ts``.
        host: MQTT broker host.
        port: MQTT broker port.
        speed: event time runs this many times faster than wall time; None: as fast as the
            broker acknowledges, with at most ``window`` messages unacknowledged at once.
        client_id: MQTT client id (unique per run).
        progress: show a progress bar on the terminal (of ``total`` messages, if known).
        qos: 1 (default) counts PUBACKs; 0 counts a message as acked once written.
        total: number of messages, for the progress bar only.
        window: most QoS 1 messages in flight at once.
        timeout: seconds to wait for the oldest unacknowledged message.
        login: the identity to publish as (the broker admits no anonymous client).
        resend_s: if the connection breaks, wait for the broker to come back and publish
            again what it acknowledged in the last ``resend_s`` seconds (a broker killed with
            -9 forgets what it had not saved); each message still counts once. 0: a lost
            connection is an error.
        reconnect_wait_s: with ``resend_s``, how long to wait for a lost broker.

    Returns:
        The counts and the wall time from the first publish to the last acknowledgement.

    Raises:
        InfrastructureError: the broker is unreachable (with ``resend_s``: gone for longer
            than ``reconnect_wait_s``), refused a message (not authorised), or did not
            acknowledge a message within ``timeout`` seconds.
    """
    # paho rescans every queued message on each PUBACK when it enforces its own in-flight
    # limit (O(window) per ack); the window below bounds what is in flight instead.
    client = MqttClient(
        host, port, client_id, max_inflight=0, login=login,
        resend_s=resend_s, reconnect_wait_s=reconnect_wait_s,
    )  # fmt: skip
    wait = reconnect_wait_s if resend_s else None
    await asyncio.to_thread(client.connect)
    report, pacer, pending = PublishReport(), Pacer(speed), deque[paho.MQTTMessageInfo]()
    bar = _ProgressBar(total) if progress else None
    start = time.monotonic()
    try:
        for t, topic, payload in timed(messages):
            delay = start + pacer.due(t) - time.monotonic()
            if delay > _MIN_SLEEP_S:
                await asyncio.sleep(delay)
            if wait is not None and not client.connected:
                await asyncio.to_thread(client.wait_connected, wait)
            pending.append(client.publish(topic, encode(payload), qos=qos))
            report.sent += 1
            report.acked += await _settle(pending, window, timeout, client, wait)
            if bar:
                bar.tick(report, start)
        report.acked += await _settle(pending, 0, timeout, client, wait)
    finally:
        report.seconds = time.monotonic() - start
        if bar:
            bar.update(report, start)
            bar.stop()
        client.disconnect()
    return report


async def _settle(
    pending: deque[paho.MQTTMessageInfo],
    keep: int,
    timeout: float,
    client: MqttClient,
    reconnect_wait_s: float | None = None,
) -> int:
    """Drops acknowledged messages from the front; waits while more than ``keep`` are pending.

    Mosquitto acknowledges QoS 1 messages in order, so looking at the oldest one suffices.
    With ``reconnect_wait_s``, a lost connection is waited for (paho re-sends what is not
    acknowledged once it is back) and the ``timeout`` starts again after the reconnect.
    """
    acked = 0
    deadline: float | None = None
    while pending:
        if pending[0].is_published():
            client.raise_if_refused([pending[0]])
            pending.popleft()
            acked += 1
            deadline = None
            continue
        if len(pending) <= keep:
            break
        client.raise_if_failed()
        if reconnect_wait_s is not None and not client.connected:
            await asyncio.to_thread(client.wait_connected, reconnect_wait_s)
            deadline = None
        deadline = deadline or time.monotonic() + timeout
        if time.monotonic() > deadline:
            raise InfrastructureError(
                f"MQTT broker {client.host}:{client.port} did not acknowledge message {pending[0].mid} "
                f"within {timeout:.0f} s ({len(pending)} unacknowledged); is it overloaded or are its "
                "queues too small (max_inflight_messages / max_queued_messages)?"
            )
        await asyncio.sleep(0.001)
    return acked


class _ProgressBar:
    """A rich progress bar with the sent and acknowledged counts and the rate."""

    def __init__(self, total: int | None) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
            console=Console(stderr=True),
        )  # stdout is for the summary
        self._task = self._progress.add_task("publishing", total=total)
        self._next = 0.0
        self._progress.start()

    def tick(self, report: PublishReport, start: float) -> None:
        """Updates at most ten times a second: a per-message update would cost more than the publish."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.1
            self.update(report, start)

    def update(self, report: PublishReport, start: float) -> None:
        """Shows the counts now."""
        rate = report.acked / max(time.monotonic() - start, 1e-9)
        self._progress.update(
            self._task,
            completed=report.sent,
            description=f"sent {report.sent}, acked {report.acked}, {rate:,.0f} msg/s",
        )

    def stop(self) -> None:
        self._progress.stop()
