"""The local demo: servers up, bridge and worker running, a simulated fleet, a live view.

Everything runs as local processes under a run directory; Ctrl-C or ``--duration`` stops
the fleet, the worker, the bridge and the servers, leaving nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.mqtt import Login, MqttClient
from smartlock.adapters.redis_auth import redis_client
from smartlock.errors import InfrastructureError
from smartlock.local.live_view import LiveView
from smartlock.local.stack import Ports, free_ports, port_in_use, start_stack, stop_stack
from smartlock.settings import Settings, load_settings, settings_env
from smartlock.simulators.publisher import Payload, event_time

Message = tuple[str, Payload]


@dataclass
class FleetStats:
    published: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    failure: BaseException | None = None

    def rate(self) -> float:
        end = self.finished or time.monotonic()
        return self.published / max(end - self.started, 1e-9)


class FleetPublisher(threading.Thread):
    """Publishes a fleet's messages over MQTT QoS 1 at ``speed`` times real pace.

    Event-time spacing is kept (scaled); for each message the wall time of publication is
    recorded under (lock_id, ts), so the view can measure publish-to-alert latency.
    """

    def __init__(
        self,
        host: str,
        port: int,
        messages: list[Message],
        speed: float,
        stop: threading.Event,
        paced_from: float | None = None,
        login: Login | None = None,
        resend_s: float = 0.0,
    ) -> None:
        super().__init__(daemon=True, name="fleet")
        # resend_s: after a broker restart, the fleet publishes its last seconds again (a
        # Mosquitto kill -9 forgets what it had acknowledged but not saved), as locks must.
        self.client = MqttClient(
            host, port, f"smartlock-demo-fleet-{os.getpid()}", max_inflight=2000, login=login,
            resend_s=resend_s, reconnect_wait_s=3600.0,
        )  # fmt: skip
        self.messages = messages
        self.speed = speed
        self.stop_event = stop
        self.stats = FleetStats()
        self.publish_times: dict[tuple[str, str], float] = {}
        self.paced_from = paced_from  # event time before which messages go out as a catch-up burst

    def run(self) -> None:
        try:
            self.client.connect()
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the demo's main thread
            self.stats.failure = exc
        finally:
            self.stats.finished = time.monotonic()
            self.client.disconnect()

    def _run(self) -> None:
        first = self.paced_from
        if first is None:
            first = next((t for _, p in self.messages if (t := event_time(p)) is not None), 0.0)
        start = time.monotonic()
        pending = []
        for topic, payload in self.messages:
            if self.stop_event.is_set():
                return
            ts = event_time(payload)
            if ts is not None:
                delay = start + (ts - first) / self.speed - time.monotonic()
                if delay > 0:
                    self.stop_event.wait(delay)
            now = time.monotonic()
            if ts is not None and isinstance(payload, dict) and "lock_id" in payload:
                self.publish_times[(payload["lock_id"], payload["ts"])] = now
            data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
            pending.append(self.client.publish(topic, data.encode(), qos=1))
            self.stats.published += 1
            if len(pending) >= 1000:
                for info in pending:
                    info.wait_for_publish(10)
                pending.clear()
            self.client.raise_if_failed()
        for info in pending:
            info.wait_for_publish(10)


@dataclass
class DemoProcesses:
    """The bridge and worker processes of the demo."""

    run_dir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, role: str, *args: str) -> None:
        log = open(self.run_dir / f"{role}.log", "ab")  # noqa: SIM115 - the child process holds it
        self.procs[role] = subprocess.Popen(
            [sys.executable, "-m", "smartlock.cli.main", role, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.run_dir,
        )

    def check(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.run_dir / f"{role}.log").read_text(errors="replace")[-3000:]
                raise InfrastructureError(f"{role} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _ports() -> Ports:
    defaults = Ports()
    if not any(
        port_in_use("127.0.0.1", p) for p in (defaults.mqtt, defaults.redis, defaults.kafka)
    ):
        return defaults
    mqtt, redis_port, kafka = free_ports(3)
    return Ports(mqtt, redis_port, kafka)


@contextmanager
def local_stack(run_dir: Path, console: Console) -> Iterator[Ports]:
    """A fresh stack for one show: the demo and the loop start from empty servers each time
    (their trips and declarations would otherwise collide with the last run's) and keep the
    broker in memory; ``smartlock stack up`` is the durable one."""
    ports = _ports()
    console.print(
        f"Starting Mosquitto on :{ports.mqtt}, Redis on :{ports.redis} and the Kafka-compatible "
        f"broker on :{ports.kafka} (logs in {run_dir})."
    )
    stop_stack(run_dir)  # left over from an interrupted run
    for data in ("mosquitto", "redis", "seaweedfs"):
        shutil.rmtree(run_dir / data, ignore_errors=True)
    start_stack(run_dir, ports, storage="memory")
    try:
        yield ports
    finally:
        stopped = stop_stack(run_dir)
        console.print(
            f"Stopped {', '.join(stopped)}." if stopped else "No server was left to stop."
        )


def run_demo(
    messages_for: Callable[[], list[Message]],
    *,
    paced_from: float | None = None,
    run_dir: Path,
    duration: float | None,
    speed: float,
    console: Console | None = None,
) -> dict[str, Any]:
    """Runs the whole demo; returns the figures it measured.

    Args:
        messages_for: builds the fleet's messages (sorted in publish order).
        run_dir: where servers and processes keep logs and data.
        duration: stop after this many seconds (None: until Ctrl-C or the fleet is done + 10 s).
        speed: event time runs this many times faster than wall time.
    """
    stop = threading.Event()
    # Ctrl-C, kill, and closing the terminal (SIGHUP) all stop the demo cleanly: no server
    # or process is left behind. The caller's handlers come back afterwards.
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in STOP_SIGNALS}
    try:
        return _run_demo(messages_for, paced_from, run_dir, duration, speed, console, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_demo(
    messages_for: Callable[[], list[Message]],
    paced_from: float | None,
    run_dir: Path,
    duration: float | None,
    speed: float,
    console: Console | None,
    stop: threading.Event,
) -> dict[str, Any]:
    console = console or Console()
    run_dir.mkdir(parents=True, exist_ok=True)
    messages = messages_for()
    console.print(f"fleet: {len(messages)} messages, replayed at {speed:g}x real time")
    credentials = CredentialStore(run_dir / "credentials")
    issue_console_identities(run_dir)
    with local_stack(run_dir, console) as ports:
        settings = stack_settings(ports, credentials={"dir": credentials.directory.resolve()})
        env = settings_env(settings, os.environ) | {"PYTHONUNBUFFERED": "1"}
        procs = DemoProcesses(run_dir, env)
        try:
            procs.start("worker")
            procs.start("bridge")
            _wait_worker(settings, procs, console, stop)
            url = start_console(procs, run_dir, console)
            # The wall screen reads as the console service; the fleet stands in for the locks.
            view = LiveView("127.0.0.1", ports.mqtt, login=Login.of(credentials.get("console")))
            view.start()
            fleet = FleetPublisher(
                "127.0.0.1",
                ports.mqtt,
                messages,
                speed,
                stop,
                paced_from,
                Login.of(credentials.get("simulator")),
                resend_s=settings.mqtt.resend_s,
            )
            view.publish_times = fleet.publish_times
            fleet.start()
            started = time.monotonic()
            with Live(
                view.render(), console=console, refresh_per_second=4, transient=False
            ) as live:
                while not stop.is_set():
                    elapsed = time.monotonic() - started
                    header = (
                        f"smartlock demo  {elapsed:5.0f} s   published {fleet.stats.published} "
                        f"({fleet.stats.rate():.0f} msg/s)   console {url}   Ctrl-C to stop"
                    )
                    live.update(view.render(header))
                    procs.check()
                    if fleet.stats.failure is not None:
                        raise fleet.stats.failure
                    if duration is not None and elapsed >= duration:
                        break
                    if (
                        duration is None
                        and fleet.stats.finished is not None
                        and time.monotonic() - fleet.stats.finished > 10
                    ):
                        break
                    stop.wait(0.25)
            stop.set()
            fleet.join(10)
            n, p50, p99 = view.latency_summary()
            figures = {
                "published": fleet.stats.published,
                "publish_rate_msg_s": round(fleet.stats.rate(), 1),
                "alerts": sum(view.state.alert_counts.values()),
                "alerts_by_type": dict(view.state.alert_counts),
                "red_trips": sum(1 for s in view.state.statuses.values() if s["colour"] == "red"),
                "latency_samples": n,
                "latency_median_ms": round(p50, 1) if p50 is not None else None,
                "latency_p99_ms": round(p99, 1) if p99 is not None else None,
            }
            view.stop()
        finally:
            procs.stop()
    console.print(figures)
    return figures


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The console's port when free (else any free port).
CONSOLE_PORT = 8090
#: Who may sign in to the demo's console (their secrets go to an owner-only file).
DEMO_OPERATOR, DEMO_OBSERVER = "duty-officer", "wall-screen"


def issue_console_identities(run_dir: Path) -> Path:
    """Issues the demo's operator and observer (before the stack starts, so the broker knows
    them); their secrets go to ``<run_dir>/console-sign-in.txt`` (mode 0600), never printed."""
    store = CredentialStore(run_dir / "credentials")
    lines = []
    for role, name in (("operator", DEMO_OPERATOR), ("observer", DEMO_OBSERVER)):
        identity = store.ensure(role, name)
        lines.append(f"{role:<9} {name:<14} {identity.secret.get_secret_value()}")
    sign_in = run_dir / "console-sign-in.txt"
    fd = os.open(sign_in, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return sign_in


def start_console(procs: DemoProcesses, run_dir: Path, console: Console) -> str:
    """Starts ``smartlock console`` beside the pipeline; returns its URL."""
    sign_in = run_dir / "console-sign-in.txt"
    port = CONSOLE_PORT if not port_in_use("127.0.0.1", CONSOLE_PORT) else free_ports(1)[0]
    procs.start("console", "--port", str(port))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while not port_in_use("127.0.0.1", port):
        procs.check()
        if time.monotonic() > deadline:
            raise InfrastructureError(f"console not up; see {run_dir / 'console.log'}")
        time.sleep(0.2)
    console.print(
        f"console: {url}  (wall screen: {url}?wall); sign in as {DEMO_OPERATOR} (operator) or "
        f"{DEMO_OBSERVER} (observer) with the secret in {sign_in}"
    )
    return url


def stack_settings(ports: Ports, **overrides: Any) -> Settings:
    """The settings of processes that use the local stack on ``ports``."""
    return load_settings(
        mqtt={"host": "127.0.0.1", "port": ports.mqtt},
        kafka={"bootstrap": f"127.0.0.1:{ports.kafka}"},
        redis={"url": f"redis://127.0.0.1:{ports.redis}/0"},
        **overrides,
    )


def _wait_worker(
    settings: Settings, procs: DemoProcesses, console: Console, stop: threading.Event
) -> None:
    client = redis_client(settings, "reader")
    deadline = time.monotonic() + 90
    with console.status("waiting for the worker to join its consumer group..."):
        while not client.hgetall(RedisKeys(settings.redis.prefix).workers):
            procs.check()
            if time.monotonic() > deadline or stop.is_set():
                raise InfrastructureError(f"worker not ready; see {procs.run_dir / 'worker.log'}")
            time.sleep(0.2)
    client.close()
