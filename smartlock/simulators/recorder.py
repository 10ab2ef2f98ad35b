"""Records live MQTT traffic into a trace (CONTRACT section 5), in the order it arrives."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from smartlock.adapters.mqtt import Login, MqttClient, Received
from smartlock.contract.topics import INBOUND_SUBSCRIPTIONS
from smartlock.errors import InfrastructureError
from smartlock.simulators.fleet import trace_line
from smartlock.simulators.publisher import Payload

#: The topics the pipeline consumes: what a replay needs to reproduce a run.
DEFAULT_TOPICS = tuple(INBOUND_SUBSCRIPTIONS)
#: Everything, including the pipeline's outputs (alerts, status, verdicts).
ALL_TOPICS = ("#",)
_FLUSH_EVERY_S = 0.5


def payload_of(data: bytes) -> Payload:
    """A JSON object payload as the object; anything else as its raw text.

    Raw text is replayed byte for byte when it is valid UTF-8; other bytes are replaced,
    as a JSON trace cannot hold them.
    """
    text = data.decode("utf-8", errors="replace")
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


class Recorder:
    """Subscribes to ``topics`` (QoS 1, a non-shared subscription with its own client id) and
    appends each message to ``out`` as a trace line.

    :meth:`start` returns once the broker has the subscriptions in place: it publishes a
    probe on a private topic and waits to receive it back, which (topics being subscribed in
    one SUBSCRIBE) means every filter is active. Retained messages the broker hands over on
    subscribing are not traffic of this run and are left out.

    Args:
        host: MQTT broker host.
        port: MQTT broker port.
        out: where trace lines go (written from paho's network thread, under a lock).
        topics: topic filters to record.
        limit: stop writing after this many messages.
    """

    def __init__(
        self,
        host: str,
        port: int,
        out: TextIO,
        topics: tuple[str, ...] = DEFAULT_TOPICS,
        limit: int | None = None,
        login: Login | None = None,
    ) -> None:
        self.out = out
        self.count = 0
        self.limit = limit
        self._probe = f"smartlock/record/{uuid.uuid4().hex}"
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._topics = (*topics, self._probe)
        self._client = MqttClient(
            host, port, f"smartlock-record-{uuid.uuid4().hex[:12]}", login=login
        )

    def start(self, timeout: float = 10.0) -> None:
        """Connects and subscribes; returns once the subscriptions are active.

        Raises:
            InfrastructureError: the broker is unreachable or never confirmed the subscriptions.
        """
        self._client.subscribe(self._topics, self._on_message)
        self._client.connect()
        deadline = time.monotonic() + timeout
        while not self._ready.is_set():
            self._client.publish(self._probe, b"ready", qos=1)
            if self._ready.wait(0.2):
                break
            self._client.raise_if_failed()
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    f"the MQTT broker {self._client.host}:{self._client.port} did not confirm the recorder's "
                    f"subscriptions within {timeout:.0f} s; check the topic filters and the broker's log"
                )

    @property
    def done(self) -> bool:
        """True once ``limit`` messages were recorded."""
        return self.limit is not None and self.count >= self.limit

    def _on_message(self, received: Received) -> None:
        if received.topic == self._probe:
            self._ready.set()
            return
        if received.retain:
            return
        with self._lock:
            if self.done:
                return
            self.out.write(trace_line(received.topic, payload_of(received.payload)))
            self.count += 1

    def check(self) -> None:
        """Re-raises a failure from paho's thread."""
        self._client.raise_if_failed()

    def flush(self) -> None:
        """Pushes recorded lines to the file, so a reader sees them while recording goes on."""
        with self._lock:
            self.out.flush()

    def stop(self) -> None:
        """Disconnects and flushes."""
        self._client.disconnect()
        self.flush()


def record(
    host: str,
    port: int,
    path: Path,
    topics: tuple[str, ...],
    duration: float | None,
    count: int | None,
    stop: threading.Event,
    on_ready: Callable[[], None] | None = None,
    login: Login | None = None,
) -> int:
    """Records into ``path`` until ``duration`` seconds passed, ``count`` messages arrived or
    ``stop`` is set; calls ``on_ready`` once subscribed. Returns the number of messages recorded."""
    with path.open("w", encoding="utf-8") as out:
        recorder = Recorder(host, port, out, topics, count, login)
        recorder.start()
        if on_ready is not None:
            on_ready()
        started = last_flush = time.monotonic()
        try:
            while not stop.wait(0.05):
                recorder.check()
                now = time.monotonic()
                if now - last_flush >= _FLUSH_EVERY_S:
                    recorder.flush()
                    last_flush = now
                if recorder.done or (duration is not None and now - started >= duration):
                    break
        finally:
            recorder.stop()
        return recorder.count
