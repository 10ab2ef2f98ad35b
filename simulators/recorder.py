"""Records live MQTT traffic into a trace (CONTRACT section 5), in the order it arrives."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import TextIO

from pipeline.errors import InfrastructureError
from pipeline.models import INBOUND_SUBSCRIPTIONS
from pipeline.mqtt import MqttClient, Received
from simulators.fleet import trace_line

DEFAULT_TOPICS = tuple(INBOUND_SUBSCRIPTIONS)


def payload_of(data: bytes) -> dict | str:
    """A JSON object payload as the object; anything else as its raw text (replayed byte for byte
    when it is valid UTF-8; other bytes are replaced, as JSON cannot hold them)."""
    text = data.decode("utf-8", errors="replace")
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


class Recorder:
    """Subscribes to ``topics`` (QoS 1) and appends each message to ``out`` as a trace line.

    :meth:`start` returns once the broker has the subscriptions in place: it publishes a
    probe on a private topic and waits to receive it back.
    """

    def __init__(self, host: str, port: int, out: TextIO, topics: tuple[str, ...] = DEFAULT_TOPICS,
                 limit: int | None = None) -> None:
        self.out = out
        self.count = 0
        self.limit = limit
        self._probe = f"smartlock/record/{uuid.uuid4().hex}"
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._topics = (*topics, self._probe)
        self._client = MqttClient(host, port, f"smartlock-record-{uuid.uuid4().hex[:8]}")

    def start(self, timeout: float = 10.0) -> None:
        self._client.subscribe(self._topics, self._on_message)
        self._client.connect()
        deadline = time.monotonic() + timeout
        while not self._ready.is_set():
            self._client.publish(self._probe, b"ready", qos=1)
            if self._ready.wait(0.2):
                break
            self._client.raise_if_failed()
            if time.monotonic() > deadline:
                raise InfrastructureError("the MQTT broker did not confirm the recorder's subscriptions")

    def _on_message(self, received: Received) -> None:
        if received.topic == self._probe:
            self._ready.set()
            return
        with self._lock:
            if self.limit is not None and self.count >= self.limit:
                return
            self.out.write(trace_line(received.topic, payload_of(received.payload)))
            self.count += 1

    def check(self) -> None:
        """Re-raises a failure from paho's thread."""
        self._client.raise_if_failed()

    def stop(self) -> None:
        self._client.disconnect()
        with self._lock:
            self.out.flush()


def record(host: str, port: int, path: Path, topics: tuple[str, ...], duration: float | None, count: int | None,
           stop: threading.Event) -> int:
    """Records until ``duration`` seconds passed, ``count`` messages arrived or ``stop`` is set."""
    with path.open("w", encoding="utf-8") as out:
        recorder = Recorder(host, port, out, topics, count)
        recorder.start()
        started = time.monotonic()
        try:
            while not stop.wait(0.1):
                recorder.check()
                if duration is not None and time.monotonic() - started >= duration:
                    break
                if count is not None and recorder.count >= count:
                    break
        finally:
            recorder.stop()
        return recorder.count
