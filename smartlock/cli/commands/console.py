"""`smartlock console`: the monitoring centre's live map and alert desk, in the browser.

Reads the live state the worker keeps in Redis; operators sign in to acknowledge and
resolve alerts (published as their resolutions), observers to watch. ``?wall`` on any page
gives the wall-screen layout.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from smartlock.cli.commands.common import add_server_args, settings_with_servers
from smartlock.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    add_server_args(parser)
    parser.add_argument(
        "--host", default=None, help="listen address (default: setting console.host, 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="listen port (default: setting console.port, 8090)"
    )
    parser.add_argument(
        "--add-identity",
        metavar="NAME",
        default=None,
        help="add an operator or observer who may sign in (password from stdin or a prompt), then exit",
    )
    parser.add_argument(
        "--role",
        choices=("operator", "observer"),
        default="operator",
        help="role of --add-identity (default operator)",
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_with_servers(args)
    if args.add_identity:
        from smartlock.services.console.identities import add_identity

        path = settings.console.identities_file
        if path is None:
            raise ConfigError(
                "set console.identities_file (SMARTLOCK_CONSOLE__IDENTITIES_FILE) first"
            )
        password = (
            sys.stdin.readline().rstrip("\n")
            if not sys.stdin.isatty()
            else getpass.getpass("password: ")
        )
        if len(password) < 8:
            raise ConfigError("the password must have at least 8 characters")
        add_identity(path, args.add_identity, args.role, password)
        print(f"{args.role} {args.add_identity} may sign in (stored in {path})")
        return 0
    from smartlock.services.console.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s console %(levelname)s %(message)s")
    serve(settings, args.host or settings.console.host, args.port or settings.console.port)
    return 0
