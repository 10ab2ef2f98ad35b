"""The `smartlock` command. Each subcommand lives in ``smartlock/cli/commands/<name>.py`` and
exposes ``configure(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from smartlock.errors import SmartlockError

#: name -> (module, one-line help). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": (
        "smartlock.cli.commands.evaluate",
        "run the detection core over a trace file, no broker",
    ),
    "schema": ("smartlock.cli.commands.schema", "write JSON Schemas and the AsyncAPI document"),
    "stack": (
        "smartlock.cli.commands.stack",
        "start, stop or check the local Mosquitto, Redis and Kafka servers",
    ),
    "bridge": ("smartlock.cli.commands.bridge", "move lock messages from MQTT into Kafka"),
    "worker": ("smartlock.cli.commands.worker", "run the Faust stream processor"),
    "demo": (
        "smartlock.cli.commands.demo",
        "local demo: stack, bridge, worker, simulated fleet, live view",
    ),
    "loop": (
        "smartlock.cli.commands.loop",
        "the closed loop on local servers: declare, bind, transit, gate, write-off",
    ),
    "simulate": (
        "smartlock.cli.commands.simulate",
        "simulate a fleet of smart locks (live or to a trace)",
    ),
    "record": ("smartlock.cli.commands.record", "record live MQTT traffic into a trace"),
    "replay": ("smartlock.cli.commands.replay", "republish a trace over MQTT"),
    "intake": ("smartlock.cli.commands.intake", "declaration intake HTTP service"),
    "fees": ("smartlock.cli.commands.fees", "estimate the fee of a declaration"),
    "form": (
        "smartlock.cli.commands.form",
        "print an example declaration form with its times moved to now",
    ),
    "gate": ("smartlock.cli.commands.gate", "gate-side client: publish arrivals, show verdicts"),
    "resolve": ("smartlock.cli.commands.resolve", "resolve an alert as an operator"),
    "console": (
        "smartlock.cli.commands.console",
        "the monitoring centre's web console: live map, alert desk, trips, gates",
    ),
    "credentials": (
        "smartlock.cli.commands.credentials",
        "issue, revoke or list the credentials of locks, gates, people and services",
    ),
}


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_) in COMMANDS.items():
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            found[name] = (module, help_)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="smartlock", description="Customs smart-lock transit monitoring"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    commands = _available()
    for name, (module, help_) in commands.items():
        child = sub.add_parser(name, help=help_, description=help_)
        if argv and argv[0] == name:
            importlib.import_module(module).configure(child)
    args = parser.parse_args(argv)
    module = importlib.import_module(commands[args.command][0])
    try:
        return int(module.run(args) or 0)
    except SmartlockError as exc:
        print(f"smartlock {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
