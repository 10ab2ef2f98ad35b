"""The live pipeline on real servers: MQTT -> bridge -> Kafka -> Faust worker -> MQTT, Kafka, Redis."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.mqtt import MqttClient, Received
from smartlock.contract.timestamps import format_ts, parse_utc
from smartlock.core.detector import Detector
from smartlock.core.evaluate import evaluate
from smartlock.core.geofence import Geofences
from smartlock.core.limits import DetectionSettings
from smartlock.core.writeoff import AUTOMATIC, WORKER_FIELDS
from tests.builders import Trip, merge
from tests.integration.procs import Pipeline
from tests.servers import Endpoint

pytestmark = pytest.mark.integration

CONTAINERS = ["CSQU3054383", "MSCU1234566", "TGHU9876542"]


# ----------------------------------------------------------------------------- helpers


def scenario_trace() -> list[tuple[str, dict[str, Any]]]:
    """A detour, a seal breach, a normal trip, an undeclared lock and matching and mismatching arrivals."""
    detour = (
        Trip("L1", "D1", container=CONTAINERS[0]).declare().event("sealed", at=(0, 0)).drive(0, 10)
    )
    for i, y in enumerate((600, 1200, 1800, 2400, 2400, 1800, 1200, 600, 100)):
        detour.fix(10 + 0.25 * (i + 1), y)
    detour.drive(12.75, 50).arrive()
    breach = (
        Trip("L2", "D2", container=CONTAINERS[1]).declare().event("sealed", at=(0, 0)).drive(0, 20)
    )
    breach.event("tamper", at=(20, 0)).drive(20.75, 50).arrive()
    normal = Trip("L3", "D3", container=CONTAINERS[2]).normal().arrive(plate="浙A99999")
    stray = Trip("L9", "none").fix(5).fix(6).fix(7)
    return merge(detour, breach, normal, stray)


def write_trace(messages: list[tuple[str, dict[str, Any]]], path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps({"topic": t, "payload": p}, ensure_ascii=False) + "\n" for t, p in messages
        )
    )
    return path


def evaluate_lines(
    trace: Path, geofence_dir: Path, keys: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    detector = Detector(DetectionSettings(), Geofences.load(geofence_dir), keys)
    out = io.StringIO()
    with open(trace, encoding="utf-8") as fh:
        evaluate(detector, fh, out, io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def alert_ids(lines: list[dict[str, Any]]) -> set[str]:
    return {x["payload"]["alert_id"] for x in lines if x["topic"].startswith("monitoring/alerts/")}


class Collector:
    """Subscribes to the pipeline's MQTT outputs and keeps them with their arrival time."""

    def __init__(self, mqtt: Endpoint) -> None:
        self.messages: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.client = MqttClient(
            mqtt.host, mqtt.port, f"collector-{time.monotonic_ns()}", login=mqtt.login("recorder")
        )
        self.client.subscribe(
            ["monitoring/alerts/+", "monitoring/status/+", "gates/+/verdicts"], self._on
        )
        self.client.connect()

    def _on(self, msg: Received) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), msg.topic, json.loads(msg.payload)))

    def of(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for _, t, p in self.messages if t.startswith(prefix)]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for pipeline outputs")

    def close(self) -> None:
        self.client.disconnect()


def publish(mqtt: Endpoint, messages: list[tuple[str, Any]], role: str = "replay") -> None:
    """Publishes as the test harness (the ``replay`` identity may publish every inbound topic)."""
    client = MqttClient(
        mqtt.host, mqtt.port, f"publisher-{time.monotonic_ns()}", login=mqtt.login(role)
    )
    client.connect()
    try:
        asyncio.run(
            client.publish_all(
                [
                    (
                        t,
                        p if isinstance(p, bytes) else json.dumps(p, ensure_ascii=False).encode(),
                        False,
                    )
                    for t, p in messages
                ]
            )
        )
    finally:
        client.disconnect()


def kafka_values(
    bootstrap: str, topic: str, expected: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    async def consume() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        values: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + timeout
            while len(values) < expected and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    values.extend(json.loads(r.value) for r in records)
            # Anything more than expected would be a duplicate: read a little longer.
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                values.extend(json.loads(r.value) for r in records)
        finally:
            await consumer.stop()
        return values

    return asyncio.run(consume())


@pytest.fixture
def pipeline(synthetic_pipeline: Pipeline) -> Pipeline:
    return synthetic_pipeline


@pytest.fixture
def collector(mqtt_server: Any) -> Iterator[Collector]:
    c = Collector(mqtt_server)
    yield c
    c.close()


def wait_verdicts(pipeline: Pipeline, n: int, timeout: float = 30.0) -> None:
    r = pipeline.redis()
    deadline = time.monotonic() + timeout
    while r.xlen(RedisKeys(pipeline.prefix).verdicts) < n:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"only {r.xlen(RedisKeys(pipeline.prefix).verdicts)} of {n} verdicts\n"
                f"{pipeline.log('bridge-1')}\n{pipeline.log('worker-1')}"
            )
        time.sleep(0.1)


# ----------------------------------------------------------------------------- tests


def test_trace_comes_out_on_mqtt_kafka_and_redis_as_evaluate_says(
    pipeline: Pipeline,
    collector: Collector,
    mqtt_server: Any,
    kafka_server: Any,
    tmp_path: Path,
    geofence_dir: Path,
) -> None:
    messages = scenario_trace()
    expected = evaluate_lines(write_trace(messages, tmp_path / "trace.jsonl"), geofence_dir)
    expected_ids = alert_ids(expected)
    assert {x["payload"]["type"] for x in expected if "alert_id" in x["payload"]} >= {
        "route_deviation",
        "seal_breach",
        "unknown_lock",
    }
    pipeline.start("worker")
    pipeline.start("bridge")
    pipeline.wait_worker_ready()
    publish(mqtt_server, messages)
    wait_verdicts(pipeline, 3)
    collector.wait_for(
        lambda: (
            len({a["alert_id"] for a in collector.of("monitoring/alerts/")}) >= len(expected_ids)
        )
    )

    got = collector.of("monitoring/alerts/")
    assert {a["alert_id"] for a in got} == expected_ids, [
        (a["type"], a["lock_id"], a["ts"]) for a in got if a["alert_id"] not in expected_ids
    ]
    assert {a["alert_id"] for a in pipeline.alerts_in_redis()} == expected_ids
    kafka = kafka_values(kafka_server.bootstrap, f"{pipeline.prefix}.alerts", len(expected_ids))
    assert sorted(a["alert_id"] for a in kafka) == sorted(expected_ids)
    expected_verdicts = [x["payload"] for x in expected if x["topic"].endswith("/verdicts")]
    assert sorted(collector.of("gates/"), key=lambda v: v["lock_id"]) == sorted(
        expected_verdicts, key=lambda v: v["lock_id"]
    )
    trip = pipeline.redis().hgetall(RedisKeys(pipeline.prefix).trip("L1"))
    assert (trip["declaration_id"], trip["colour"], trip["verdict"]) == ("D1", "red", "inspect")
    assert pipeline.redis().geopos(RedisKeys(pipeline.prefix).positions, "L3")[0] is not None


def test_gate_gets_its_verdict_within_one_second(
    pipeline: Pipeline,
    collector: Collector,
    mqtt_server: Any,
) -> None:
    trip = Trip("L5", "D5", container=CONTAINERS[0]).normal()
    pipeline.start("worker")
    pipeline.start("bridge")
    pipeline.wait_worker_ready()
    publish(mqtt_server, trip.messages)
    collector.wait_for(
        lambda: any(s["state"] == "arrived" for s in collector.of("monitoring/status/"))
    )
    latencies = []
    for n in range(5):
        arrival = Trip("L5", "D5", container=CONTAINERS[0], t=trip.t).arrive(
            dt=60 * (n + 1), plate=f"浙A0000{n}"
        )
        sent = time.monotonic()
        publish(mqtt_server, arrival.messages)
        collector.wait_for(lambda n=n: len(collector.of("gates/")) > n, timeout=5)
        latencies.append(
            next(t for t, topic, p in reversed(collector.messages) if topic.startswith("gates/"))
            - sent
        )
    print("gate verdict latencies", [round(x, 3) for x in latencies])
    assert max(latencies) < 1.0, latencies
    assert all(v["verdict"] == "inspect" for v in collector.of("gates/"))  # plates did not match


def test_bridge_killed_mid_stream_loses_nothing(
    pipeline: Pipeline,
    mqtt_server: Any,
    tmp_path: Path,
    geofence_dir: Path,
) -> None:
    trips = [
        Trip(f"L{i}", f"D{i}", container=CONTAINERS[i % 3]).normal().arrive() for i in range(30)
    ]
    messages = merge(*trips)
    pipeline.start("worker")
    pipeline.start("bridge")
    pipeline.wait_worker_ready()
    half = len(messages) // 2
    publisher = threading.Thread(target=publish, args=(mqtt_server, messages[:half]))
    publisher.start()
    time.sleep(0.05)
    pipeline.stop(
        "bridge-1", signal.SIGKILL
    )  # killed mid-stream, unacknowledged messages in flight
    publisher.join()
    publish(mqtt_server, messages[half:])  # published while no bridge runs
    pipeline.start("bridge")  # same name: resumes the persistent session
    wait_verdicts(pipeline, 30, timeout=60)
    r = pipeline.redis()
    for trip in trips:
        state = r.hgetall(RedisKeys(pipeline.prefix).trip(trip.lock_id))
        assert state["last_ts"] == trip.messages[-2][1]["ts"], (
            trip.lock_id
        )  # last telemetry reached the worker
        assert state["verdict"] == "release", (trip.lock_id, state["verdict_reasons"])
    reasons = {d["reason"] for d in pipeline.dead_letters_in_redis()}
    assert reasons <= {"duplicate"}  # redelivered copies, recognised as such


def test_worker_killed_and_restarted_recovers_trips_without_losing_or_repeating_alerts(
    pipeline: Pipeline,
    mqtt_server: Any,
    kafka_server: Any,
    tmp_path: Path,
    geofence_dir: Path,
) -> None:
    messages = scenario_trace()
    expected_ids = alert_ids(
        evaluate_lines(write_trace(messages, tmp_path / "t.jsonl"), geofence_dir)
    )
    cut = next(
        i for i, (t, p) in enumerate(messages) if t == "locks/L2/events" and p["type"] == "tamper"
    )
    pipeline.start("worker")
    pipeline.start("bridge")
    pipeline.wait_worker_ready()
    publish(mqtt_server, messages[:cut])
    r = pipeline.redis()
    deadline = time.monotonic() + 30
    last_l2 = next(p["ts"] for t, p in reversed(messages[:cut]) if t.startswith("locks/L2/"))
    while r.hget(RedisKeys(pipeline.prefix).trip("L2"), "last_ts") != last_l2:
        assert time.monotonic() < deadline, pipeline.log("worker-1")
        time.sleep(0.1)
    time.sleep(1.0)  # let the worker commit its offsets and changelog
    pipeline.stop("worker-1", signal.SIGKILL)
    r.hdel(RedisKeys(pipeline.prefix).workers, "1")
    publish(mqtt_server, messages[cut:])
    pipeline.start("worker")
    pipeline.wait_worker_ready()
    wait_verdicts(pipeline, 3)
    time.sleep(1.0)
    # The trip of L2 was recovered: its breach is judged against the seal recorded before the kill.
    assert r.hget(RedisKeys(pipeline.prefix).trip("L2"), "verdict") == "inspect"
    assert {a["alert_id"] for a in pipeline.alerts_in_redis()} == expected_ids
    kafka = kafka_values(kafka_server.bootstrap, f"{pipeline.prefix}.alerts", len(expected_ids))
    assert sorted(a["alert_id"] for a in kafka) == sorted(expected_ids)  # none lost, none twice


def test_malformed_and_unsigned_messages_are_dead_lettered_and_the_pipeline_goes_on(
    pipeline: Pipeline,
    mqtt_server: Any,
    kafka_server: Any,
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"L1": "secret-1"}))
    pipeline.extra_env["SMARTLOCK_SIGNING__KEYS_FILE"] = str(keys)
    good = Trip("L1", "D1", container=CONTAINERS[0], key="secret-1").normal().arrive()
    unsigned = Trip("L1", "D1", container=CONTAINERS[0], seq=500, t=good.t).fix(50)
    forged = Trip("L1", "D1", container=CONTAINERS[0], seq=501, t=good.t, key="guess").fix(
        50, seal="tampered"
    )
    bad = [
        ("locks/L1/telemetry", b"{not json"),
        (
            "locks/L1/telemetry",
            {"lock_id": "L1", "seq": 1, "ts": "yesterday", "lat": 0, "lon": 0, "seal": "sealed"},
        ),
        (
            "locks/L2/telemetry",
            {
                "lock_id": "L1",
                "seq": 1,
                "ts": "2026-11-22T08:00:00Z",
                "lat": 0,
                "lon": 0,
                "seal": "sealed",
            },
        ),
    ]
    pipeline.start("worker")
    pipeline.start("bridge")
    pipeline.wait_worker_ready()
    publish(
        mqtt_server,
        bad + unsigned.messages + forged.messages + good.messages,
    )
    wait_verdicts(pipeline, 1)
    dead = kafka_values(kafka_server.bootstrap, f"{pipeline.prefix}.deadletter", 5)
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == [
        "bad_signature",
        "invalid_json",
        "invalid_payload",
        "missing_signature",
        "topic_mismatch",
    ]
    first = next(d for d in dead if d["reason"] == "invalid_json")
    assert (
        first["original_text"] == "{not json"
        and first["topic"] == "locks/L1/telemetry"
        and first["received_at"]
    )
    assert (
        pipeline.redis().hget(RedisKeys(pipeline.prefix).trip("L1"), "verdict") == "release"
    )  # forged tamper changed nothing


def test_two_workers_share_the_partitions(
    pipeline: Pipeline,
    collector: Collector,
    mqtt_server: Any,
    tmp_path: Path,
    geofence_dir: Path,
) -> None:
    trips = [
        Trip(f"L{i}", f"D{i}", container=CONTAINERS[i % 3]).normal().arrive() for i in range(11)
    ]
    breach = (
        Trip("L11", "D11", container=CONTAINERS[0])
        .declare()
        .event("sealed", at=(0, 0))
        .drive(0, 10)
    )
    trips.append(breach.fix(10.5, seal="tampered").drive(11, 50).arrive())
    messages = merge(*trips)
    expected_ids = alert_ids(
        evaluate_lines(write_trace(messages, tmp_path / "t.jsonl"), geofence_dir)
    )
    pipeline.start("worker", "1")
    pipeline.start("worker", "2")
    pipeline.start("bridge")
    pipeline.wait_worker_ready("1")
    pipeline.wait_worker_ready("2")
    deadline = time.monotonic() + 30
    while True:  # both joined the same group: the partitions are split between them
        first = json.loads(pipeline.redis().hget(RedisKeys(pipeline.prefix).workers, "1"))
        second = json.loads(pipeline.redis().hget(RedisKeys(pipeline.prefix).workers, "2"))
        if first and second and sorted(first + second) == [0, 1, 2, 3]:
            break
        assert time.monotonic() < deadline, (first, second)
        time.sleep(0.2)
    publish(mqtt_server, messages)
    wait_verdicts(pipeline, 12)
    assert expected_ids and {a["alert_id"] for a in pipeline.alerts_in_redis()} == expected_ids
    verdicts = {v["lock_id"]: v["verdict"] for v in collector.of("gates/")}
    assert verdicts == {t.lock_id: ("inspect" if t.lock_id == "L11" else "release") for t in trips}


def test_the_worker_persists_the_audit_entries_and_write_offs_evaluate_records_gives(
    pipeline: Pipeline,
    mqtt_server: Any,
    kafka_server: Any,
    tmp_path: Path,
    geofence_dir: Path,
) -> None:
    released = Trip("L4", "D4", container=CONTAINERS[0]).normal().arrive()
    inspected = Trip("L3", "D3", container=CONTAINERS[2]).normal().arrive(plate="浙A99999")
    undeclared = Trip("L9", "none", t=released.t).arrive()
    refused = (  # no plate: refused, answered inspect, audited as an undeclared consignment
        "gates/test-gate/arrivals",
        {"gate_id": "test-gate", "ts": format_ts(released.t), "lock_id": "L8"},
    )
    messages = [*merge(released, inspected, undeclared), refused]
    out = io.StringIO()
    with open(write_trace(messages, tmp_path / "trace.jsonl"), encoding="utf-8") as fh:
        detector = Detector(DetectionSettings(), Geofences.load(geofence_dir))
        evaluate(detector, fh, out, io.StringIO(), records=True)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = {
        kind: sorted(
            json.dumps(x["payload"], sort_keys=True) for x in lines if x.get("record") == kind
        )
        for kind in ("audit", "writeoff")
    }
    assert (len(expected["audit"]), len(expected["writeoff"])) == (4, 1)

    pipeline.start("worker")
    pipeline.start("bridge")
    pipeline.wait_worker_ready()
    publish(mqtt_server, messages)
    wait_verdicts(pipeline, 4)
    keys, r = RedisKeys(pipeline.prefix), pipeline.redis()

    def persisted() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        audits = [
            json.loads(f["json"])
            for decl in ("D3", "D4", "undeclared")
            for _, f in r.xrange(keys.audit(decl))
        ]
        return audits, [json.loads(v) for v in r.hgetall(keys.writeoff("D4")).values()]

    deadline = time.monotonic() + 20
    while len(persisted()[0]) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    audits, writeoffs = persisted()
    on_kafka = kafka_values(kafka_server.bootstrap, f"{pipeline.prefix}.writeoffs", expected=1)

    def core_part(records: list[dict[str, Any]]) -> list[str]:
        for record in records:  # what the worker adds: who processed it, and when
            assert record["decided_by"] == f"{AUTOMATIC} (worker 1)"
            assert parse_utc(record["processed_at"])
        return sorted(
            json.dumps({k: v for k, v in x.items() if k not in WORKER_FIELDS}, sort_keys=True)
            for x in records
        )

    assert core_part(audits) == expected["audit"]
    assert core_part(writeoffs) == expected["writeoff"]
    assert core_part(on_kafka) == expected["writeoff"]
