"""Bridge and worker processes for integration tests, each run with its own names.

Every test gets a unique Kafka app id and topics, MQTT shared group and client ids and
Redis key prefix, passed through ``SMARTLOCK_*`` environment variables, so tests never
see each other's data on the shared servers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.redis_auth import redis_client
from smartlock.settings import Settings, load_settings, settings_env

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Pipeline:
    """A bridge and worker set-up with unique names on the test servers."""

    mqtt_host: str
    mqtt_port: int
    kafka: str
    redis_url: str
    workdir: Path
    geofences: Path | None = None
    credentials_dir: Path | None = None
    mqtt: Any = None  # the tests.servers.Endpoint of the broker, for logins
    extra_env: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def on(
        cls,
        mqtt: Any,
        kafka_bootstrap: str,
        redis_url: str,
        workdir: Path,
        *,
        credentials_dir: Path | None = None,
        geofences: Path | None = None,
    ) -> Pipeline:
        """A set-up on the test servers: ``mqtt`` is the broker's ``tests.servers.Endpoint``,
        whose credentials store the processes log in from unless ``credentials_dir`` is given."""
        return cls(
            mqtt.host,
            mqtt.port,
            kafka_bootstrap,
            redis_url,
            workdir,
            geofences=geofences,
            credentials_dir=credentials_dir or mqtt.credentials_dir,
            mqtt=mqtt,
        )

    @property
    def prefix(self) -> str:
        return f"t{self.tag}"

    def settings(self) -> Settings:
        """The settings every process of this set-up runs with (unique names per test)."""
        p = self.prefix
        return load_settings(
            geofence_dir=self.geofences,
            mqtt={
                "host": self.mqtt_host,
                "port": self.mqtt_port,
                "client_id_prefix": p,
                "shared_group": f"{p}-bridges",
            },
            kafka={
                "bootstrap": self.kafka,
                "app_id": f"{p}-app",
                "inbound_topic": f"{p}.inbound",
                "alerts_topic": f"{p}.alerts",
                "outputs_topic": f"{p}.outputs",
                "deadletter_topic": f"{p}.deadletter",
                "writeoffs_topic": f"{p}.writeoffs",
            },
            redis={"url": self.redis_url, "prefix": p},
            credentials={"dir": self.credentials_dir or self.workdir / "credentials"},
        )

    def env(self) -> dict[str, str]:
        env = settings_env(self.settings(), os.environ) | {"PYTHONUNBUFFERED": "1"}
        env.update(self.extra_env)
        return env

    def start(
        self, role: str, name: str | None = "1", key: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Starts ``smartlock bridge`` or ``smartlock worker`` named ``name``.

        ``name=None`` starts it without ``--name`` (it picks its own); ``key`` then tells
        copies apart in :attr:`procs` and their log files.
        """
        key = key or f"{role}-{name}"
        if role == "worker" and name:  # readiness is announced anew (wait_worker_ready)
            self.redis().hdel(RedisKeys(self.prefix).workers, name)
        log = open(self.workdir / f"{key}.log", "ab")  # noqa: SIM115 - the child process holds it
        argv = [sys.executable, "-m", "smartlock.cli.main", role] + (
            ["--name", name] if name else []
        )
        proc = subprocess.Popen(
            argv, cwd=self.workdir, env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )
        self.procs[key] = proc
        return proc

    def log(self, key: str) -> str:
        path = self.workdir / f"{key}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def redis(self) -> redis.Redis:
        """A Redis client logged in as ``admin`` (the tests read and reset anything)."""
        return redis_client(self.settings(), "admin")

    def wait_worker_ready(self, name: str = "1", timeout: float = 60.0) -> list[int]:
        """Waits until the worker announced its partitions in Redis."""
        deadline = time.monotonic() + timeout
        r = self.redis()
        while time.monotonic() < deadline:
            raw = r.hget(RedisKeys(self.prefix).workers, name)
            if raw is not None:
                return json.loads(raw)
            proc = self.procs.get(f"worker-{name}")
            if proc is not None and proc.poll() is not None:
                raise AssertionError(
                    f"worker {name} exited {proc.returncode}:\n{self.log(f'worker-{name}')}"
                )
            time.sleep(0.2)
        raise AssertionError(
            f"worker {name} not ready in {timeout}s:\n{self.log(f'worker-{name}')}"
        )

    def stop(self, key: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc = self.procs.pop(key)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for key in list(self.procs):
            self.stop(key)

    def alerts_in_redis(self) -> list[dict[str, Any]]:
        return [
            json.loads(f["json"]) for _, f in self.redis().xrange(RedisKeys(self.prefix).alerts)
        ]

    def dead_letters_in_redis(self) -> list[dict[str, Any]]:
        return [
            json.loads(f["json"])
            for _, f in self.redis().xrange(RedisKeys(self.prefix).deadletters)
        ]
