"""`smartlock record OUT`: capture live MQTT traffic into a trace."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from smartlock.adapters.mqtt import login_for
from smartlock.cli.commands.common import add_server_args, settings_with_servers
from smartlock.errors import ConfigError
from smartlock.simulators.recorder import ALL_TOPICS, DEFAULT_TOPICS, record


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="trace file to write (JSON Lines)")
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="FILTER",
        help="topic filter to record instead of the inbound topics (repeatable)",
    )
    parser.add_argument(
        "--add-topic",
        action="append",
        default=[],
        metavar="FILTER",
        help="topic filter to record as well as the inbound topics (repeatable)",
    )
    parser.add_argument(
        "--all", action="store_true", help="record every topic ('#'), outputs included"
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    parser.add_argument("--count", type=int, default=None, help="stop after N messages")
    add_server_args(parser)


def topics_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The filters to subscribe: ``--all``, else ``--topic`` (or the inbound topics) plus ``--add-topic``."""
    if args.all:
        return ALL_TOPICS
    return tuple(dict.fromkeys((*(args.topic or DEFAULT_TOPICS), *args.add_topic)))


def run(args: argparse.Namespace) -> int:
    settings = settings_with_servers(args)
    if (args.duration is not None and args.duration <= 0) or (
        args.count is not None and args.count <= 0
    ):
        raise ConfigError("--duration and --count must be positive")
    topics = topics_of(args)
    stop = threading.Event()
    # Ctrl-C or a kill ends the recording cleanly: what arrived so far is kept.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def announce() -> None:  # after SUBACK: a script may start publishing once it sees this line
        print(
            f"recording {', '.join(topics)} from {settings.mqtt.host}:{settings.mqtt.port} -> {args.out}",
            file=sys.stderr,
            flush=True,
        )

    count = record(
        settings.mqtt.host,
        settings.mqtt.port,
        args.out,
        topics,
        args.duration,
        args.count,
        stop,
        announce,
        login_for(settings, "recorder"),
    )
    print(f"Recorded {count} message{'' if count == 1 else 's'} to {args.out}.", flush=True)
    return 0
