"""Readable tables of evaluate output (alerts and gate verdicts), for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from smartlock.contract.topics import ALERTS

_STYLE = {
    "red": "bold red",
    "amber": "yellow",
    "info": "cyan",
    "release": "green",
    "inspect": "bold yellow",
}


def print_table(lines: Iterable[str], console: Console | None = None) -> None:
    """Prints the alerts and verdicts among evaluate's JSON Lines output."""
    # Piped output has no terminal width; keep rows on one line instead of 80 columns.
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    alerts = Table(title="Alerts", show_lines=False)
    for col in ("event time", "type", "severity", "declaration", "lock", "detail"):
        alerts.add_column(col, overflow="fold")
    verdicts = Table(title="Gate verdicts")
    for col in ("event time", "gate", "declaration", "lock", "verdict", "reasons"):
        verdicts.add_column(col, overflow="fold")
    for line in lines:
        record = json.loads(line)
        topic, p = record["topic"], record["payload"]
        if ALERTS.match(topic):
            detail = ", ".join(
                f"{k}={v}" for k, v in p["detail"].items() if not isinstance(v, dict)
            )
            alerts.add_row(
                p["ts"],
                Text(p["type"], style=_STYLE[p["severity"]]),
                p["severity"],
                p["declaration_id"],
                p["lock_id"],
                detail,
            )
        elif topic.endswith("/verdicts"):
            verdicts.add_row(
                p["ts"],
                p["gate_id"],
                p["declaration_id"] or "-",
                p["lock_id"],
                Text(p["verdict"], style=_STYLE[p["verdict"]]),
                "; ".join(p["reasons"]),
            )
    console.print(alerts)
    console.print(verdicts)
