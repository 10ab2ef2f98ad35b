"""`smartlock worker`: run the Faust stream processor."""

from __future__ import annotations

import argparse
import gc
import logging

from smartlock.adapters.membership import claim_name
from smartlock.cli.commands.common import add_server_args, settings_with_servers
from smartlock.runtime import build_detector


def configure(parser: argparse.ArgumentParser) -> None:
    add_server_args(parser)
    parser.add_argument(
        "--name",
        default=None,
        help="worker name (MQTT client id suffix, data dir, write-offs); default: the host name, "
        "or <host>-2, -3 ... when a live worker on this host has it",
    )
    parser.add_argument(
        "--web-port", type=int, default=None, help="Faust web port (default: disabled)"
    )
    parser.add_argument("--loglevel", default="warning")


def run(args: argparse.Namespace) -> int:
    from smartlock.stream.worker import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    settings = settings_with_servers(args)
    name = claim_name(settings, "worker", args.name)
    app = create_app(settings, build_detector(settings), name)
    app.conf.web_enabled = args.web_port is not None
    if args.web_port is not None:
        app.conf.web_port = args.web_port
    worker = app.Worker(loglevel=args.loglevel, quiet=True)
    # No progress spinner: Faust installs it as a DEBUG handler and sets the root logger to
    # DEBUG for it, so every debug line of aiokafka and Faust (several per record and per
    # request) was formatted and handled (py-spy: ~3% of the GIL for aiokafka's send alone).
    worker.spinner = None
    # The garbage collector: everything built so far (geofences, settings, Faust's app) is kept
    # for the process's life, so it is frozen out of the collector's scans; and a batch keeps
    # hundreds of records and states alive at once, which with the default first-generation
    # threshold (700 allocations) ran a collection every few records and a full one every few
    # batches. bench/worker_bench.py, same code alternating, load 1.2-2.2: default 1,714 and
    # 1,612 msg/s (485 and 606 us of CPU per message); frozen with this threshold 2,145 and
    # 2,032 msg/s (438 and 470 us).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    worker.execute_from_commandline()
    return 0
