"""MQTT to Kafka bridge: at-least-once, keyed by lock id, bad input dead-lettered.

Each bridge holds a persistent MQTT 5 session and an MQTT 5 shared subscription
(``$share/<group>/...``), so several bridges split the load and a bridge that is away
finds its unacknowledged messages waiting. A message is acknowledged to MQTT only after
Kafka acknowledged every record made from it: killing the bridge loses nothing.

Kafka record format (topic ``smartlock.inbound``, :mod:`smartlock.stream.inbound`): key =
lock id (UTF-8); value = the MQTT payload bytes as received; the MQTT topic, the bridge's
clock, its name and the receive time in headers. A declaration binding several locks
becomes one record per lock.

Clock and watermark ticks (:mod:`smartlock.stream.inbound`). The bridge keeps the clock of
CONTRACT section 3 in the order it receives messages and stamps it on every record; after
each batch (and every second while idle) it writes a tick with its clock to every
partition. A tick follows, in each partition, everything the bridge wrote before it, so a
worker that reads it knows nothing older from this bridge is still on its way there, and
can let that partition's event-time timers fire (see :mod:`smartlock.core.engine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from smartlock.adapters.membership import Heartbeat
from smartlock.adapters.mqtt import Received, client_for
from smartlock.adapters.redis_auth import async_redis_client
from smartlock.contract.topics import INBOUND_SUBSCRIPTIONS
from smartlock.settings import Settings
from smartlock.stream.inbound import Forwarder, InboundRecord
from smartlock.stream.retry import Outage, exit_on_outage, retrying

log = logging.getLogger(__name__)

#: Messages moved to Kafka per round trip; larger batches amortise the Kafka acks.
BATCH = 1000
#: A tick at least this often while idle: a heartbeat that tells workers this bridge is alive.
TICK_EVERY_S = 1.0


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
        keys = {lock: key.get_secret_value() for lock, key in settings.signing.keys.items()}
        self._forwarder = Forwarder(name, keys)
        self._ticked: tuple[float | None, float] = (
            None,
            0.0,
        )  # (clock, monotonic time) of the last tick
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
            owns = (
                f"MQTT {self.settings.mqtt.host}:{self.settings.mqtt.port} $share/{group} "
                f"-> Kafka {kafka.inbound_topic} ({len(self._partitions)} partitions)"
            )
            # One line for operators: this bridge is ready and what it moves.
            print(f"bridge {self.name} ready: {owns}", flush=True)
            heartbeat = Heartbeat(
                async_redis_client(self.settings, "bridge"), self.settings.redis.prefix,
                "bridge", self.name,
            )  # fmt: skip
            await heartbeat.beat(owns, force=True)
            while not stop.is_set():
                await heartbeat.beat()
                batch = await self._next_batch(stop)
                try:  # a Kafka outage holds the batch (MQTT keeps it unacknowledged) and retries
                    if batch:
                        await self._forward(batch)
                    await retrying(
                        f"bridge {self.name}: watermark tick",
                        self._tick,
                        give_up_s=kafka.output_give_up_s,
                    )
                except Outage as exc:
                    exit_on_outage(f"bridge {self.name}", exc)
                self._mqtt.raise_if_failed()
            try:  # workers stop waiting for this bridge's clock
                await self._tick(closing=True)
            except Exception as exc:  # noqa: BLE001 - stopping anyway; the clock expires then
                log.warning("bridge %s: closing tick not written: %s", self.name, exc)
            await heartbeat.leave()
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
        """Turns the batch into records once (the clock stamps must not change on a retry), then
        sends them until Kafka acknowledged every one, and only then acknowledges MQTT."""
        kafka = self.settings.kafka
        records: list[tuple[str, InboundRecord]] = []
        for received in batch:
            forwarded = self._forwarder.forward(
                received.topic, received.payload, received.received_at
            )
            if forwarded.dead is not None:
                value = json.dumps(forwarded.dead.to_record(), ensure_ascii=False).encode()
                records.append((kafka.deadletter_topic, InboundRecord(None, value)))
                self.stats.dead_letters += 1
            for record in forwarded.records:
                records.append((kafka.inbound_topic, record))
                self.stats.produced += 1
        await retrying(
            f"bridge {self.name}: Kafka produce",
            lambda: self._send(records),
            give_up_s=kafka.output_give_up_s,
        )
        for received in batch:  # every record acknowledged by Kafka: now MQTT may forget them
            self._mqtt.ack(received)
        self.stats.received += len(batch)

    async def _send(self, records: list[tuple[str, InboundRecord]]) -> None:
        assert self._producer is not None
        futures = [await self._producer.send(t, **r.send_args()) for t, r in records]
        await asyncio.gather(*futures)

    async def _tick(self, closing: bool = False) -> None:
        """Writes a watermark tick to every partition when the clock moved, or once a second."""
        assert self._producer is not None
        clock, last = self._ticked
        now = time.monotonic()
        if not closing and clock == self._forwarder.clock and now - last < TICK_EVERY_S:
            return
        tick = self._forwarder.tick(datetime.now(UTC), closing)
        if tick is None:
            return
        topic = self.settings.kafka.inbound_topic
        futures = [
            await self._producer.send(topic, value=tick.value, partition=p)
            for p in self._partitions
        ]
        await asyncio.gather(*futures)
        self._ticked = (self._forwarder.clock, now)
