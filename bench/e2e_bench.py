"""End to end on this machine: lock messages per second against publish-to-alert latency.

Starts the local stack (Mosquitto, Redis, Tansu in memory), one ``smartlock bridge`` and
one ``smartlock worker``, then publishes a fleet's messages (1,000 trucks, 30 % detours,
20 % seal tampering, 20 % implausible jumps, so alerts come often) over MQTT QoS 1 from this
process: first ``--warmup`` messages (declarations, first fixes) unmeasured, then at rising
fixed rates, each for ``--seconds``, with ten probe messages a second among them (each from
a new undeclared lock, so each raises an ``unknown_lock`` alert at once). A subscriber here receives the alerts; the latency of an
alert is the wall time from publishing the message that raised it to receiving it. Between
steps the pipeline drains: a few undeclared marker locks publish once and the step ends when
their alerts came back (``drained_after_s``: how far behind the worker was). Stops at the first rate whose p99 is over 500 ms (or at the end
of ``--rates``).

Gate verdicts are timed the same way: twice a second a gate (``beilun-gate``, logged in as
itself) reports an arrival of a new undeclared lock among the messages, and the wall time
from publishing it to receiving its verdict is that verdict's latency (the contract wants it
under 1 s).

Prints one JSON line per rate: the target and achieved publish rate, alerts with a latency
sample, median and p99, gate verdicts with their median and slowest, each with date,
machine and load. Everything (fleet, publisher,
subscriber, Mosquitto, bridge, Tansu, worker, Redis) shares this machine's cores.

Run: ``python bench/e2e_bench.py [--rates 250,500,1000,2500,5000,7500] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from worker_bench import machine  # same folder: run as `python bench/e2e_bench.py`

from smartlock.adapters.broker_auth import push_identity
from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.mqtt import Login, MqttClient, Received
from smartlock.adapters.redis_auth import redis_client
from smartlock.contract.topics import ALERTS, arrival_topic, lock_topic, verdict_topic
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.local.demo import local_stack, stack_settings
from smartlock.services.gate.client import make_arrival
from smartlock.settings import settings_env
from smartlock.simulators.fleet import Fleet, FleetConfig
from smartlock.simulators.scenarios import parse_scenario

#: Latency bound of the issue: a rate whose p99 is above it ends the run.
P99_BOUND_MS = 500.0


class Latencies:
    """Round-trip times (ms) collected on an MQTT thread, taken by the bench per rate."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lock = threading.Lock()

    def take(self) -> list[float]:
        """The times collected since the last call."""
        with self.lock:
            values, self.latencies = self.latencies, []
        return values


class AlertTimes(Latencies):
    """Receives alerts; matches each to the publish time of the message that raised it."""

    def __init__(self, host: str, port: int, login: Login) -> None:
        super().__init__()
        self.sent: dict[tuple[str, str], float] = {}
        self.last_alert = time.monotonic()
        self.seen: set[str] = set()
        self.locks: set[str] = set()  # locks an alert was received for
        self.client = MqttClient(host, port, f"bench-alerts-{os.getpid()}", login=login)

    def start(self) -> None:
        self.client.subscribe([ALERTS.subscription], self._on_message)
        self.client.connect()

    def _on_message(self, msg: Received) -> None:
        now = time.monotonic()
        payload = json.loads(msg.payload)
        with self.lock:
            self.last_alert = now
            if payload["alert_id"] in self.seen:
                return
            self.seen.add(payload["alert_id"])
            self.locks.add(payload["lock_id"])
            if payload["lock_id"].startswith("BENCH-"):
                return  # a drain marker, not a fleet alert
            sent = self.sent.get((payload["lock_id"], payload["ts"]))
            if sent is not None:
                self.latencies.append((now - sent) * 1000)


#: The gate that reports probe arrivals, and every how many 20 ms slices it does (2 a second).
GATE = "beilun-gate"
GATE_EVERY = 25


class VerdictTimes(Latencies):
    """A gate's client: publishes probe arrivals and times each one's verdict."""

    def __init__(self, host: str, port: int, login: Login) -> None:
        super().__init__()
        self.sent: dict[str, float] = {}
        self.client = MqttClient(host, port, f"{GATE}-bench-{os.getpid()}", login=login)

    def start(self) -> None:
        self.client.subscribe([verdict_topic(GATE)], self._on_message)
        self.client.connect()

    def arrive(self, lock: str, ts: str) -> Any:
        arrival = make_arrival(GATE, "浙B12345", lock, "CSQU3054383", ts=ts)
        with self.lock:
            self.sent[lock] = time.monotonic()
        body = json.dumps(arrival, ensure_ascii=False).encode()
        return self.client.publish(arrival_topic(GATE), body, qos=1)

    def _on_message(self, msg: Received) -> None:
        now = time.monotonic()
        lock = json.loads(msg.payload).get("lock_id")
        with self.lock:
            sent = self.sent.pop(lock, None)
            if sent is not None:
                self.latencies.append((now - sent) * 1000)


#: Event time of a probe before any fleet message has one: the fleet's default start.
DEFAULT_TS = "2026-11-22T08:00:00Z"
#: Every this many 20 ms slices, a probe: one message from a new undeclared lock, whose
#: ``unknown_lock`` alert is raised by that very message (10 latency samples a second on top
#: of the fleet's own alerts, whatever the fleet is doing).
PROBE_EVERY = 5


def publish_at(client: MqttClient, messages: list[tuple[str, dict[str, Any]]], rate: float,
               times: AlertTimes, step: str = "", gate: VerdictTimes | None = None) -> float:  # fmt: skip
    """Publishes at ``rate`` msg/s in 20 ms slices; returns the achieved rate (all acked).

    With ``step``, probes (:data:`PROBE_EVERY`) and gate arrivals (:data:`GATE_EVERY`, with
    ``gate``) go out among the messages."""
    slice_n = max(1, round(rate / 50))
    start = time.monotonic()
    pending = []
    current_ts = next((p["ts"] for _, p in messages if "ts" in p), DEFAULT_TS)
    for n, i in enumerate(range(0, len(messages), slice_n)):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        if step and n % PROBE_EVERY == 0:
            ts = current_ts
            lock = f"PROBE-{step}-{n}"
            probe = {"lock_id": lock, "seq": 1, "ts": ts, "lat": 29.3, "lon": 120.1,
                     "seal": "sealed"}  # fmt: skip
            times.sent[(lock, ts)] = now
            pending.append(
                client.publish(lock_topic(lock, "telemetry"), json.dumps(probe).encode(), qos=1)
            )
        if step and gate is not None and n % GATE_EVERY == 0:
            pending.append(gate.arrive(f"GATEPROBE-{step}-{n}", current_ts))
        for topic, payload in messages[i : i + slice_n]:
            if "ts" in payload:
                current_ts = payload["ts"]
                if "lock_id" in payload:
                    times.sent[(payload["lock_id"], payload["ts"])] = now
            body = json.dumps(payload, ensure_ascii=False).encode()
            pending.append(client.publish(topic, body, qos=1))
        if len(pending) >= 2000:
            for info in pending:
                info.wait_for_publish(30)
            pending.clear()
    for info in pending:
        info.wait_for_publish(30)
    return len(messages) / (time.monotonic() - start)


#: Marker locks published after each step, spread over the partitions by their keys.
MARKERS = 8


def drain(client: MqttClient, times: AlertTimes, step: str, last_ts: str) -> float:
    """Publishes a message from each of :data:`MARKERS` undeclared locks (each raises an
    ``unknown_lock`` alert at once) and waits until every one's alert came: the pipeline has
    judged everything published before them. Returns how long that took (at most 180 s)."""
    locks = [f"BENCH-{step}-{k}" for k in range(MARKERS)]
    started = time.monotonic()
    for lock in locks:
        payload = {"lock_id": lock, "seq": 1, "ts": last_ts, "lat": 29.3, "lon": 120.1,
                   "seal": "sealed"}  # fmt: skip
        client.publish(lock_topic(lock, "telemetry"), json.dumps(payload).encode(), qos=1)
    while time.monotonic() - started < 180:
        with times.lock:
            if all(lock in times.locks for lock in locks):
                break
        time.sleep(0.2)
    return time.monotonic() - started


def last_ts(messages: list[tuple[str, dict[str, Any]]]) -> str:
    """The event time of the last message that has one (else of the first that has one)."""
    return next((p["ts"] for _, p in reversed(messages) if "ts" in p), DEFAULT_TS)


def start(role: str, run_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(run_dir / f"{role}.log", "ab")  # noqa: SIM115 - the child process holds it
    return subprocess.Popen(
        [sys.executable, "-m", "smartlock.cli.main", role, "--name", "bench"],
        env=env, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="250,500,1000,2500,5000,7500")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--trucks", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20_000)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    geo = Geofences.load(default_geofence_dir())
    config = FleetConfig(
        trucks=args.trucks,
        seed=3,
        scenarios=tuple(parse_scenario(s) for s in ("detour:30%", "tamper:20%", "jump:20%")),
    )
    total = args.warmup + int(sum(rates) * args.seconds)
    stream = [(t, p) for _, t, p in itertools.islice(Fleet(config, geo).messages(), total)]
    with tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp:
        run_dir = Path(tmp)
        credentials = CredentialStore(run_dir / "credentials")
        with local_stack(run_dir, Console(file=io.StringIO())) as ports:
            settings = stack_settings(ports, credentials={"dir": credentials.directory.resolve()})
            env = settings_env(settings, os.environ) | {"PYTHONUNBUFFERED": "1"}
            gate_identity = credentials.ensure("gate", GATE)
            push_identity("127.0.0.1", ports.mqtt, credentials.get("admin"), gate_identity)
            procs = [start("worker", run_dir, env), start("bridge", run_dir, env)]
            client = redis_client(settings, "reader")
            try:
                deadline = time.monotonic() + 120
                while not client.hgetall(RedisKeys(settings.redis.prefix).workers):
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise RuntimeError(f"worker not ready; see {run_dir}/worker.log")
                    time.sleep(0.2)
                times = AlertTimes("127.0.0.1", ports.mqtt, Login.of(credentials.get("console")))
                times.start()
                gate = VerdictTimes("127.0.0.1", ports.mqtt, Login.of(gate_identity))
                gate.start()
                publisher = MqttClient(
                    "127.0.0.1", ports.mqtt, f"bench-fleet-{os.getpid()}", max_inflight=2000,
                    login=Login.of(credentials.get("simulator")),
                )  # fmt: skip
                publisher.connect()
                # Warm-up, not measured: the declarations and the first fixes of every trip.
                publish_at(publisher, stream[: args.warmup], 2500, times)
                drain(publisher, times, "warmup", last_ts(stream[: args.warmup]))
                times.take()
                gate.take()
                offset = args.warmup
                for rate in rates:
                    n = int(rate * args.seconds)
                    step = stream[offset : offset + n]
                    achieved = publish_at(publisher, step, rate, times, f"{rate:g}", gate)
                    offset += n
                    behind = drain(publisher, times, f"{rate:g}", last_ts(step))
                    values = sorted(times.take())
                    verdicts = sorted(gate.take())
                    p99 = values[min(len(values) - 1, int(len(values) * 0.99))] if values else None
                    figure = {
                        "bench": "end_to_end",
                        "target_msg_per_s": rate,
                        "published_msg_per_s": round(achieved),
                        "drained_after_s": round(behind, 1),
                        "alert_samples": len(values),
                        "latency_median_ms": round(statistics.median(values), 1)
                        if values
                        else None,
                        "latency_p99_ms": round(p99, 1) if p99 is not None else None,
                        "gate_verdicts": len(verdicts),
                        "gate_verdict_median_ms": round(statistics.median(verdicts), 1)
                        if verdicts
                        else None,
                        "gate_verdict_max_ms": round(verdicts[-1], 1) if verdicts else None,
                    }
                    print(json.dumps(figure | machine()), flush=True)
                    if not values:  # something is wrong: show what the pipeline said
                        for role in ("bridge", "worker"):
                            tail = (run_dir / f"{role}.log").read_text(errors="replace")[-1500:]
                            print(f"{role} log:\n{tail}", file=sys.stderr)
                    if p99 is not None and p99 > P99_BOUND_MS:
                        break
                publisher.disconnect()
                times.client.disconnect()
                gate.client.disconnect()
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


if __name__ == "__main__":
    main()
