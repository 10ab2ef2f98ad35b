"""The local stack is durable by default: kill -9 of every server loses nothing acknowledged.

Tansu keeps topics and committed offsets in S3 on SeaweedFS, Redis appends every write to
its AOF before answering, and Mosquitto saves its database after every change.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.redis_auth import connect
from smartlock.local import stack
from tests.integration.test_stack import MqttProbe
from tests.servers import Endpoint

pytestmark = pytest.mark.integration

RECORDS = 300
MESSAGES = 300


async def _produce(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, f"r{i}".encode(), key=b"k") for i in range(RECORDS)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id="g", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:  # a consumer group commits half of them
        await consumer.getmany(timeout_ms=2000, max_records=RECORDS // 2)
        await consumer.commit({TopicPartition(topic, 0): RECORDS // 2})
    finally:
        await consumer.stop()


async def _consume(bootstrap: str, topic: str) -> tuple[list[bytes], int | None]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(50):
            batch = await consumer.getmany(timeout_ms=500)
            values += [m.value for records in batch.values() for m in records if m.value]
            if len(values) >= RECORDS:
                break
    finally:
        await consumer.stop()
    group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="g")
    await group.start()
    try:
        committed = await group.committed(TopicPartition(topic, 0))
    finally:
        await group.stop()
    return values, committed


def test_kill_minus_nine_of_the_whole_stack_loses_nothing_acknowledged(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    ports = stack.Ports(*stack.free_ports(3))
    info = stack.start_stack(run_dir, ports)
    try:
        mqtt = Endpoint("mqtt", info.host, info.mqtt_port, credentials_dir=run_dir / "credentials")
        asyncio.run(_produce(info.kafka_bootstrap, "durable"))
        r = connect(info.redis_url, CredentialStore(run_dir / "credentials").get("admin"))
        for i in range(100):
            r.incr("reference-counter")
            r.xadd("audit", {"i": str(i)})
        with MqttProbe(mqtt, "durable-sub", "recorder", persistent=True) as sub:
            sub.subscribe("locks/+/telemetry")
        with MqttProbe(mqtt, "durable-pub", "replay") as pub:
            infos = [
                pub.client.publish("locks/L1/telemetry", str(i).encode(), qos=1)
                for i in range(MESSAGES)
            ]
            for message in infos:
                message.wait_for_publish(10)
            assert all(m.is_published() for m in infos)
        # Mosquitto saves its database once a second (when a whole second has passed since the
        # last save, counted in whole seconds): what it acknowledged in its last two seconds is
        # the bound (README "Durability and faults"); past it, nothing acknowledged may be lost.
        time.sleep(3.0)
        for server in info.servers.values():  # no clean shutdown: nothing gets saved on the way out
            os.kill(server.pid, signal.SIGKILL)
        stack.stop_stack(run_dir)  # reaps them
        info = stack.start_stack(run_dir, ports)
        values, committed = asyncio.run(_consume(info.kafka_bootstrap, "durable"))
        assert sorted(values) == sorted(f"r{i}".encode() for i in range(RECORDS))
        assert committed == RECORDS // 2
        r = connect(info.redis_url, CredentialStore(run_dir / "credentials").get("admin"))
        assert r.get("reference-counter") == "100"  # a new reference number continues from 101
        assert r.xlen("audit") == 100
        with MqttProbe(mqtt, "durable-sub", "recorder", persistent=True) as sub:
            deadline = time.monotonic() + 30
            while len(sub.received) < MESSAGES and time.monotonic() < deadline:
                time.sleep(0.05)
            got = sorted({int(p) for p in sub.received})
        missing = sorted(set(range(MESSAGES)) - set(got))
        assert not missing, f"{len(missing)} acknowledged messages lost: {missing[:20]}"
    finally:
        stack.stop_stack(run_dir)
