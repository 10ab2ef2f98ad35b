"""`smartlock record OUT`: capture live MQTT traffic into a trace."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from pipeline.commands.common import add_server_args, settings_with_servers
from simulators.recorder import DEFAULT_TOPICS, record


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="trace file to write (JSON Lines)")
    parser.add_argument("--topic", action="append", default=[],
                        help="topic filter to record instead of the inbound topics (repeatable)")
    parser.add_argument("--all", action="store_true", help="also record the pipeline's outputs (alerts, status, verdicts)")
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    parser.add_argument("--count", type=int, default=None, help="stop after N messages")
    add_server_args(parser)


def run(args: argparse.Namespace) -> int:
    settings = settings_with_servers(args)
    topics = tuple(args.topic) or DEFAULT_TOPICS
    if args.all:
        topics = ("#",)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    count = record(settings.mqtt.host, settings.mqtt.port, args.out, topics, args.duration, args.count, stop)
    print(f"recorded {count} messages -> {args.out}")
    return 0
