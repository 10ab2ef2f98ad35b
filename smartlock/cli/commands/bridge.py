"""`smartlock bridge`: move inbound MQTT messages into Kafka (at-least-once)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from smartlock.adapters.membership import claim_name
from smartlock.cli.commands.common import add_server_args, settings_with_servers
from smartlock.stream.bridge import Bridge


def configure(parser: argparse.ArgumentParser) -> None:
    add_server_args(parser)
    parser.add_argument(
        "--name",
        default=None,
        help="bridge name; a restarted bridge of the same name resumes its MQTT session; "
        "default: the host name, or <host>-2, -3 ... when a live bridge on this host has it",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bridge %(levelname)s %(message)s")
    settings = settings_with_servers(args)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        name = claim_name(settings, "bridge", args.name)
        bridge = Bridge(settings, name)
        await bridge.run(stop)
        logging.info("bridge stopped: %s", bridge.stats)

    asyncio.run(main())
    return 0
