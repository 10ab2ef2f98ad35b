"""`smartlock console`: the monitoring centre's live map and alert desk, in the browser.

Reads the live state the worker keeps in Redis. Operators sign in to acknowledge and resolve
alerts, observers (wall screens) to watch, with the secret the credential store gave them
(``smartlock credentials issue operator NAME --print-secret``). ``?wall`` on any page gives
the wall-screen layout.
"""

from __future__ import annotations

import argparse
import logging

from smartlock.cli.commands.common import add_server_args, settings_with_servers


def configure(parser: argparse.ArgumentParser) -> None:
    add_server_args(parser)
    parser.add_argument(
        "--host", default=None, help="listen address (default: setting console.host, 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="listen port (default: setting console.port, 8090)"
    )


def run(args: argparse.Namespace) -> int:
    from smartlock.services.console.server import serve

    settings = settings_with_servers(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s console %(levelname)s %(message)s")
    serve(settings, args.host or settings.console.host, args.port or settings.console.port)
    return 0
