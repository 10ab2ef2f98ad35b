"""Issue 11 part A on real servers: hostile input stops nothing and invents nothing; gates
get ``inspect`` for arrivals that cannot be read; live replay at any speed equals evaluate.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from smartlock.adapters.keys import RedisKeys
from smartlock.core.evaluate import evaluate
from smartlock.runtime import build_detector
from smartlock.settings import load_settings
from tests.builders import Trip
from tests.integration.procs import Pipeline
from tests.integration.test_pipeline_live import (
    CONTAINERS,
    Collector,
    evaluate_lines,
    kafka_values,
    publish,
    write_trace,
)
from tests.integration.test_record_replay import replay
from tests.servers import Endpoint

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "smartlock" / "simulators" / "traces" / "scenarios.jsonl"


@pytest.fixture
def live(synthetic_pipeline: Pipeline) -> Pipeline:
    return synthetic_pipeline


def wait_until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_hostile_messages_stop_nothing_and_move_no_clock(
    live: Pipeline, mqtt_server: Any, kafka_server: Any, tmp_path: Path, geofence_dir: Path
) -> None:
    keys = {"L1": "secret-1", "L2": "secret-2"}
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    live.extra_env["SMARTLOCK_SIGNING__KEYS_FILE"] = str(tmp_path / "keys.json")
    one = Trip("L1", "D1", container=CONTAINERS[0], key="secret-1").normal().arrive()
    two = Trip("L2", "D2", container=CONTAINERS[1], key="secret-2").normal().arrive()
    fix = dict(one.messages[5][1])
    hostile: list[tuple[str, Any]] = [
        ("locks/A/telemetry", ("[" * 1000 + "]" * 1000).encode()),
        # Over the 64 KiB contract limit, under the broker's own 256 KiB message limit (a
        # larger one never reaches the bridge: test_security's oversized-message test).
        ("locks/A/telemetry", b'{"lock_id":"A","pad":"' + b"x" * (200 * 1024) + b'"}'),
        ("locks/L1/telemetry", (json.dumps(fix)[:-1] + ',"seq":1}').encode()),
        ("locks/L1/telemetry", fix | {"lat": "29.3"}),
        ("locks/L1/telemetry", fix | {"seq": 2**70}),
        ("locks/L1/telemetry", fix | {"seq": 900, "ts": "2099-01-01T00:00:00Z", "sig": None}),
    ]
    messages = [*one.messages[:6], *hostile, *one.messages[6:], *two.messages]
    expected = evaluate_lines(
        write_trace(one.messages + two.messages, tmp_path / "t.jsonl"), geofence_dir, keys
    )
    live.start("worker")
    live.start("bridge")
    live.wait_worker_ready()
    publish(mqtt_server, messages)
    r = live.redis()
    wait_until(lambda: r.xlen(RedisKeys(live.prefix).verdicts) >= 2, "the two verdicts")
    assert live.procs["bridge-1"].poll() is None, live.log("bridge-1")
    dead = kafka_values(kafka_server.bootstrap, f"{live.prefix}.deadletter", len(hostile))
    assert sorted(d["reason"] for d in dead) == sorted(
        [
            "too_deep",
            "too_large",
            "duplicate_key",
            "invalid_payload",
            "invalid_payload",
            "future_ts",
        ]
    )
    big = next(d for d in dead if d["reason"] == "too_large")
    assert big["original_size"] > 200 * 1024 and big["original_truncated"] is True
    # The forged 2099 message moved no clock: no signal_lost or overdue anywhere.
    got = sorted(live.alerts_in_redis(), key=lambda a: a["alert_id"])
    want = sorted(
        (x["payload"] for x in expected if "alert_id" in x["payload"]), key=lambda a: a["alert_id"]
    )
    assert got == want
    verdicts = {
        json.loads(f["json"])["lock_id"]: json.loads(f["json"])["verdict"]
        for _, f in r.xrange(RedisKeys(live.prefix).verdicts)
    }
    assert verdicts == {"L1": "release", "L2": "release"}
    # Every hostile message was acknowledged: a restarted bridge gets none of them again.
    live.stop("bridge-1")
    live.start("bridge")
    time.sleep(3)
    assert live.procs["bridge-1"].poll() is None, live.log("bridge-1")
    again = kafka_values(kafka_server.bootstrap, f"{live.prefix}.deadletter", len(hostile) + 1, 5)
    assert len(again) == len(hostile)


def test_arrivals_that_cannot_be_read_get_inspect_within_one_second(
    live: Pipeline, mqtt_server: Any
) -> None:
    collector = Collector(mqtt_server)
    try:
        live.start("worker")
        live.start("bridge")
        live.wait_worker_ready()
        arrivals: list[tuple[str, Any]] = [
            ("gates/G7/arrivals", b"{not json"),
            (
                "gates/G7/arrivals",
                {
                    "gate_id": "G7",
                    "ts": "2026-11-22T09:00:00Z",
                    "lock_id": "L1",
                    "container_no": CONTAINERS[0],
                },
            ),
            (
                "gates/G7/arrivals",
                {
                    "gate_id": "G8",
                    "ts": "2026-11-22T09:00:00Z",
                    "vehicle_plate": "浙G12345",
                    "lock_id": "L1",
                    "container_no": CONTAINERS[0],
                },
            ),
        ]
        latencies = []
        for n, message in enumerate(arrivals):
            sent = time.monotonic()
            publish(mqtt_server, [message])
            collector.wait_for(lambda n=n: len(collector.of("gates/G7/verdicts")) > n, timeout=5)
            latencies.append(collector.messages[-1][0] - sent)
        verdicts = collector.of("gates/G7/verdicts")
        assert [v["verdict"] for v in verdicts] == ["inspect"] * 3
        reasons = [v["reasons"][0] for v in verdicts]
        assert "invalid_json" in reasons[0]
        assert "vehicle_plate" in reasons[1] and verdicts[1]["lock_id"] == "L1"
        assert "topic_mismatch" in reasons[2]
        print("inspect latencies", [round(x, 3) for x in latencies])
        assert max(latencies) < 1.0, latencies
    finally:
        collector.close()


@pytest.mark.parametrize("speed", ["max", "3600"])
def test_replay_with_store_and_forward_bursts_equals_evaluate(
    mqtt_server: Endpoint,
    redis_server: Endpoint,
    kafka_server: Endpoint,
    tmp_path: Path,
    speed: str,
) -> None:
    tag = uuid.uuid4().hex[:6]
    trace = tmp_path / "scenarios.jsonl"
    text = SCENARIOS.read_text(encoding="utf-8")
    trace.write_text(text.replace("SL-", f"SL{tag}-").replace("DCL-", f"DCL{tag}-"))
    out = io.StringIO()
    with open(trace, encoding="utf-8") as fh:
        evaluate(build_detector(load_settings()), fh, out, io.StringIO())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = sorted(
        (x["payload"] for x in lines if x["topic"].startswith("monitoring/alerts/")),
        key=lambda a: a["alert_id"],
    )
    assert "signal_lost" in {a["type"] for a in expected}  # the trace has a silence and a burst
    pipeline = Pipeline.on(mqtt_server, kafka_server.bootstrap, redis_server.url, tmp_path)
    try:
        pipeline.start("worker")
        pipeline.start("bridge")
        pipeline.wait_worker_ready()
        result = replay(mqtt_server, trace, speed, timeout=300)
        assert result.returncode == 0, result.stderr
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(got) < len(expected):
            time.sleep(0.3)
            got = pipeline.alerts_in_redis()
        time.sleep(2)  # anything more would be an extra alert
        got = sorted(pipeline.alerts_in_redis(), key=lambda a: a["alert_id"])
    finally:
        pipeline.stop_all()
    assert got == expected, (
        [(a["type"], a["lock_id"], a["ts"]) for a in got if a not in expected],
        [(a["type"], a["lock_id"], a["ts"]) for a in expected if a not in got],
    )


@pytest.mark.timeout(600)  # a guard for a loaded machine, not a speed target
def test_a_fleet_with_many_store_and_forward_bursts_on_two_workers_equals_evaluate(
    mqtt_server: Endpoint, redis_server: Endpoint, kafka_server: Endpoint, tmp_path: Path
) -> None:
    # 24 trucks, 12 of them out of coverage for 15 minutes and uploading the stored fixes in
    # a burst, replayed as fast as the broker takes them over 4 partitions and 2 workers.
    trace = tmp_path / "fleet.jsonl"
    simulate = cli_run(
        "simulate",
        "--trucks",
        "24",
        "--scenario",
        "signal_loss:50%",
        "--seed",
        "7",
        "--spread",
        "30",
        "--trace",
        str(trace),
    )
    assert simulate.returncode == 0, simulate.stderr
    tag = uuid.uuid4().hex[:6]
    trace.write_text(
        trace.read_text(encoding="utf-8").replace("SL-", f"SL{tag}-").replace("DCL-", f"DCL{tag}-")
    )
    out = io.StringIO()
    with open(trace, encoding="utf-8") as fh:
        evaluate(build_detector(load_settings()), fh, out, io.StringIO())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = sorted(
        (x["payload"] for x in lines if x["topic"].startswith("monitoring/alerts/")),
        key=lambda a: a["alert_id"],
    )
    assert sum(a["type"] == "signal_lost" for a in expected) == 12  # one per silence
    pipeline = Pipeline.on(mqtt_server, kafka_server.bootstrap, redis_server.url, tmp_path)
    try:
        pipeline.start("worker", "1")
        pipeline.start("worker", "2")
        pipeline.start("bridge")
        pipeline.wait_worker_ready("1")
        pipeline.wait_worker_ready("2")
        r = pipeline.redis()
        wait_until(
            lambda: (
                sorted(
                    json.loads(r.hget(RedisKeys(pipeline.prefix).workers, "1") or "[]")
                    + json.loads(r.hget(RedisKeys(pipeline.prefix).workers, "2") or "[]")
                )
                == [0, 1, 2, 3]
            ),
            "the two workers to split the partitions",
        )
        result = replay(mqtt_server, trace, "max", timeout=300)
        assert result.returncode == 0, result.stderr
        wait_until(lambda: len(pipeline.alerts_in_redis()) >= len(expected), "the alerts", 120)
        time.sleep(2)  # anything more would be an extra alert
        got = sorted(pipeline.alerts_in_redis(), key=lambda a: a["alert_id"])
    finally:
        pipeline.stop_all()
    assert got == expected, (
        [(a["type"], a["lock_id"], a["ts"]) for a in got if a not in expected],
        [(a["type"], a["lock_id"], a["ts"]) for a in expected if a not in got],
    )


def cli_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smartlock.cli.main", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
