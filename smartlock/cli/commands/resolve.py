"""`smartlock resolve ALERT_ID`: an operator resolves an alert, with a name and a note.

Publishes an AlertResolution on ``monitoring/resolutions``. A resolved red alert no longer
blocks release at the gate; the resolution stays in the trip's audit trail.
"""

from __future__ import annotations

import argparse

from smartlock.cli.commands.common import add_server_args, settings_with_servers
from smartlock.errors import ConfigError
from smartlock.services.gate.resolution import publish_resolution


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("alert_id")
    parser.add_argument("--declaration", required=True, help="the alert's declaration id")
    parser.add_argument("--lock", required=True, help="the alert's lock id")
    parser.add_argument("--operator", required=True, help="who resolves it")
    parser.add_argument("--note", required=True, help="why: what was checked")
    parser.add_argument("--ts", default=None, help="RFC 3339 UTC (default: now)")
    add_server_args(parser)


def run(args: argparse.Namespace) -> int:
    settings = settings_with_servers(args)
    try:
        publish_resolution(
            settings, args.alert_id, args.declaration, args.lock, args.operator, args.note, args.ts
        )
    except ValueError as exc:
        raise ConfigError(f"resolution: {exc}") from None
    print(
        f"resolved {args.alert_id} ({args.declaration}, {args.lock}) by {args.operator}: {args.note}"
    )
    return 0
