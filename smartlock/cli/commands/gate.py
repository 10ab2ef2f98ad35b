"""`smartlock gate GATE_ID`: the gate-side client.

One arrival (``--plate --lock --container``), a camera feed on stdin (``--watch``), a
train's containers (``--batch MANIFEST.json``), or the fallback queue (``--reconcile``).
Exit codes: 0 released, 1 inspect, 3 no verdict in time (manual inspection, queued).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from smartlock.cli.commands.common import add_server_args, settings_with_servers
from smartlock.errors import ConfigError
from smartlock.services.gate.client import GateClient, make_arrival, make_outcome
from smartlock.services.gate.queue import FallbackQueue
from smartlock.services.gate.report import (
    INSPECT,
    MANUAL,
    RELEASED,
    invalid_sentence,
    outcome_sentence,
    reconciled_sentence,
    show_outcome,
    undeclared_sentence,
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gate_id", help="the gate, e.g. beilun-gate")
    parser.add_argument("--plate", help="vehicle plate from the number-plate camera")
    parser.add_argument("--lock", help="lock id read at the gate")
    parser.add_argument("--container", help="container number read at the gate")
    parser.add_argument("--ts", default=None, help="arrival time, RFC 3339 UTC (default: now)")
    parser.add_argument(
        "--watch",
        action="store_true",
        help="read arrivals from stdin: 'PLATE LOCK CONTAINER' or JSON per line",
    )
    parser.add_argument(
        "--batch",
        type=Path,
        default=None,
        help='a train: JSON {"vehicle_plate": TRAIN, "containers": [{"lock_id", "container_no"}, ...]}',
    )
    parser.add_argument(
        "--reconcile", action="store_true", help="settle the fallback queue and exit"
    )
    parser.add_argument(
        "--timeout", type=float, default=1.0, help="seconds to wait for a verdict (default 1.0)"
    )
    parser.add_argument(
        "--queue-dir",
        type=Path,
        default=None,
        help="fallback queue (default: RUN_DIR/gate-GATE_ID)",
    )
    parser.add_argument(
        "--outcome",
        choices=("cleared", "seized"),
        default=None,
        help="record the outcome of a hand inspection of this container (with --officer, --note): "
        "cleared releases and writes it off, seized does not",
    )
    parser.add_argument(
        "--officer", default=None, help="with --outcome: the inspecting officer's id"
    )
    parser.add_argument("--note", default=None, help="with --outcome: what was found")
    add_server_args(parser)


def _manual(console: Console, client: GateClient, args: argparse.Namespace) -> int:
    if not (args.officer and args.note):
        raise ConfigError("--outcome needs --officer ID and --note TEXT (what was found).")
    client.check_officer(args.officer)
    try:
        outcome = make_outcome(
            args.gate_id,
            args.plate,
            args.lock,
            args.container,
            args.outcome,
            args.officer,
            args.note,
            args.ts,
        )
    except ValidationError as exc:
        raise ConfigError(invalid_sentence("outcome", exc)) from None
    done = client.record_outcome(outcome)
    if done.verdict is None:
        console.print(
            f"[bold yellow]The pipeline did not confirm the outcome for lock {args.lock} in time[/]"
            f"{'' if done.published else ' (the broker did not take it)'}. It is queued on disk "
            "and will be recorded when the pipeline is back (the next run of this gate, or "
            f"`smartlock gate {args.gate_id} --reconcile`); do not record it again."
        )
        return MANUAL
    console.print(outcome_sentence(done.verdict, outcome), markup=False)
    return RELEASED if done.verdict["verdict"] == "release" else INSPECT


def _reconcile(console: Console, client: GateClient, wait_s: float) -> int:
    settled = client.reconcile(wait_s)
    for entry in settled:
        console.print(reconciled_sentence(entry), markup=False)
    pending = client.queue.pending()
    outcomes = sum(1 for e in pending if "outcome" in e)
    parts = [
        _count(len(pending) - outcomes, "arrival") if len(pending) > outcomes else "",
        _count(outcomes, "officer's outcome") if outcomes else "",
    ]
    if pending:
        waiting = " and ".join(p for p in parts if p)
        verb, kept = ("is", "it stays") if len(pending) == 1 else ("are", "they stay")
        console.print(
            f"[yellow]{waiting} {verb} still waiting for the pipeline, which is not answering "
            f"yet; {kept} queued on disk.[/]"
        )
    return 0 if not pending else MANUAL


def _batch(console: Console, client: GateClient, gate_id: str, manifest: Path) -> int:
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"The batch file {manifest} cannot be read ({exc.strerror}).") from None
    except ValueError as exc:
        raise ConfigError(f"The batch file {manifest} is not JSON ({exc}).") from None
    shape = (
        'give {"vehicle_plate": TRAIN, "containers": [{"lock_id": ..., "container_no": ...}, '
        "...]}, like docs/examples/train.json"
    )
    if not isinstance(data, dict) or not isinstance(data.get("containers"), list):
        raise ConfigError(f"The batch file {manifest} has no list of containers; {shape}.")
    arrivals = []
    for i, c in enumerate(data["containers"]):
        missing = [k for k in ("lock_id", "container_no") if not isinstance(c, dict) or k not in c]
        if missing or "vehicle_plate" not in data:
            gap = " and ".join(f'"{k}"' for k in missing) or '"vehicle_plate"'
            raise ConfigError(
                f"The batch file {manifest} lacks {gap} (container {i + 1}); {shape}."
            )
        try:
            arrivals.append(
                make_arrival(
                    gate_id, data["vehicle_plate"], c["lock_id"], c["container_no"], data.get("ts")
                )
            )
        except ValidationError as exc:
            raise ConfigError(
                f"Container {i + 1} of {manifest}: {invalid_sentence('arrival', exc)}"
            ) from None
    outcomes = client.arrive_all(arrivals)
    table = Table(title=f"{gate_id}: train {data['vehicle_plate']}, {len(arrivals)} containers")
    for col in ("lock", "container", "verdict", "reasons"):
        table.add_column(col)
    for o in outcomes:
        verdict = o.verdict["verdict"] if o.verdict else "MANUAL INSPECTION (no verdict in time)"
        table.add_row(
            o.arrival["lock_id"],
            o.arrival["container_no"],
            verdict,
            "; ".join(o.verdict["reasons"]) if o.verdict else "",
        )
    console.print(table)
    for o in outcomes:
        if o.verdict is not None and o.verdict.get("declaration_id") is None:
            a = o.arrival
            console.print(undeclared_sentence(a["lock_id"], a["gate_id"]), style="bold red")
    released = sum(1 for o in outcomes if o.verdict and o.verdict["verdict"] == "release")
    manual = sum(1 for o in outcomes if o.verdict is None)
    console.print(
        f"{_count(released, 'container')} released and written off, "
        f"{len(outcomes) - released - manual} sent to inspection, {manual} to manual inspection "
        "without a verdict (queued)."
    )
    return MANUAL if manual else RELEASED if released == len(outcomes) else INSPECT


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


_FIELDS = ("vehicle_plate", "lock_id", "container_no")


def watched_arrival(gate_id: str, line: str) -> dict[str, Any]:
    """One camera line ('PLATE LOCK CONTAINER' or a JSON object) as a GateArrival.

    Raises:
        ValueError: the line is not an arrival; the message says why, as a sentence.
    """
    shown = json.dumps(line, ensure_ascii=False)
    fields: Any
    if line.startswith("{"):
        try:
            fields = json.loads(line)
        except ValueError:
            raise ValueError(f"The line {shown} is not a JSON object.") from None
        missing = [k for k in _FIELDS if not isinstance(fields, dict) or k not in fields]
        if missing:
            lacks = " and ".join(f'"{k}"' for k in missing)
            raise ValueError(f"The line {shown} lacks {lacks}.")
    else:
        words = line.split()
        if len(words) != 3:
            raise ValueError(
                f"The line {shown} has {len(words)} word{'s' if len(words) != 1 else ''}, "
                "not 3 (PLATE LOCK CONTAINER)."
            )
        fields = dict(zip(_FIELDS, words, strict=True))
    try:
        return make_arrival(
            gate_id, fields["vehicle_plate"], fields["lock_id"], fields["container_no"],
            fields.get("ts"),
        )  # fmt: skip
    except ValidationError as exc:
        raise ValueError(invalid_sentence("arrival", exc)) from None


def _watch(console: Console, client: GateClient, gate_id: str) -> int:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            arrival = watched_arrival(gate_id, line)
        except ValueError as exc:
            console.print(
                f"Unreadable arrival, skipped: {exc} Give 'PLATE LOCK CONTAINER' or a JSON "
                "object per line.",
                style="red",
                markup=False,
            )
            continue
        show_outcome(console, client.arrive(arrival), client.timeout)
        if client.queue.pending():
            _reconcile(console, client, 0.0)
    return 0


def run(args: argparse.Namespace) -> int:
    settings = settings_with_servers(args)
    console = Console(soft_wrap=True)  # a gate's log keeps each verdict on one line
    queue = FallbackQueue(args.queue_dir or settings.run_dir / f"gate-{args.gate_id}")
    client = GateClient(args.gate_id, settings, queue, args.timeout)
    client.connect()
    try:
        if args.reconcile:
            return _reconcile(console, client, wait_s=10.0)
        if queue.pending():  # the pipeline may be back: settle what waited, quickly
            _reconcile(console, client, wait_s=0.0)
        if args.batch is not None:
            return _batch(console, client, args.gate_id, args.batch)
        if args.watch:
            return _watch(console, client, args.gate_id)
        if not (args.plate and args.lock and args.container):
            raise ConfigError(
                "Give --plate, --lock and --container of the arrival (or --watch, --batch or "
                "--reconcile)."
            )
        if args.outcome is not None:
            return _manual(console, client, args)
        try:
            arrival = make_arrival(args.gate_id, args.plate, args.lock, args.container, args.ts)
        except ValidationError as exc:
            raise ConfigError(invalid_sentence("arrival", exc)) from None
        return show_outcome(console, client.arrive(arrival), args.timeout)
    finally:
        client.close()
