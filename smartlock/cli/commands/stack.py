"""`smartlock stack up|down|status`: the local Mosquitto, Redis, SeaweedFS and Tansu servers.

Ports and the run directory default to the settings (``--config`` file, then
``SMARTLOCK_...`` environment, then defaults 1883, 6379, 9092 and ``.run/``), so the
stack listens where ``smartlock bridge`` and ``smartlock worker`` will look. Flags win.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

from smartlock.adapters import membership
from smartlock.adapters.credentials import CredentialStore
from smartlock.errors import ConfigError
from smartlock.local import stack
from smartlock.settings import Settings, load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("up", "down", "status"),
        help="up: start and wait until all answer; down: stop; status: show (exit 1 unless all answer)",
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML settings file")
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="configs, logs, pid files (default: .run)"
    )
    parser.add_argument("--mqtt-port", type=int, default=None, help="Mosquitto port (default 1883)")
    parser.add_argument(
        "--mqtt-tls-port",
        type=int,
        default=8883,
        help="Mosquitto's TLS listener for devices (default 8883; 0 = none)",
    )
    parser.add_argument("--redis-port", type=int, default=None, help="Redis port (default 6379)")
    parser.add_argument(
        "--kafka-port", type=int, default=None, help="Tansu (Kafka API) port (default 9092)"
    )
    parser.add_argument(
        "--s3-port", type=int, default=0, help="SeaweedFS S3 port (default: kept from the last run)"
    )
    parser.add_argument(
        "--storage",
        choices=("s3", "memory"),
        default="s3",
        help="where Tansu keeps topics and offsets: s3 (durable, SeaweedFS; default) or memory",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the servers to answer"
    )


def run(args: argparse.Namespace) -> int:
    run_dir, ports = _resolve(args)
    if args.action == "up":
        settings = load_settings(args.config, run_dir=run_dir)
        info = stack.start_stack(
            run_dir,
            ports,
            timeout=args.timeout,
            storage=args.storage,
            credentials=CredentialStore(settings.credentials_dir),
            redis_prefix=settings.redis.prefix,
        )
        for server in info.servers.values():
            print(
                f"{server.name:<10} pid {server.pid:<7} {server.host}:{server.port:<6} log {server.log}"
            )
        print(
            f"MQTT {info.host}:{info.mqtt_port}  Kafka {info.kafka_bootstrap}  Redis {info.redis_url}"
        )
        if ports.mqtt_tls:
            print(
                f"MQTT over TLS on port {ports.mqtt_tls} (CA: {run_dir / 'tls' / 'ca.crt'}); "
                f"credentials in {settings.credentials_dir} (smartlock credentials list)"
            )
        return 0
    if args.action == "down":
        stopped = stack.stop_stack(run_dir)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    statuses = stack.stack_status(run_dir)
    _print_statuses(statuses)
    ok = all(s.healthy for s in statuses)
    if args.run_dir is None:
        # `make demo` and `make loop` run their own stacks under <run_dir>/demo and /loop.
        for sub in sorted(p for p in Path(run_dir).glob("*/stack.json")):
            others = stack.stack_status(sub.parent)
            if any(s.running for s in others):
                print(f"\nin {sub.parent} (smartlock {sub.parent.name}):")
                _print_statuses(others)
                ok = ok or all(s.healthy for s in others)
    redis_up = any(s.name == "redis" and s.healthy for s in statuses)
    if redis_up:
        ok = _print_members(load_settings(args.config, run_dir=run_dir)) and ok
    return 0 if ok else 1


def _print_members(settings: Settings) -> bool:
    """Bridges and workers that registered in Redis; False if one has stopped beating."""
    try:
        found = membership.members(settings)
    except Exception as exc:  # noqa: BLE001 - status reports, it does not crash
        print(f"bridges and workers: cannot read them from Redis ({exc})")
        return False
    if not found:
        print("bridges and workers: none registered")
        return True
    print("\nbridges and workers (heartbeats in Redis):")
    for m in found:
        who = f"{m.member.role} {m.member.name}"
        where = f"pid {m.member.pid} on {m.member.host}"
        if m.alive:
            print(f"{who:<28} alive, beat {m.silent_s:.0f} s ago   {where}   {m.member.owns}")
        else:
            print(f"{who:<28} NO HEARTBEAT for {m.silent_s:.0f} s (dead or hung)   {where}")
    return all(m.alive for m in found)


def _print_statuses(statuses: list[stack.ServerStatus]) -> None:
    for s in statuses:
        state = "answering" if s.healthy else ("running, not answering" if s.running else "stopped")
        where = f"port {s.port}" if s.port else ""
        print(f"{s.name:<10} {state:<24} {'pid ' + str(s.pid) if s.pid else '':<11} {where}")


def _resolve(args: argparse.Namespace) -> tuple[Path, stack.Ports]:
    """Run directory and ports: flags first, then the settings."""
    settings = load_settings(args.config)
    redis_port = urlsplit(settings.redis.url).port or 6379
    try:
        kafka_port = int(settings.kafka.bootstrap.split(",")[0].rsplit(":", 1)[1])
    except (IndexError, ValueError) as exc:
        raise ConfigError(f"kafka.bootstrap {settings.kafka.bootstrap!r} is not host:port") from exc
    ports = stack.Ports(
        mqtt=args.mqtt_port or settings.mqtt.port,
        redis=args.redis_port or redis_port,
        kafka=args.kafka_port or kafka_port,
        s3=args.s3_port,
        mqtt_tls=args.mqtt_tls_port,
    )
    return args.run_dir or settings.run_dir, ports
