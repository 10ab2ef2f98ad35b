"""`smartlock replay TRACE --speed X`: republish a trace over MQTT with its spacing scaled."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from pipeline.commands.common import add_server_args, settings_with_servers
from pipeline.errors import ConfigError, MessageError
from pipeline.evaluate import iter_trace
from simulators.commands.simulate import parse_speed
from simulators.publisher import Timed, event_time, publish_paced


class TraceReader:
    """Streams a trace's messages; malformed lines are reported on ``err`` with their number and skipped."""

    def __init__(self, lines: TextIO, err: TextIO) -> None:
        self.lines, self.err = lines, err
        self.malformed = 0

    def __iter__(self) -> Iterator[Timed]:
        for number, line in enumerate(self.lines, start=1):
            if not line.strip():
                continue
            try:
                [(_, topic, payload)] = list(iter_trace([line]))
            except MessageError as exc:
                self.malformed += 1
                self.err.write(f"line {number}: malformed: {exc.detail.removeprefix('line 1: ')}\n")
                continue
            if not isinstance(payload, dict | str):
                payload = str(payload)
            yield event_time(payload), topic, payload


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", type=Path, help="JSON Lines trace ({topic, payload} per line)")
    parser.add_argument("--speed", default="1", help="X times the original pace, or 'max' (default 1)")
    add_server_args(parser)


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def run(args: argparse.Namespace) -> int:
    settings = settings_with_servers(args)
    speed = parse_speed(args.speed)
    if not args.trace.is_file():
        raise ConfigError(f"trace {args.trace} not found")
    total = _count_lines(args.trace)
    with args.trace.open(encoding="utf-8") as lines:
        reader = TraceReader(lines, sys.stderr)
        report = asyncio.run(publish_paced(
            reader, settings.mqtt.host, settings.mqtt.port, speed=speed,
            client_id=f"smartlock-replay-{os.getpid()}", progress=sys.stderr.isatty(), total=total,
        ))
    skipped = f", {reader.malformed} malformed lines skipped" if reader.malformed else ""
    print(f"replayed {report.sent} messages: {report.sent} sent, {report.acked} acknowledged "
          f"in {report.seconds:.1f} s ({report.rate:.0f} msg/s){skipped}")
    return 0 if report.acked == report.sent else 1
