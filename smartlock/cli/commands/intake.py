"""`smartlock intake`: run the declaration intake HTTP service until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from smartlock.cli.commands.common import add_server_args, settings_with_servers


def configure(parser: argparse.ArgumentParser) -> None:
    add_server_args(parser)
    parser.add_argument(
        "--host", default=None, help="listen address (default: setting intake.host, 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="listen port (default: setting intake.port, 8080)"
    )
    parser.add_argument(
        "--name",
        default=None,
        help="this intake's name; a restarted intake of the same name resumes its MQTT session "
        "and receives the write-off notices sent meanwhile (default: the host name, or "
        "<host>-2, -3 ... while another intake on this host has it)",
    )
    parser.add_argument(
        "--write-openapi",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the OpenAPI document to FILE and exit (e.g. docs/openapi.json)",
    )


def run(args: argparse.Namespace) -> int:
    if args.write_openapi is not None:
        from smartlock.services.intake.forms import write_openapi

        print(write_openapi(args.write_openapi))
        return 0
    from aiohttp import web

    from smartlock.services.intake.service import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s intake %(levelname)s %(message)s")
    settings = settings_with_servers(args)
    host = args.host or settings.intake.host
    port = args.port or settings.intake.port
    web.run_app(
        create_app(settings, name=args.name),
        host=host,
        port=port,
        print=lambda msg: logging.info("%s", msg),
    )
    return 0
