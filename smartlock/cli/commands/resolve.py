"""`smartlock resolve ALERT_ID`: an operator resolves an alert, with a name and a note.

Publishes an AlertResolution on ``monitoring/resolutions/{operator}`` as that operator (only
it may publish there), then watches the pipeline's state until the alert is closed or the
resolution is refused (exit 0, or 1 with the pipeline's reason; 3 when it did not answer in
time). A resolved red alert no longer blocks release; the audit trail keeps who, when and why.
"""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from smartlock.cli.commands.common import add_server_args, settings_with_servers
from smartlock.errors import ConfigError
from smartlock.services.gate.report import invalid_sentence
from smartlock.services.gate.resolution import confirm_resolution, publish_resolution


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("alert_id")
    parser.add_argument("--declaration", required=True, help="the alert's declaration id")
    parser.add_argument("--lock", required=True, help="the alert's lock id")
    parser.add_argument(
        "--operator",
        required=True,
        help="your operator id: the identity you publish as (credentials from the store)",
    )
    parser.add_argument("--note", required=True, help="why: what was checked")
    parser.add_argument("--ts", default=None, help="RFC 3339 UTC (default: now)")
    parser.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait for the pipeline's confirmation"
    )
    add_server_args(parser)


def run(args: argparse.Namespace) -> int:
    settings = settings_with_servers(args)
    try:
        resolution = publish_resolution(
            settings, args.alert_id, args.declaration, args.lock, args.operator, args.note, args.ts
        )
    except ValidationError as exc:
        raise ConfigError(invalid_sentence("resolution", exc)) from None
    what = (
        f"alert {args.alert_id} of declaration {args.declaration} (lock {args.lock}) by operator "
        f"{args.operator}"
    )
    confirmation = confirm_resolution(settings, resolution, args.operator, args.wait)
    if confirmation.accepted:
        print(f"Resolved {what}: {confirmation.detail}.")
        return 0
    if confirmation.accepted is False:
        print(f"NOT resolved {what}: the pipeline refused it ({confirmation.detail}).")
        return 1
    print(
        f"Published the resolution of {what}, but the pipeline has not confirmed it: "
        f"{confirmation.detail}. It waits on the broker and is processed when the pipeline runs; "
        "check with the console or run `smartlock resolve` again."
    )
    return 3
