"""MQTT to Kafka bridge: at-least-once, keyed by lock id, bad input dead-lettered.

Each bridge holds a persistent MQTT 5 session and an MQTT 5 shared subscription
(``$share/<group>/...``), so several bridges split the load and a bridge that is away
finds its unacknowledged messages waiting. A message is acknowledged to MQTT only after
Kafka acknowledged every record made from it: killing the bridge loses nothing.

Kafka record format (topic ``smartlock.inbound``): key = lock id (UTF-8); value =
``{"topic": <mqtt topic>, "payload": <json object as received>}``, the same shape as a
trace line. A declaration binding several locks becomes one record per lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from pipeline.codec import DeadLetter, decode
from pipeline.core.detector import Detector
from pipeline.errors import MessageError
from pipeline.models import INBOUND_SUBSCRIPTIONS
from pipeline.mqtt import MqttClient, Received
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: Messages moved to Kafka per round trip; larger batches amortise the Kafka acks.
BATCH = 1000


def to_records(received: Received) -> tuple[list[tuple[bytes, bytes]], DeadLetter | None]:
    """Turns one MQTT message into Kafka (key, value) records, or a dead letter."""
    try:
        env = decode(received.topic, received.payload)
    except MessageError as exc:
        return [], DeadLetter(received.topic, received.payload, exc.reason, exc.detail, received.received_at, "bridge")
    value = json.dumps({"topic": env.topic, "payload": env.raw}, separators=(",", ":"), ensure_ascii=False).encode()
    return [(lock_id.encode(), value) for lock_id in Detector.route(env)], None


@dataclass
class BridgeStats:
    received: int = 0
    produced: int = 0
    dead_letters: int = 0


class Bridge:
    """Moves inbound MQTT messages into Kafka.

    Args:
        settings: the configuration.
        name: this bridge's name; its MQTT client id is ``<prefix>-bridge-<name>``, so a
            restarted bridge of the same name resumes its persistent session.
    """

    def __init__(self, settings: Settings, name: str = "1") -> None:
        self.settings = settings
        self.name = name
        self.stats = BridgeStats()
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self._mqtt = MqttClient(
            settings.mqtt.host, settings.mqtt.port, f"{settings.mqtt.client_id_prefix}-bridge-{name}",
            persistent=True, manual_ack=True,
        )
        self._producer: AIOKafkaProducer | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until ``stop`` is set; raises if MQTT or Kafka fails."""
        loop = asyncio.get_running_loop()
        kafka = self.settings.kafka
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap, acks="all", linger_ms=2, max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
        )
        await self._producer.start()
        try:
            group = self.settings.mqtt.shared_group
            topics = [f"$share/{group}/{t}" for t in INBOUND_SUBSCRIPTIONS]
            self._mqtt.subscribe(topics, lambda r: loop.call_soon_threadsafe(self._queue.put_nowait, r))
            await asyncio.to_thread(self._mqtt.connect)
            log.info("bridge %s: MQTT %s:%s -> Kafka %s", self.name, self.settings.mqtt.host,
                     self.settings.mqtt.port, kafka.inbound_topic)
            while not stop.is_set():
                batch = await self._next_batch(stop)
                if batch:
                    await self._forward(batch)
                self._mqtt.raise_if_failed()
        finally:
            self._mqtt.disconnect()
            await self._producer.stop()

    async def _next_batch(self, stop: asyncio.Event) -> list[Received]:
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout=0.2)
        except TimeoutError:
            return []
        batch = [first]
        while len(batch) < BATCH and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _forward(self, batch: list[Received]) -> None:
        assert self._producer is not None
        kafka = self.settings.kafka
        futures = []
        for received in batch:
            records, dead = to_records(received)
            if dead is not None:
                value = json.dumps(dead.to_record(), ensure_ascii=False).encode()
                futures.append(await self._producer.send(kafka.deadletter_topic, value=value))
                self.stats.dead_letters += 1
            for key, value in records:
                futures.append(await self._producer.send(kafka.inbound_topic, key=key, value=value))
                self.stats.produced += 1
        await asyncio.gather(*futures)  # every record acknowledged by Kafka ...
        for received in batch:  # ... before the MQTT messages are acknowledged
            self._mqtt.ack(received)
        self.stats.received += len(batch)


def dead_letter_now(topic: str, original: bytes, reason: str, detail: str, source: str) -> DeadLetter:
    """A dead letter stamped with the current wall-clock time of receipt."""
    return DeadLetter(topic, original, reason, detail, datetime.now(UTC), source)
