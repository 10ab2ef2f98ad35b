"""The Faust app: topics, the lock-state table and one agent around the batch processor.

Run with ``smartlock worker`` (several workers share the inbound partitions). State lives
in the ``locks`` table (changelog-backed, so a restarted or rebalanced worker recovers its
trips); outputs go to MQTT, Kafka and Redis before the batch's table changes are written
and its offsets committed, so a killed worker re-processes at most its last batch, and the
core's sequence rule keeps that from raising anything twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.kafka_auth import faust_credentials, kafka_login
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.membership import HEARTBEAT_S, Heartbeat
from smartlock.adapters.mqtt import client_for
from smartlock.adapters.redis_auth import async_redis_client
from smartlock.adapters.redis_state import RedisState
from smartlock.contract.codec import sign
from smartlock.contract.models import format_epoch
from smartlock.contract.topics import WRITEOFFS
from smartlock.core.detector import Detector
from smartlock.core.writeoff import stamped, writeoff_notice
from smartlock.settings import Settings
from smartlock.stream.faust_settings import faust_app_kwargs, shorten_fetch_wait
from smartlock.stream.lock_table import LockTable
from smartlock.stream.processor import BatchProcessor, BatchResult, Record
from smartlock.stream.retry import Outage, exit_on_outage, retrying

log = logging.getLogger(__name__)

#: Records per batch and how long to wait to fill one; bounds the gate's latency too.
BATCH_MAX = 1000
BATCH_WITHIN_S = 0.02
#: How often the worker logs where its time went (:class:`BatchStats`).
STATS_EVERY_S = 10.0


class BatchStats:
    """Where a worker's time goes, printed every :data:`STATS_EVERY_S` seconds: records
    and batches, the process's CPU time (all threads) as a share of wall time, and the share
    of wall time spent judging, writing outputs, writing the changelog and waiting for the
    next batch (Faust's consumer and stream)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.records = self.batches = 0
        self.spent: dict[str, float] = {"judge": 0.0, "outputs": 0.0, "changelog": 0.0, "wait": 0.0}
        self.mark = self.since = time.perf_counter()
        self.cpu = time.process_time()

    def got(self, records: int) -> None:
        self.lap("wait")
        self.records += records
        self.batches += 1

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.spent[phase] += now - self.mark
        self.mark = now
        if phase == "changelog" and now - self.since >= STATS_EVERY_S:
            total = now - self.since
            cpu = time.process_time()
            shares = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in self.spent.items())
            print(
                f"{self.role}: {self.records} records in {self.batches} batches "
                f"({self.records / total:.0f}/s, {self.records / max(self.batches, 1):.0f} per "
                f"batch); cpu {100 * (cpu - self.cpu) / total:.0f}%; {shares}",
                flush=True,
            )
            self.records = self.batches = 0
            self.spent = dict.fromkeys(self.spent, 0.0)
            self.since, self.cpu = now, cpu


def _dumps(value: Any) -> bytes:
    """The worker's one JSON style for what it sends: compact, UTF-8 characters kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class Outputs:
    """Publishes a batch's results to MQTT, Kafka and Redis, waiting for every ack."""

    def __init__(self, kafka: KafkaWriter, settings: Settings, name: str) -> None:
        self.settings = settings
        self.kafka = kafka
        self.mqtt = client_for(
            settings, "worker", f"{settings.mqtt.client_id_prefix}-worker-{name}"
        )
        self.redis = RedisState(
            async_redis_client(settings, "worker"),
            settings.redis.prefix,
            settings.redis.alert_stream_maxlen,
        )
        self.role = f"worker {name}"
        # Gate keys are read from the store at each verdict (re-read when the file changes):
        # issuing or rotating a gate's key takes effect without restarting the worker.
        self.credentials = CredentialStore(settings.credentials_dir)

    async def start(self) -> None:
        await asyncio.to_thread(self.mqtt.connect)
        await self.kafka.start()

    def sign_verdicts(self, result: BatchResult) -> None:
        """Signs every verdict with its gate's key (CONTRACT section 2), in place, before it
        goes anywhere; a gate without credentials gets an unsigned verdict, which its client
        treats as no verdict."""
        keys = self.credentials.keys("gate")
        for o in result.outputs:
            if o.kind == "verdict":
                o.payload.pop("sig", None)
                key = keys.get(o.payload["gate_id"])
                if key is not None:
                    o.payload["sig"] = sign(o.payload, key.get_secret_value())

    async def publish(self, result: BatchResult) -> None:
        self.sign_verdicts(result)
        k = self.settings.kafka
        # Each output is encoded once; MQTT, the alerts topic and the outputs topic (as a
        # trace line around it) all carry those bytes.
        encoded = [(o, _dumps(o.payload)) for o in result.outputs]
        mqtt_messages = [(o.topic, body, o.retain) for o, body in encoded]
        audits, writeoffs = self.verdict_records(result)
        for w, origin_site in writeoffs:  # the write-off goes back to the origin office
            notice = writeoff_notice(w, origin_site)
            mqtt_messages.append((WRITEOFFS.topic(origin_site), _dumps(notice), False))
        records: list[tuple[str, bytes | None, bytes]] = []
        for o, body in encoded:
            line = b'{"topic":' + _dumps(o.topic) + b',"payload":' + body + b"}"
            records.append((k.outputs_topic, o.payload.get("lock_id", "").encode(), line))
            if o.kind == "alert":
                records.append((k.alerts_topic, o.payload["declaration_id"].encode(), body))
        for d in result.dead_letters:
            records.append((k.deadletter_topic, None, _dumps(d.to_record())))
        records.extend(
            (
                k.writeoffs_topic,
                w["declaration_id"].encode(),
                json.dumps(w, ensure_ascii=False, sort_keys=True).encode(),
            )
            for w, _ in writeoffs
        )
        touched = list(result.touched.values())
        give_up = self.settings.kafka.output_give_up_s
        await asyncio.gather(
            retrying(
                f"{self.role}: MQTT publish",
                lambda: self.mqtt.publish_all(mqtt_messages),
                give_up_s=give_up,
            ),
            retrying(
                f"{self.role}: Redis write",
                lambda: self.redis.write(
                    touched, result.outputs, result.dead_letters, result.fixes, result.declarations
                ),
                give_up_s=give_up,
            ),
            retrying(
                f"{self.role}: Redis write-offs and audit",
                lambda: self.redis.write_verdict_records(audits, [w for w, _ in writeoffs]),
                give_up_s=give_up,
            ),
            retrying(
                f"{self.role}: Kafka outputs", lambda: self.kafka.send(records), give_up_s=give_up
            ),
        )

    def verdict_records(
        self, result: BatchResult
    ) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
        """The core's audit entries and write-offs (with their origin sites) of the batch,
        stamped with who processed them and the wall-clock time, to the second."""
        now = format_epoch(int(time.time()))
        audits, writeoffs = [], []
        for r in result.records:
            record = stamped(r.payload, self.role, now)
            if r.kind == "writeoff":
                assert r.origin_site is not None
                writeoffs.append((record, r.origin_site))
            else:
                audits.append(record)
        return audits, writeoffs


class KafkaWriter:
    """Writes the worker's Kafka records (outputs, alerts, dead letters, and the lock table's
    changes) in batched produce requests, on its own aiokafka producer.

    Faust's own producer must send one record per request on Tansu (see
    :mod:`smartlock.stream.faust_settings`), which capped a worker near a thousand messages a
    second.
    """

    def __init__(self, bootstrap: str, **login: Any) -> None:
        self.bootstrap, self.login = bootstrap, login  # login: SASL kwargs (kafka_auth)
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Created here: an aiokafka client binds to the running event loop.
        if self.producer is None:
            self.producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                linger_ms=1,
                max_batch_size=512 * 1024,
                **self.login,
            )
            await self.producer.start()

    async def send(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        """Sends (topic, key, value) records and waits until Kafka acknowledged every one."""
        assert self.producer is not None, "start() first"
        futures = [
            await self.producer.send(topic, key=key, value=value) for topic, key, value in records
        ]
        await asyncio.gather(*futures)


def create_app(
    settings: Settings, detector: Detector, name: str = "1", *, local: bool = True
) -> faust.App:
    """Builds the Faust app: inbound topic, ``locks`` table, the ``judge`` agent."""
    k = settings.kafka
    if local:
        shorten_fetch_wait()
    datadir = (settings.run_dir / f"worker-{name}").resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        k.app_id,
        **faust_app_kwargs(
            k.bootstrap,
            local=local,
            rebalance_timeout_s=k.rebalance_timeout_s,
            datadir=str(datadir),
            credentials=faust_credentials(settings, "worker"),
        ),
    )
    inbound = app.topic(
        k.inbound_topic,
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        partitions=k.partitions,
    )
    table = app.Table("locks", default=None, partitions=k.partitions, key_type=str)

    store = LockTable(table.data, table.changelog_topic.get_topic_name())
    kafka = KafkaWriter(k.bootstrap, **kafka_login(settings, "worker"))
    credentials = CredentialStore(settings.credentials_dir)
    processor = BatchProcessor(detector, store, stream_keys=credentials.stream_keys())
    outputs = Outputs(kafka, settings, name)
    app.smartlock_processor = processor  # type: ignore[attr-defined]  # for tests and the demo
    heartbeat = Heartbeat(outputs.redis.client, settings.redis.prefix, "worker", name)
    owned_partitions: list[int] = []

    @app.timer(interval=HEARTBEAT_S)
    async def _heartbeat() -> None:
        # For `smartlock stack status`: this worker is alive and owns these partitions.
        await heartbeat.beat(f"partitions {owned_partitions} of {k.inbound_topic}")

    @app.on_rebalance_complete.connect
    async def _recovered(sender: Any, **kwargs: Any) -> None:
        # Partitions may have moved: forget cached states, then re-arm the timers of the
        # locks whose partitions this worker now owns (their state came from the changelog).
        assigned = {
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == k.inbound_topic
        }
        owned = store.reassign(assigned)
        processor.reset()
        processor.engine.schedule_all(owned)
        owned_partitions[:] = sorted(assigned)
        await heartbeat.beat(f"partitions {owned_partitions} of {k.inbound_topic}", force=True)
        # One line for operators: this worker is ready and owns these partitions.
        print(
            f"worker {name} ready: partitions {sorted(assigned)} of {k.inbound_topic}, "
            f"{len(owned)} trips recovered",
            flush=True,
        )
        # Readiness for operators, tests and the demo: which partitions this worker owns.
        await outputs.redis.client.hset(
            RedisKeys(settings.redis.prefix).workers, name, json.dumps(sorted(assigned))
        )

    @app.agent(inbound)
    async def judge(stream: faust.StreamT) -> None:
        await outputs.start()
        stats = BatchStats(f"worker {name}")
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            stats.got(len(events))
            processor.stream_keys = credentials.stream_keys()  # re-read if rotated
            records = [
                Record(m.key, m.value, m.partition, m.headers or ())
                for m in (e.message for e in events)
            ]
            result = processor.process(records)
            changes = store.take_changes()
            stats.lap("judge")
            try:  # every output written, then the table: only then may the offsets be committed
                await outputs.publish(result)
                stats.lap("outputs")
                await retrying(
                    f"worker {name}: Kafka table changelog",
                    lambda changes=changes: store.write_changes(kafka.producer, changes),  # type: ignore[misc]
                    give_up_s=k.output_give_up_s,
                )
                stats.lap("changelog")
            except Outage as exc:
                exit_on_outage(f"worker {name}", exc)

    return app
