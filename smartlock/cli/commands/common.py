"""CLI flags shared by the commands that talk to the servers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from smartlock.runtime import settings_from_args
from smartlock.settings import Settings


def add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML settings file")
    parser.add_argument(
        "--geofences", type=Path, default=None, help="geofence directory (default: shipped)"
    )
    parser.add_argument("--mqtt-host", default=None)
    parser.add_argument("--mqtt-port", type=int, default=None)
    parser.add_argument("--kafka", default=None, help="Kafka bootstrap host:port")
    parser.add_argument("--redis", default=None, help="Redis URL, e.g. redis://127.0.0.1:6379/0")


def settings_with_servers(args: argparse.Namespace) -> Settings:
    """Settings from file and environment, with the server flags on top."""
    # Passed as overrides, so the flags are validated like every other source.
    overrides: dict[str, Any] = {}
    mqtt = {k: v for k, v in (("host", args.mqtt_host), ("port", args.mqtt_port)) if v}
    if mqtt:
        overrides["mqtt"] = mqtt
    if args.kafka:
        overrides["kafka"] = {"bootstrap": args.kafka}
    if args.redis:
        overrides["redis"] = {"url": args.redis}
    return settings_from_args(args, **overrides)
