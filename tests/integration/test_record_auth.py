"""Issue 10 on real servers: records written straight to the inbound Kafka topic without the
stream key (the local broker has no authentication) fire no timer and change no trip; they
are dead-lettered (``unauthenticated_record``), and genuine traffic goes on as evaluate says.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from smartlock.adapters.keys import RedisKeys
from smartlock.stream.inbound import MAC, UNAUTHENTICATED, number_header
from tests.builders import Trip
from tests.integration.procs import Pipeline
from tests.integration.test_limits_live import wait_until
from tests.integration.test_pipeline_live import (
    CONTAINERS,
    evaluate_lines,
    kafka_values,
    publish,
    write_trace,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def live(synthetic_pipeline: Pipeline) -> Pipeline:
    return synthetic_pipeline


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> int:
    """Writes records as anyone on the host can (no SASL, no stream key); ``partition``
    "all" writes the record to every partition, like a bridge's tick. Returns how many."""

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        sent = 0
        try:
            partitions = sorted(await producer.partitions_for(topic))
            for record in records:
                spread = record.pop("partition", None) == "all"
                for p in partitions if spread else [None]:
                    await (await producer.send(topic, partition=p, **record))
                    sent += 1
        finally:
            await producer.stop()
        return sent

    return asyncio.run(run())


def test_forged_ticks_and_lock_records_fire_no_timer_and_change_no_trip(
    live: Pipeline, mqtt_server: Any, kafka_server: Any, tmp_path: Path, geofence_dir: Path
) -> None:
    trip = Trip("L1", "D1", container=CONTAINERS[0]).declare(eta_h=1)
    trip.event("sealed", at=(0, 0)).drive(0, 10)
    first = len(trip.messages)
    trip.drive(10, 50).arrive()
    expected = evaluate_lines(write_trace(trip.messages, tmp_path / "t.jsonl"), geofence_dir)
    live.start("worker")
    live.start("bridge")
    live.wait_worker_ready()
    publish(mqtt_server, trip.messages[:first])
    r = live.redis()
    wait_until(lambda: r.exists(RedisKeys(live.prefix).trip("L1")), "the trip in Redis")

    # A day ahead of the trip: accepted, it would fire signal_lost and overdue at once.
    later = trip.t.timestamp() + 86400
    session = f"{live.prefix}-bridges"  # the name the genuine bridge stamps
    tick = json.dumps({"tick": later, "bridge": session, "at": time.time()}).encode()
    tamper = Trip("L1", "D1", container=CONTAINERS[0], seq=900, t=trip.t)
    tamper.event("tamper", at=(10, 0))
    headers = [
        ("topic", b"locks/L1/events"),
        ("clock", number_header(later)),
        ("bridge", session.encode()),
        ("received_at", number_header(time.time())),
    ]
    lock_value = json.dumps(tamper.messages[0][1]).encode()
    wrong = [(MAC, b"\x00" * 32)]
    forged = produce(
        kafka_server.bootstrap,
        f"{live.prefix}.inbound",
        [
            {"value": tick, "partition": "all"},  # a tick without a MAC
            {"value": tick, "headers": wrong, "partition": "all"},  # one with a wrong MAC
            {"key": b"L1", "value": lock_value, "headers": headers},  # valid lock JSON, no MAC
            {"key": b"L1", "value": lock_value, "headers": headers + wrong},
        ],
    )
    dead = kafka_values(kafka_server.bootstrap, f"{live.prefix}.deadletter", forged)
    assert [d["reason"] for d in dead] == [UNAUTHENTICATED] * forged
    assert sum(d["topic"] == "locks/L1/events" for d in dead) == 2
    assert {d["source"] for d in dead} == {"worker"}

    publish(mqtt_server, trip.messages[first:])
    wait_until(lambda: r.xlen(RedisKeys(live.prefix).verdicts) >= 1, "the verdict")
    # No signal_lost, no overdue, no tamper: exactly what evaluate says of the genuine trace.
    want = [x["payload"] for x in expected if "alert_id" in x["payload"]]
    assert live.alerts_in_redis() == want
    [verdict] = [json.loads(f["json"]) for _, f in r.xrange(RedisKeys(live.prefix).verdicts)]
    assert (verdict["lock_id"], verdict["verdict"]) == ("L1", "release")
    assert live.procs["worker-1"].poll() is None, live.log("worker-1")
