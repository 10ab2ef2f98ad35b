"""The local servers start, answer real requests and stop without leaving processes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import redis

from smartlock.errors import InfrastructureError
from smartlock.local import stack
from tests.servers import Endpoint

BACKLOG = 5_000


class MqttProbe:
    """A paho MQTT 5 client for tests: connects, subscribes, collects messages."""

    def __init__(
        self, server: Endpoint, client_id: str, role: str, *, persistent: bool = False
    ) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        login = server.login(role)  # the broker admits no anonymous client
        self.client.username_pw_set(login.username, login.password.get_secret_value())
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.server = server
        self.persistent = persistent
        self.received: list[bytes] = []
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.client.on_message = lambda c, u, msg: self.received.append(msg.payload)

    def __enter__(self) -> MqttProbe:
        props = None
        if self.persistent:
            # Keep the session (and its queued messages) for an hour after a disconnect.
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect(
            self.server.host, self.server.port, clean_start=not self.persistent, properties=props
        )
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK from the MQTT broker"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda c, u, mid, codes, p: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(10), "no SUBACK"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


@pytest.mark.integration
def test_mqtt_qos1_round_trip(mqtt_server: Endpoint, unique: str) -> None:
    topic = f"locks/{unique}/telemetry"
    with (
        MqttProbe(mqtt_server, f"sub-{unique}", "recorder") as sub,
        MqttProbe(mqtt_server, f"pub-{unique}", "replay") as pub,
    ):
        sub.subscribe(topic)
        pub.client.publish(topic, b'{"hello": 1}', qos=1).wait_for_publish(10)
        wait_for(lambda: sub.received == [b'{"hello": 1}'], 10, "the QoS 1 message")


@pytest.mark.integration
def test_redis_answers_a_service_account_and_refuses_anonymous_clients(
    redis_server: Endpoint, unique: str
) -> None:
    anonymous = redis.Redis(host=redis_server.host, port=redis_server.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    client = redis_server.client("admin")
    try:
        assert client.ping()
        client.set(f"test:{unique}", "1")
        assert client.get(f"test:{unique}") == "1"
    finally:
        client.close()


@pytest.mark.integration
def test_kafka_produce_consume(kafka_server: Endpoint, unique: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"test-{unique}"

    async def round_trip() -> list[bytes]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"record-1", key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_server.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            batch = await consumer.getmany(timeout_ms=10_000)
        finally:
            await consumer.stop()
        return [m.value for messages in batch.values() for m in messages]

    assert asyncio.run(round_trip()) == [b"record-1"]


@pytest.mark.integration
def test_mosquitto_keeps_qos1_backlog_of_offline_subscriber(
    mqtt_server: Endpoint, unique: str
) -> None:
    """Mosquitto's default max_queued_messages (1000) would drop most of this backlog."""
    topic = f"locks/{unique}/telemetry"
    client_id = f"slow-{unique}"
    with MqttProbe(mqtt_server, client_id, "recorder", persistent=True) as sub:
        sub.subscribe(topic)
    # The subscriber is offline now; its session keeps the subscription.
    with MqttProbe(mqtt_server, f"pub-{unique}", "replay") as pub:
        infos = [pub.client.publish(topic, str(i).encode(), qos=1) for i in range(BACKLOG)]
        for info in infos:
            info.wait_for_publish(30)
    with MqttProbe(mqtt_server, client_id, "recorder", persistent=True) as sub:
        wait_for(lambda: len(sub.received) >= BACKLOG, 60, f"{BACKLOG} queued messages")
        time.sleep(0.2)  # a dropped-then-duplicated message would show up as extra here
        got = sorted(int(p) for p in sub.received)
    assert got == list(range(BACKLOG))


@pytest.mark.integration
def test_stack_starts_answers_and_stops_without_leftovers(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    ports = stack.Ports(*stack.free_ports(3))
    started = time.monotonic()
    info = stack.start_stack(run_dir, ports)
    try:
        startup_s = time.monotonic() - started
        assert startup_s < 20, f"stack took {startup_s:.1f} s to start"
        statuses = {s.name: s for s in stack.stack_status(run_dir)}
        assert all(s.running and s.healthy for s in statuses.values()), statuses
        assert {n: s.port for n, s in statuses.items() if n != "seaweedfs"} == {
            "mosquitto": ports.mqtt,
            "redis": ports.redis,
            "tansu": ports.kafka,
        }
        assert statuses["seaweedfs"].healthy  # the durable storage under Tansu
        assert info.kafka_bootstrap == f"127.0.0.1:{ports.kafka}"
        # Starting again adopts the running servers instead of failing on busy ports.
        assert stack.start_stack(run_dir, ports).servers == info.servers
        pids = [s.pid for s in info.servers.values()]
    finally:
        stopped = stack.stop_stack(run_dir)
    assert stopped == ["mosquitto", "redis", "seaweedfs", "tansu"]
    # The servers were children of this process: stopping also reaped them (no zombies).
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    assert not any(
        stack.port_in_use("127.0.0.1", p) for p in (ports.mqtt, ports.redis, ports.kafka)
    )
    assert not any(s.running for s in stack.stack_status(run_dir))
    assert list(run_dir.glob("*.pid")) == []


@pytest.mark.integration
def test_stack_refuses_a_busy_port_and_leaves_nothing_running(tmp_path: Path) -> None:
    ports = stack.Ports(*stack.free_ports(3))
    blocker = stack.start_servers(
        tmp_path / "blocker", [stack.redis_server(tmp_path / "blocker", ports.redis)]
    )
    try:
        with pytest.raises(InfrastructureError, match=f"port {ports.redis}.*--redis-port"):
            stack.start_stack(tmp_path / "run", ports)
        assert not stack.port_in_use("127.0.0.1", ports.mqtt), "mosquitto was left running"
    finally:
        stack.stop_servers(blocker.run_dir)


def test_missing_binary_names_the_install_command() -> None:
    with pytest.raises(InfrastructureError, match="apt-get install -y mosquitto redis-server"):
        stack.find_binary("smartlock-no-such-server", stack.model.APT_HINT, extra_dirs=())
