"""MQTT to Kafka bridge: at-least-once, keyed by lock id, bad input dead-lettered.

One inbound session. All inbound messages go through one persistent MQTT 5 session with
plain (not shared) subscriptions, client id ``<prefix>-bridge-<mqtt.shared_group>``, held
by one bridge at a time: the holder of a Redis lease (:class:`~smartlock.adapters.lease.Lease`,
renewed every second, expiring after :data:`LEASE_TTL_S`). Further bridges wait as hot
standbys and take the session over when the active one stops (at once) or dies (after the
lease expired), finding its unacknowledged messages waiting. Why one session and not a
shared subscription over all bridges:

* Mosquitto 2.0.11 restores a persistent session's plain subscriptions from its database
  after a restart, not its shared ones: with ``$share`` the messages published between a
  broker restart and the bridges' reconnect had no subscriber and were dropped; with the
  one session they are queued.
* One receiver sees the publish order, so every lock's messages reach Kafka in that order
  and the clock stamped on each record is the clock of CONTRACT section 3: live output
  equals ``smartlock evaluate`` with any number of bridges (a shared subscription hands a
  lock's messages to different bridges, which can reorder them).

A message is acknowledged to MQTT only after Kafka acknowledged every record made from it:
killing the bridge loses nothing.

Kafka record format (topic ``smartlock.inbound``, :mod:`smartlock.stream.inbound`): key =
lock id (UTF-8); value = the MQTT payload bytes as received; the MQTT topic, the bridge's
clock, its name and the receive time in headers. A declaration binding several locks
becomes one record per lock. Every record (ticks too) carries a `mac` header made with the
stream key of the credentials store; the worker refuses a record without a valid one.

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
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from redis.exceptions import RedisError

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.kafka_auth import kafka_login
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.lease import Lease
from smartlock.adapters.membership import Heartbeat
from smartlock.adapters.mqtt import MqttClient, Received, client_for
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
#: The inbound session's lease expires this long after the active bridge last renewed it:
#: how long a standby waits after the active bridge died.
LEASE_TTL_S = 5.0
#: The active bridge renews its lease, and a standby asks for it, this often.
LEASE_EVERY_S = 1.0


async def ensure_topics(bootstrap: str, topics: dict[str, int], **login: Any) -> None:
    """Creates missing topics with the given partition counts (replication 1 locally).

    ``login``: the SASL keyword arguments of :func:`smartlock.adapters.kafka_auth.kafka_login`.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **login)
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
        name: this bridge's name (heartbeat, lease). Records and ticks are stamped with the
            inbound session's name instead, so the clock goes on across a takeover.
    """

    def __init__(self, settings: Settings, name: str = "1") -> None:
        self.settings = settings
        self.name = name
        self.session = settings.mqtt.shared_group
        self.stats = BridgeStats()
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self._mqtt = self._session_client()
        self._producer: AIOKafkaProducer | None = None
        keys = {lock: key.get_secret_value() for lock, key in settings.signing.keys.items()}
        # The stream key authenticates every inbound record; re-read (on a change of the
        # store's file) before each batch and tick, so a rotation needs no restart.
        self._credentials = CredentialStore(settings.credentials_dir)
        self._forwarder = Forwarder(self.session, keys, stream_key=self._stream_key())
        self._ticked: tuple[float | None, float] = (
            None,
            0.0,
        )  # (clock, monotonic time) of the last tick
        self._partitions: list[int] = []

    def _stream_key(self) -> bytes:
        return self._credentials.stream_keys()[0]

    def _session_client(self) -> MqttClient:
        prefix = self.settings.mqtt.client_id_prefix
        return client_for(
            self.settings,
            "bridge",
            f"{prefix}-bridge-{self.session}",
            persistent=True,
            manual_ack=True,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until ``stop`` is set (standing by while another bridge holds the session)."""
        kafka = self.settings.kafka
        self._producer = AIOKafkaProducer(
            bootstrap_servers=kafka.bootstrap,
            acks="all",
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
            **kafka_login(self.settings, "bridge"),
        )
        await self._producer.start()
        redis = async_redis_client(self.settings, "bridge")
        try:
            await ensure_topics(
                kafka.bootstrap,
                {kafka.inbound_topic: kafka.partitions},
                **kafka_login(self.settings, "bridge"),
            )
            self._partitions = sorted(await self._producer.partitions_for(kafka.inbound_topic))
            prefix = self.settings.redis.prefix
            owns = (
                f"MQTT {self.settings.mqtt.host}:{self.settings.mqtt.port} session "
                f"{self.session} -> Kafka {kafka.inbound_topic} ({len(self._partitions)} partitions)"
            )
            # One line for operators: this bridge is ready and what it moves.
            print(f"bridge {self.name} ready: {owns}", flush=True)
            heartbeat = Heartbeat(redis, prefix, "bridge", self.name)
            await heartbeat.beat(f"{owns}, standby", force=True)
            lease = Lease(redis, RedisKeys(prefix).lease("bridge"), self.name, LEASE_TTL_S)
            while not stop.is_set():
                holder = await self._holder(lease, active=False)
                if holder == self.name:
                    await self._active(stop, lease, heartbeat, owns)
                    continue
                await heartbeat.beat(f"{owns}, standby ({holder} holds the session)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), LEASE_EVERY_S)
            await heartbeat.leave()
        finally:
            await redis.aclose()
            await self._producer.stop()

    async def _holder(self, lease: Lease, active: bool) -> str:
        """Who holds the session after asking for it. While Redis is away nobody can take it
        over, so the active bridge goes on and a standby keeps waiting."""
        try:
            return await lease.take()
        except (RedisError, OSError) as exc:
            log.warning("bridge %s: session lease unknown, Redis away (%s)", self.name, exc)
            return self.name if active else "?"

    async def _renew(self, lease: Lease, deposed: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(LEASE_EVERY_S)
            holder = await self._holder(lease, active=True)
            if holder != self.name:
                log.warning("bridge %s: %s took the session over; standing by", self.name, holder)
                deposed.set()
                return

    async def _active(
        self, stop: asyncio.Event, lease: Lease, heartbeat: Heartbeat, owns: str
    ) -> None:
        """Holds the inbound session until ``stop`` is set or another bridge took the lease."""
        kafka = self.settings.kafka
        loop = asyncio.get_running_loop()
        self._mqtt = mqtt = self._session_client()
        # Renewed on its own task, so a batch held through a Kafka outage keeps the session.
        deposed = asyncio.Event()
        renewer = asyncio.create_task(self._renew(lease, deposed))
        mqtt.subscribe(
            INBOUND_SUBSCRIPTIONS, lambda r: loop.call_soon_threadsafe(self._queue.put_nowait, r)
        )
        try:
            await asyncio.to_thread(mqtt.connect)
            print(f"bridge {self.name} active: holds the session {self.session}", flush=True)
            await heartbeat.beat(f"{owns}, active", force=True)
            while not stop.is_set():
                if deposed.is_set():  # this bridge stalled past its lease: step down
                    return
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
                mqtt.raise_if_failed()
            try:  # workers stop waiting for this session's clock
                await self._tick(closing=True)
            except Exception as exc:  # noqa: BLE001 - stopping anyway; the clock expires then
                log.warning("bridge %s: closing tick not written: %s", self.name, exc)
        finally:
            renewer.cancel()
            mqtt.disconnect()
            # What was received and not forwarded is unacknowledged: the next holder gets it.
            self._queue = asyncio.Queue()
            if stop.is_set():
                await lease.release()

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
        self._forwarder.stream_key = self._stream_key()
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
        self._forwarder.stream_key = self._stream_key()
        tick = self._forwarder.tick(datetime.now(UTC), closing)
        if tick is None:
            return
        topic = self.settings.kafka.inbound_topic
        futures = [
            await self._producer.send(topic, partition=p, **tick.send_args())
            for p in self._partitions
        ]
        await asyncio.gather(*futures)
        self._ticked = (self._forwarder.clock, now)
