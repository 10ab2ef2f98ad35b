"""`smartlock record` and `smartlock replay` against a real Mosquitto.

Each test publishes under its own lock ids or topic prefix, so what another test publishes
on the shared broker cannot show up in its recording.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from smartlock.adapters.mqtt import MqttClient, Received
from tests.builders import telemetry_trace
from tests.integration.procs import Pipeline
from tests.servers import Endpoint

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "acceptance.jsonl"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "smartlock.cli.main", *args]


def server_args(server: Endpoint) -> list[str]:
    return ["--mqtt-host", server.host, "--mqtt-port", str(server.port)]


def server_env(server: Endpoint) -> dict[str, str]:
    """The environment of a CLI subprocess: it finds its credentials in the broker's store."""
    return {**os.environ, "SMARTLOCK_CREDENTIALS__DIR": str(server.credentials_dir)}


class RecordProcess:
    """`smartlock record` in a subprocess, ready once it announces its subscriptions."""

    def __init__(self, server: Endpoint, out: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            cli("record", str(out), *server_args(server), *args),
            cwd=ROOT,
            env=server_env(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # printed after SUBACK
        assert line.startswith("recording "), line + self.proc.stderr.read()

    def finish(self, timeout: float) -> str:
        """Waits for the recorder to stop (it stops on --count or --duration); returns stdout."""
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, err
        return out

    def interrupt(self) -> str:
        """Stops the recorder as Ctrl-C would."""
        self.proc.send_signal(2)
        return self.finish(timeout=10)


def replay(
    server: Endpoint, trace: Path, speed: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli("replay", str(trace), "--speed", speed, *server_args(server)),
        cwd=ROOT,
        env=server_env(server),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def messages(path: Path) -> list[tuple[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(r["topic"], r["payload"]) for r in map(json.loads, filter(str.strip, lines))]


def test_record_then_replay_reproduces_the_messages_in_order(
    mqtt_server: Endpoint, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    # The golden trace under this test's own lock and declaration ids, on the default inbound topics.
    lines = [
        line.replace("LK-", f"LK{tag}-").replace("DCL-", f"DCL{tag}-")
        for line in GOLDEN.read_text(encoding="utf-8").splitlines()
    ]
    raw = f'{{"lock_id": "LK{tag}-01", "seq": '  # a broken lock's truncated JSON, kept as raw text
    lines.insert(100, json.dumps({"topic": f"locks/LK{tag}-01/telemetry", "payload": raw}))
    lines.insert(200, "this line is not JSON")
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recorder = RecordProcess(mqtt_server, tmp_path / "recorded.jsonl")

    result = replay(mqtt_server, trace, "max", timeout=60)

    assert result.returncode == 0, result.stderr
    assert "line 201: malformed" in result.stderr
    assert "replayed 1462 messages: 1462 sent, 1462 acknowledged" in result.stdout
    assert "1 malformed lines skipped" in result.stdout
    time.sleep(1.0)  # the last messages are on their way to the recorder
    assert "Recorded" in recorder.interrupt()
    expected = [(r["topic"], r["payload"]) for r in map(json.loads, lines[:200] + lines[201:])]
    recorded = [m for m in messages(tmp_path / "recorded.jsonl") if tag in json.dumps(m)]
    assert recorded == expected


def test_replay_at_max_speed_acknowledges_every_one_of_100000_messages(
    mqtt_server: Endpoint, tmp_path: Path
) -> None:
    prefix = f"rr-{uuid.uuid4().hex[:8]}"
    trace = tmp_path / "big.jsonl"
    telemetry_trace(trace, prefix, 100_000)
    recorder = RecordProcess(
        mqtt_server,
        tmp_path / "recorded.jsonl",
        "--topic",
        "locks/+/telemetry",
        "--count",
        "100000",
        "--duration",
        "120",
    )

    started = time.monotonic()
    result = replay(mqtt_server, trace, "max", timeout=120)

    assert result.returncode == 0, result.stderr
    assert "replayed 100000 messages: 100000 sent, 100000 acknowledged" in result.stdout, (
        result.stdout
    )
    print(f"\n{result.stdout.strip()} (wall {time.monotonic() - started:.1f} s)")
    assert "Recorded 100000 messages" in recorder.finish(timeout=60)
    recorded = (tmp_path / "recorded.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(recorded) == 100_000
    assert recorded[0] == trace.open(encoding="utf-8").readline().rstrip("\n")


class ArrivalClock:
    """Subscribes in-process and notes when each message on ``topic`` arrives."""

    def __init__(self, server: Endpoint, topic: str) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self._probe = threading.Event()
        self._topic = topic
        self.client = MqttClient(
            server.host,
            server.port,
            f"rr-clock-{uuid.uuid4().hex[:8]}",
            login=server.login("recorder"),
        )
        probe = f"smartlock/record/{uuid.uuid4().hex}"  # the recorder's readiness probe topic
        self.client.subscribe([topic, probe], self._on_message)
        self.client.connect()
        # Publishing a probe until it comes back proves the subscription is active.
        while not self._probe.is_set():
            self.client.publish(probe, b"", qos=1)
            self._probe.wait(0.2)

    def _on_message(self, received: Received) -> None:
        if received.topic == self._topic:
            self.arrivals.append((time.monotonic(), received.payload))
        else:
            self._probe.set()


def test_replay_scales_the_event_time_spacing_by_speed(
    mqtt_server: Endpoint, tmp_path: Path
) -> None:
    topic = f"locks/rr-{uuid.uuid4().hex[:8]}/telemetry"  # a topic the replay identity may publish
    trace = tmp_path / "paced.jsonl"
    # Five fixes 2 s apart in event time, and an untimed message that goes right after the third.
    rows = [
        {"topic": topic, "payload": {"n": n, "ts": f"2026-11-22T08:00:{2 * n:02d}Z"}}
        for n in range(5)
    ]
    rows.insert(3, {"topic": topic, "payload": {"n": "untimed"}})
    trace.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    clock = ArrivalClock(mqtt_server, topic)
    try:
        result = replay(mqtt_server, trace, "4", timeout=60)
        deadline = time.monotonic() + 5
        while len(clock.arrivals) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        clock.client.disconnect()

    assert result.returncode == 0, result.stderr
    assert [json.loads(p)["n"] for _, p in clock.arrivals] == [0, 1, 2, "untimed", 3, 4]
    times = [t - clock.arrivals[0][0] for t, _ in clock.arrivals]
    # Due 2 s of event time / speed 4 = 0.5 s apart; the untimed one right after the third.
    # The publisher schedules against its own start, so a stall only makes messages late:
    # lateness is the machine's load, earliness would be a pacing bug. Hence lower bounds per
    # message (the pacer's exact spacing is unit-tested in test_publisher.py) and an upper
    # bound on the whole that still tells speed 4 (2 s) from speed 1 (8 s).
    due = [0.0, 0.5, 1.0, 1.0, 1.5, 2.0]
    for arrived, due_at in zip(times, due, strict=True):
        assert arrived > due_at - 0.15, (times, due)
    assert times[-1] < 6.0, times


def evaluated_alert_ids(trace: Path) -> set[str]:
    result = subprocess.run(
        cli("evaluate", str(trace)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {x["payload"]["alert_id"] for x in lines if x["topic"].startswith("monitoring/alerts/")}


def test_replaying_through_the_live_pipeline_yields_the_alerts_evaluate_gives(
    mqtt_server: Endpoint, redis_server: Endpoint, kafka_server: Endpoint, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    trace = tmp_path / "golden.jsonl"
    text = GOLDEN.read_text(encoding="utf-8")
    trace.write_text(
        text.replace("LK-", f"LK{tag}-").replace("DCL-", f"DCL{tag}-"), encoding="utf-8"
    )
    expected = evaluated_alert_ids(trace)
    assert len(expected) >= 9  # one of each alert type the golden trace exercises
    pipeline = Pipeline.on(mqtt_server, kafka_server.bootstrap, redis_server.url, tmp_path)
    try:
        pipeline.start("worker")
        pipeline.start("bridge")
        pipeline.wait_worker_ready()
        result = replay(mqtt_server, trace, "max", timeout=60)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 60
        got: set[str] = set()
        while time.monotonic() < deadline and got != expected:
            time.sleep(0.2)
            got = {a["alert_id"] for a in pipeline.alerts_in_redis()}
    finally:
        pipeline.stop_all()
    assert got == expected, (
        f"missing {expected - got}, extra {got - expected}\n{pipeline.log('worker-1')}"
    )
