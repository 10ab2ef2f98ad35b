"""MQTT to Kafka bridge: at-least-once, keyed by lock id, bad input dead-lettered.

Each bridge holds a persistent MQTT 5 session and an MQTT 5 shared subscription
(``$share/<group>/...``), so several bridges split the load and a bridge that is away
finds its unacknowledged messages waiting. A message is acknowledged to MQTT only after
Kafka acknowledged every record made from it: killing the bridge loses nothing.

Kafka record format (topic ``smartlock.inbound``): key = lock id (UTF-8); value =
``{"topic": <mqtt topic>, "payload": <json object as received>}``, the same shape as a
trace line. A declaration binding several locks becomes one record per lock.

Watermark ticks. After each batch (and every half second while idle) the bridge writes
``{"tick": <epoch seconds>, "bridge": <name>}`` to every partition: the largest event time
among the messages it has forwarded so far. Since everything it forwarded earlier precedes
the tick in each partition, a worker that reads a tick knows that nothing older from this
bridge is still on its way there, and can let event-time timers fire (see
:mod:`smartlock.core.engine`). Idle partitions advance too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from smartlock.adapters.mqtt import Received, client_for
from smartlock.contract.codec import DeadLetter, decode
from smartlock.contract.models import INBOUND_SUBSCRIPTIONS
from smartlock.core.detector import Detector
from smartlock.errors import MessageError
from smartlock.settings import Settings

log = logging.getLogger(__name__)

#: Messages moved to Kafka per round trip; larger batches amortise the Kafka acks.
BATCH = 1000


def to_records(
    received: Received,
) -> tuple[list[tuple[bytes, bytes]], DeadLetter | None, float | None]:
    """Turns one MQTT message into Kafka (key, value) records, or a dead letter; plus its event time."""
    try:
        env = decode(received.topic, received.payload)
    except MessageError as exc:
        dead = DeadLetter(
            received.topic, received.payload, exc.reason, exc.detail, received.received_at, "bridge"
        )
        return [], dead, None
    value = json.dumps(
        {"topic": env.topic, "payload": env.raw}, separators=(",", ":"), ensure_ascii=False
    ).encode()
    return (
        [(lock_id.encode(), value) for lock_id in Detector.route(env)],
        None,
        Detector.event_time(env),
    )


async def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Creates missing topics with the given partition counts (replication 1 locally)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, num_partitions=n, replication_factor=1)
            for name, n in topics.items()
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


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
        self._mqtt = client_for(
            settings,
            "bridge",
            f"{settings.mqtt.client_id_prefix}-bridge-{name}",
            persistent=True,
            manual_ack=True,
        )
        self._producer: AIOKafkaProducer | None = None
        self._event_time: float | None = None  # largest event time forwarded
        self._ticked: float | None = None  # last watermark tick written
        self._partitions: list[int] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until ``stop`` is set; raises if MQTT or Kafka fails."""
        loop = asyncio.get_running_loop()
        kafka = self.settings.kafka
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap,
            acks="all",
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
        )
        await self._producer.start()
        try:
            await ensure_topics(kafka.bootstrap, {kafka.inbound_topic: kafka.partitions})
            self._partitions = sorted(await self._producer.partitions_for(kafka.inbound_topic))
            group = self.settings.mqtt.shared_group
            topics = [f"$share/{group}/{t}" for t in INBOUND_SUBSCRIPTIONS]
            self._mqtt.subscribe(
                topics, lambda r: loop.call_soon_threadsafe(self._queue.put_nowait, r)
            )
            await asyncio.to_thread(self._mqtt.connect)
            log.info(
                "bridge %s: MQTT %s:%s -> Kafka %s",
                self.name,
                self.settings.mqtt.host,
                self.settings.mqtt.port,
                kafka.inbound_topic,
            )
            while not stop.is_set():
                batch = await self._next_batch(stop)
                if batch:
                    await self._forward(batch)
                await self._tick()
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
            records, dead, event_time = to_records(received)
            if event_time is not None and (
                self._event_time is None or event_time > self._event_time
            ):
                self._event_time = event_time
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

    async def _tick(self) -> None:
        """Writes the watermark tick to every partition when event time moved on."""
        assert self._producer is not None
        if self._event_time is None or self._event_time == self._ticked:
            return
        value = json.dumps({"tick": self._event_time, "bridge": self.name}).encode()
        topic = self.settings.kafka.inbound_topic
        futures = [
            await self._producer.send(topic, value=value, partition=p) for p in self._partitions
        ]
        await asyncio.gather(*futures)
        self._ticked = self._event_time
