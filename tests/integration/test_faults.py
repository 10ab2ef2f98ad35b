"""The fault suite: a fleet trace replayed while one server or process is SIGKILLed mid-stream.

For each victim (worker, bridge, Mosquitto, Redis, the Kafka-compatible broker) a fresh
pipeline replays the same trace in three parts: part one, then the kill (the pipeline is
still busy with part one), part two while the victim is down, the restart, part three.
Mosquitto instead: the bridge is killed, part one published, Mosquitto killed at once (part
one not saved yet) and restarted, the bridge restarted, the rest published by the same
client, which publishes its last 3 s again after reconnecting. Afterwards the alerts,
gate verdicts and write-offs recorded in Redis are compared with ``smartlock evaluate``:
0 lost, 0 duplicated, 0 extra. The servers here are this module's own (they get killed),
with the broker on durable S3 storage as ``smartlock stack up`` runs it. The table is printed
at the end of the run.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.mqtt import MqttClient
from smartlock.simulators.publisher import event_time
from tests.builders import Trip, merge, synthetic_collections
from tests.integration.procs import Pipeline
from tests.integration.test_pipeline_live import (
    CONTAINERS,
    evaluate_lines,
    publish,
    scenario_trace,
    write_trace,
)
from tests.integration.test_record_replay import ROOT, cli, server_args, server_env
from tests.servers import Endpoint, LocalBackend

pytestmark = pytest.mark.integration

# Mosquitto is killed too: the bridges' one inbound session has plain subscriptions, which
# Mosquitto restores from its database, so what is published between its restart and the
# bridge's reconnect is queued for the session (README "Durability and faults").
VICTIMS = ("worker", "bridge", "mosquitto", "redis", "broker")
#: How far back the publisher of the Mosquitto case re-sends after a reconnect.
RESEND_S = 3.0
TABLE: list[tuple[str, str, int, int, int, int]] = []


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalBackend, dict[str, Endpoint]]]:
    backend = LocalBackend(tmp_path_factory.mktemp("fault-servers"))
    try:
        endpoints = {kind: backend.start(kind) for kind in ("mqtt", "redis", "kafka-durable")}
        yield backend, endpoints
    finally:
        backend.close()


def table_lines() -> list[str]:
    """The fault table, printed at the end of the pytest run (tests/integration/conftest.py)."""
    if not TABLE:
        return []
    lines = [
        "fault suite (SIGKILL mid-stream, then restart), against evaluate:",
        f"{'killed':<18} {'output':<10} {'expected':>8} {'lost':>5} {'duplicated':>10} {'extra':>6}",
    ]
    lines += [f"{r[0]:<18} {r[1]:<10} {r[2]:>8} {r[3]:>5} {r[4]:>10} {r[5]:>6}" for r in TABLE]
    return lines


def fleet_trace() -> list[tuple[str, dict[str, Any]]]:
    """The live test's scenarios (detour, breach, undeclared lock, gate arrivals) and 12 normal trips."""
    trips = [
        Trip(f"N{i}", f"DN{i}", container=CONTAINERS[i % 3]).normal().arrive() for i in range(12)
    ]
    return merge(*trips) + scenario_trace()


def recorded(pipeline: Pipeline) -> dict[str, list[str]]:
    """What the pipeline recorded in Redis: alert ids, verdicts, write-offs (one string each)."""
    r = pipeline.redis()
    alerts = [
        f"{f['alert_id']}/{f['type']}/{f['lock_id']}"
        for _, f in r.xrange(RedisKeys(pipeline.prefix).alerts)
    ]
    verdicts = []
    for _, f in r.xrange(RedisKeys(pipeline.prefix).verdicts):
        v = json.loads(f["json"])
        verdicts.append(f"{v['gate_id']}/{v['lock_id']}/{v['ts']}/{v['verdict']}")
    writeoffs = []
    for key in r.scan_iter(RedisKeys(pipeline.prefix).writeoff("*")):
        writeoffs += [f"{key.rsplit(':', 1)[1]}/{lock}" for lock in r.hkeys(key)]
    return {"alerts": alerts, "verdicts": verdicts, "write-offs": writeoffs}


def expected_outputs(lines: list[dict[str, Any]]) -> dict[str, set[str]]:
    alerts = {
        f"{a['alert_id']}/{a['type']}/{a['lock_id']}"
        for a in (x["payload"] for x in lines if x["topic"].startswith("monitoring/alerts/"))
    }
    verdicts = [x["payload"] for x in lines if x["topic"].endswith("/verdicts")]
    return {
        "alerts": alerts,
        "verdicts": {f"{v['gate_id']}/{v['lock_id']}/{v['ts']}/{v['verdict']}" for v in verdicts},
        "write-offs": {
            f"{v['declaration_id']}/{v['lock_id']}" for v in verdicts if v["verdict"] == "release"
        },
    }


def send(publisher: MqttClient, messages: list[tuple[str, Any]]) -> None:
    """Publishes with one long-lived client and waits until the broker acknowledged each."""
    encoded = [(t, json.dumps(p, ensure_ascii=False).encode(), False) for t, p in messages]
    asyncio.run(publisher.publish_all(encoded, timeout=60))


def wait_for_log(pipeline: Pipeline, key: str, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in pipeline.log(key):
        assert time.monotonic() < deadline, pipeline.log(key)
        time.sleep(0.2)


def wait_settled(
    pipeline: Pipeline, expected: dict[str, set[str]], timeout: float
) -> dict[str, list[str]]:
    """Polls Redis until everything expected arrived and nothing changed for 3 s (or timeout)."""
    deadline = time.monotonic() + timeout
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            got = recorded(pipeline)
        except Exception:  # Redis restarting
            time.sleep(0.5)
            continue
        if got != last:
            last, stable_since = got, time.monotonic()
        complete = all(expected[k] <= set(got[k]) for k in expected)
        if complete and time.monotonic() - stable_since > 3:
            return got
        time.sleep(0.3)
    assert last is not None
    return last


def assert_still_running(pipeline: Pipeline) -> None:
    """Bridge and worker recovered by themselves: neither exited."""
    for proc_key in ("worker-1", "bridge-1"):
        proc = pipeline.procs.get(proc_key)
        assert proc is None or proc.poll() is None, (proc_key, pipeline.log(proc_key))


def compare_with_evaluate(
    killed: str, expected: dict[str, set[str]], got: dict[str, list[str]], pipeline: Pipeline
) -> None:
    """Adds a row per output to the fault table; fails on anything lost, duplicated or extra."""
    report = []
    for output, want in expected.items():
        have = got[output]
        lost, extra = want - set(have), set(have) - want
        duplicated = len(have) - len(set(have))
        TABLE.append((killed, output, len(want), len(lost), duplicated, len(extra)))
        report.append((output, sorted(lost), duplicated, sorted(extra)))
    assert all(not lost and not dup and not extra for _, lost, dup, extra in report), (
        report, pipeline.log("worker-1"), pipeline.log("bridge-1"),
    )  # fmt: skip


@pytest.mark.parametrize("victim", VICTIMS)
def test_a_sigkill_mid_stream_loses_duplicates_and_invents_nothing(
    victim: str, servers: tuple[LocalBackend, dict[str, Endpoint]], tmp_path: Path
) -> None:
    backend, ep = servers
    geofences = tmp_path / "geofences"
    geofences.mkdir()
    for name, fc in synthetic_collections().items():
        (geofences / name).write_text(json.dumps(fc))
    messages = fleet_trace()
    expected = expected_outputs(
        evaluate_lines(write_trace(messages, tmp_path / "t.jsonl"), geofences)
    )
    assert expected["alerts"] and expected["verdicts"] and expected["write-offs"]
    pipeline = Pipeline.on(
        ep["mqtt"], ep["kafka-durable"].bootstrap, ep["redis"].url, tmp_path, geofences=geofences
    )
    try:
        pipeline.start("worker")
        pipeline.start("bridge")
        pipeline.wait_worker_ready()
        if victim == "mosquitto":
            # Mosquitto saves its database once a second: a session younger than that bound
            # (two seconds) is not saved yet. A bridge has held its session long before a crash.
            wait_for_log(pipeline, "bridge-1", " active: ")
            time.sleep(3)
        third = len(messages) // 3
        if victim == "mosquitto":
            # What Mosquitto acknowledged but had neither handed to the bridge nor saved is lost
            # on kill -9 (README "Durability and faults"). The worst case, made sure here: the
            # bridge is down, so part one waits in Mosquitto's memory when it is killed. One
            # publisher across the kill, which publishes its last 3 s again after reconnecting,
            # closes that window.
            publisher = MqttClient(
                ep["mqtt"].host, ep["mqtt"].port, f"publisher-{pipeline.prefix}",
                login=ep["mqtt"].login("replay"), resend_s=RESEND_S,
            )  # fmt: skip
            publisher.connect()
            try:
                pipeline.stop("bridge-1", signal.SIGKILL)
                send(publisher, messages[:third])
                backend.kill_and_restart("mqtt")  # at once: not saved yet
                pipeline.start("bridge")
                send(publisher, messages[third:])  # waits for the reconnect and the re-sent
            finally:
                publisher.disconnect()
        else:
            publish(ep["mqtt"], messages[:third])
        if victim in ("worker", "bridge"):
            pipeline.stop(f"{victim}-1", signal.SIGKILL)
            publish(ep["mqtt"], messages[third : 2 * third])
            pipeline.start(victim)  # same name: resumes its MQTT session / partitions
        elif victim != "mosquitto":
            backend.kill_and_restart({"redis": "redis", "broker": "kafka-durable"}[victim], 2.0)
            publish(ep["mqtt"], messages[third : 2 * third])
        if victim != "mosquitto":
            publish(ep["mqtt"], messages[2 * third :])
        got = wait_settled(pipeline, expected, timeout=120)
        assert_still_running(pipeline)
    finally:
        pipeline.stop_all()
    compare_with_evaluate(victim, expected, got, pipeline)


def test_replay_across_a_mosquitto_sigkill_loses_duplicates_and_invents_nothing(
    servers: tuple[LocalBackend, dict[str, Endpoint]], tmp_path: Path
) -> None:
    """`smartlock replay` itself publishes the trace (its default resend of the last 3 s)
    while Mosquitto is SIGKILLed and restarted mid-replay, with the bridge down so that what
    Mosquitto acknowledged waits unsaved in its memory: the replay waits for the broker,
    finishes with every message acknowledged once, and the outputs equal evaluate's."""
    backend, ep = servers
    geofences = tmp_path / "geofences"
    geofences.mkdir()
    for name, fc in synthetic_collections().items():
        (geofences / name).write_text(json.dumps(fc))
    messages = fleet_trace()
    trace = write_trace(messages, tmp_path / "t.jsonl")
    expected = expected_outputs(evaluate_lines(trace, geofences))
    times = [t for _, p in messages if (t := event_time(p)) is not None]
    speed = (max(times) - min(times)) / 8.0  # the replay takes about 8 s
    pipeline = Pipeline.on(
        ep["mqtt"], ep["kafka-durable"].bootstrap, ep["redis"].url, tmp_path, geofences=geofences
    )
    try:
        pipeline.start("worker")
        pipeline.start("bridge")
        pipeline.wait_worker_ready()
        wait_for_log(pipeline, "bridge-1", " active: ")
        time.sleep(3)  # the bridge's session is saved (Mosquitto saves once a second)
        pipeline.stop("bridge-1", signal.SIGKILL)
        replay = subprocess.Popen(
            cli("replay", str(trace), "--speed", f"{speed:.3f}", *server_args(ep["mqtt"])),
            cwd=ROOT, env=server_env(ep["mqtt"]), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            time.sleep(3.5)  # part of the trace acknowledged, none of it forwarded or saved
            assert replay.poll() is None, replay.communicate()
            backend.kill_and_restart("mqtt")
            pipeline.start("bridge")
            out, err = replay.communicate(timeout=120)
        finally:
            if replay.poll() is None:
                replay.kill()
                replay.communicate()
        assert replay.returncode == 0, (out, err)
        n = len(messages)
        assert f"replayed {n} messages: {n} sent, {n} acknowledged" in out, (out, err)
        assert "reconnected" in err and "again" in err, err  # the kill happened mid-replay
        got = wait_settled(pipeline, expected, timeout=120)
        assert_still_running(pipeline)
    finally:
        pipeline.stop_all()
    compare_with_evaluate("mosquitto (replay)", expected, got, pipeline)


def test_replay_stops_with_a_clear_error_when_the_broker_stays_away(tmp_path: Path) -> None:
    """Past `mqtt.reconnect_wait_s`, a replay whose broker died says so and exits non-zero."""
    backend = LocalBackend(tmp_path / "servers")
    try:
        ep = backend.start("mqtt")
        messages = fleet_trace()
        trace = write_trace(messages, tmp_path / "t.jsonl")
        times = [t for _, p in messages if (t := event_time(p)) is not None]
        speed = (max(times) - min(times)) / 20.0  # would take about 20 s
        replay = subprocess.Popen(
            cli("replay", str(trace), "--speed", f"{speed:.3f}", *server_args(ep)),
            cwd=ROOT, env=server_env(ep) | {"SMARTLOCK_MQTT__RECONNECT_WAIT_S": "2"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2.5)
        backend.close()  # Mosquitto gone for good
        started = time.monotonic()
        try:
            out, err = replay.communicate(timeout=60)
        finally:
            if replay.poll() is None:
                replay.kill()
                replay.communicate()
    finally:
        backend.close()
    assert replay.returncode != 0, (out, err)
    assert "did not come back within 2 s" in err, err
    assert time.monotonic() - started < 15, err
