"""`smartlock evaluate TRACE`: run the detection core over a trace file, no broker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smartlock.core.evaluate import evaluate
from smartlock.runtime import build_detector, settings_from_args


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "trace", type=Path, help="JSON Lines trace ({topic, payload} per line); - for stdin"
    )
    parser.add_argument(
        "--geofences", type=Path, default=None, help="geofence directory (default: shipped)"
    )
    parser.add_argument("--config", type=Path, default=None, help="TOML settings file")
    parser.add_argument(
        "--table",
        action="store_true",
        help="print alerts and verdicts as a readable table instead of JSON Lines",
    )
    parser.add_argument(
        "--records",
        action="store_true",
        help="also print the audit entries and write-offs the worker would persist "
        '({"record": "audit"|"writeoff", "payload": ...} lines; without the worker\'s '
        "decided_by and processed_at)",
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    detector = build_detector(settings)
    try:
        source = sys.stdin if str(args.trace) == "-" else open(args.trace, encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        print(
            f"smartlock evaluate: cannot read trace {args.trace}: {exc.strerror}", file=sys.stderr
        )
        return 2
    with source:
        if args.table:
            import io

            from smartlock.cli.report import print_table

            buffer = io.StringIO()
            summary = evaluate(detector, source, buffer, sys.stderr)
            print_table(buffer.getvalue().splitlines())
        else:
            summary = evaluate(detector, source, sys.stdout, sys.stderr, records=args.records)
    records = f", {summary.records} records" if args.records and not args.table else ""
    sys.stderr.write(
        f"evaluated {summary.messages} messages: {summary.outputs} outputs{records}, "
        f"{summary.rejected} rejected, {summary.malformed} malformed lines\n"
    )
    return 0
