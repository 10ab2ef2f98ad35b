"""`smartlock replay TRACE --speed X`: republish a trace over MQTT with its spacing scaled."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from smartlock.adapters.mqtt import login_for
from smartlock.cli.commands.common import add_server_args, settings_with_servers
from smartlock.core.evaluate import iter_trace
from smartlock.errors import ConfigError, MessageError
from smartlock.simulators.publisher import Payload, PublishReport, publish_paced


class TraceReader:
    """Streams a trace's (topic, payload) messages, one line at a time.

    A malformed line is reported on ``err`` with its line number, counted and skipped: the
    same policy as ``smartlock evaluate``.
    """

    def __init__(self, lines: Iterable[str], err: TextIO) -> None:
        self.lines, self.err = lines, err
        self.malformed = 0

    def __iter__(self) -> Iterator[tuple[str, Payload]]:
        for number, line in enumerate(self.lines, start=1):
            if not line.strip():
                continue
            try:
                [(_, topic, payload)] = list(iter_trace([line]))
            except MessageError as exc:
                self.malformed += 1
                self.err.write(f"line {number}: malformed: {exc.detail.removeprefix('line 1: ')}\n")
                continue
            # A JSON value that is neither object nor string goes out as the JSON text it was.
            yield topic, payload if isinstance(payload, dict | str) else json.dumps(payload)


def parse_speed(text: str) -> float | None:
    """``max`` as None (as fast as the broker acknowledges), else a positive factor."""
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not speed > 0 or speed == float("inf"):
        raise ConfigError(f"--speed {text!r}: give a positive number or 'max'")
    return speed


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", type=Path, help="JSON Lines trace ({topic, payload} per line)")
    parser.add_argument(
        "--speed",
        default="1",
        help="replay X times faster than the event-time spacing, or 'max' (default 1: real pace)",
    )
    add_server_args(parser)


def count_lines(path: Path) -> int:
    """Non-blank lines of ``path``: the progress bar's total (one cheap pass over the bytes)."""
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def summary_line(report: PublishReport, malformed: int) -> str:
    """The closing line: messages sent and acknowledged, time and rate."""
    skipped = f", {malformed} malformed lines skipped" if malformed else ""
    return (
        f"replayed {report.sent} messages: {report.sent} sent, {report.acked} acknowledged "
        f"in {report.seconds:.1f} s ({report.rate:.0f} msg/s){skipped}"
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_with_servers(args)
    speed = parse_speed(args.speed)
    if not args.trace.is_file():
        raise ConfigError(f"trace {args.trace} not found")
    progress = sys.stderr.isatty()
    total = count_lines(args.trace) if progress else None
    with args.trace.open(encoding="utf-8") as lines:
        reader = TraceReader(lines, sys.stderr)
        report = asyncio.run(
            publish_paced(
                reader,
                settings.mqtt.host,
                settings.mqtt.port,
                speed=speed,
                client_id=f"smartlock-replay-{os.getpid()}",
                login=login_for(settings, "replay"),
                resend_s=settings.mqtt.resend_s,
                reconnect_wait_s=settings.mqtt.reconnect_wait_s,
                progress=progress,
                total=total,
            )
        )
    print(summary_line(report, reader.malformed))
    return 0 if report.acked == report.sent else 1
