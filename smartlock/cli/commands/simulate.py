"""`smartlock simulate`: a fleet of smart locks, live over MQTT or written to a trace."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.mqtt import login_for
from smartlock.cli.commands.common import add_server_args, settings_with_servers
from smartlock.cli.commands.replay import parse_speed
from smartlock.contract.timestamps import parse_rfc3339
from smartlock.errors import ConfigError
from smartlock.runtime import load_geofences
from smartlock.services.intake.fields import DEFAULT_TZ, parse_local_time
from smartlock.simulators.fleet import DEFAULT_START, Fleet, FleetConfig, demo_preset, trace_line
from smartlock.simulators.publisher import publish_paced
from smartlock.simulators.scenarios import KINDS, load_scenarios, parse_scenario
from smartlock.simulators.trip import DeclaredTrip, declaration_trip

#: Preset fleets by name (`--preset`).
PRESETS = {"demo": demo_preset}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="start from a preset fleet: demo = the fleet of `smartlock demo` (300 trucks, seed 7, "
        "already on the road at 08:00, red and amber trips soon after); the other options apply "
        "on top, except --start and --spread",
    )
    parser.add_argument(
        "--trucks", type=int, default=None, help="road trucks (default 100, or the preset's)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="same seed, same messages (default 1, or the preset's)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME[:PCT%][:k=v,...]",
        help=f"repeatable; names: {', '.join(KINDS)}",
    )
    parser.add_argument(
        "--scenarios", type=Path, default=None, help="YAML file with a 'scenarios:' list"
    )
    parser.add_argument(
        "--rail-containers", type=int, default=0, help="also run one train with N containers"
    )
    parser.add_argument(
        "--spread", type=float, default=None, help="departures spread over MINUTES (default 60)"
    )
    parser.add_argument(
        "--start",
        default=None,
        help=f"first departure, RFC 3339 (default {DEFAULT_START:%Y-%m-%dT%H:%M:%SZ})",
    )
    parser.add_argument(
        "--sign", action="store_true", help="locks sign their messages (HMAC-SHA256, per-lock keys)"
    )
    parser.add_argument(
        "--keys-out", type=Path, default=None, help="write the lock keys as JSON {lock_id: key}"
    )
    parser.add_argument(
        "--trace", type=Path, default=None, help="write the trace to FILE (- for stdout); no broker"
    )
    parser.add_argument(
        "--speed", default="1", help="live: event time runs X times faster, or 'max' (default 1)"
    )
    parser.add_argument(
        "--declaration",
        default=None,
        metavar="FILE|REFERENCE",
        help="drive the trip of this declaration instead of a fleet: a file (a form from "
        "docs/examples, a TransitDeclaration or an intake record) or a reference looked up at the "
        "intake (with --declarant); its locks, corridor, origin, gate and departure",
    )
    parser.add_argument(
        "--declarant",
        default=None,
        help="with --declaration REFERENCE: the declarant identity whose API token (credentials "
        "store) reads it from the intake at intake.host:intake.port",
    )
    parser.add_argument(
        "--lock", default=None, help="with --declaration: drive only this lock (default: all)"
    )
    parser.add_argument(
        "--detour",
        action="store_true",
        help="with --declaration: leave the road 60 km out for twenty minutes, 2.5 km off",
    )
    add_server_args(parser)


def fleet_config(args: argparse.Namespace) -> FleetConfig:
    specs = [parse_scenario(s) for s in args.scenario]
    if args.scenarios is not None:
        specs += load_scenarios(args.scenarios)
    if any(s.kind.needs_signing for s in specs) and not args.sign:
        raise ConfigError(
            "the 'unsigned' scenario only means something with --sign (and the keys in the pipeline)"
        )
    if args.preset is not None:
        if args.start is not None or args.spread is not None:
            raise ConfigError(
                f"--preset {args.preset} sets its own departures: drop --start and --spread"
            )
        base = PRESETS[args.preset]()
    else:
        start = DEFAULT_START
        if args.start:
            try:
                start = parse_rfc3339(args.start)
            except ValueError:
                raise ConfigError(
                    f"--start {args.start!r} is not an RFC 3339 time like 2026-11-22T08:00:00Z"
                ) from None
        spread = args.spread if args.spread is not None else 60.0
        base = FleetConfig(trucks=100, seed=1, start=start, spread_min=spread)
    config = replace(
        base,
        trucks=args.trucks if args.trucks is not None else base.trucks,
        seed=args.seed if args.seed is not None else base.seed,
        scenarios=base.scenarios + tuple(specs),
        sign=args.sign,
        rail_containers=args.rail_containers,
    )
    if config.trucks < 0 or config.rail_containers < 0:
        raise ConfigError("--trucks and --rail-containers must not be negative")
    return config


def declared_trip(path: Path) -> DeclaredTrip:
    """The trip a declaration file describes (a form's local departure time is parsed here)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        decl = data.get("declaration", data) if isinstance(data, dict) else None
        if not isinstance(decl, dict):
            raise ValueError("not a JSON object")
        departure = None
        if "departure_ts" not in decl:
            parsed = parse_local_time("departure", decl.get("departure"), DEFAULT_TZ)
            if not isinstance(parsed, datetime):
                raise ValueError(parsed.message)
            departure = parsed
        return DeclaredTrip.from_declaration(decl, departure)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot drive the declaration in {path}: {exc}.") from None


def looked_up_trip(reference: str, declarant: str | None, settings: Any) -> DeclaredTrip:
    """The trip of a declaration read from the running intake with the declarant's token."""
    if not declarant:
        raise ConfigError(
            f"{reference} is not a file; to look it up at the intake give --declarant NAME."
        )
    identity = CredentialStore(settings.credentials_dir).find(declarant)
    if identity is None:
        raise ConfigError(f"no identity {declarant} in the credentials store.")
    url = f"http://{settings.intake.host}:{settings.intake.port}/declarations/{reference}"
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {identity.secret.get_secret_value()}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            record = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
        raise ConfigError(f"the intake answered {exc.code} for {reference}: {detail}") from None
    except OSError as exc:
        raise ConfigError(f"cannot reach the intake at {url}: {exc}.") from None
    try:
        return DeclaredTrip.from_declaration(record)
    except ValueError as exc:
        raise ConfigError(f"cannot drive {reference}: {exc}.") from None


def _run_declaration(args: argparse.Namespace, settings: Any) -> int:
    source = Path(args.declaration)
    trip = (
        declared_trip(source)
        if source.exists()
        else looked_up_trip(args.declaration.strip().upper(), args.declarant, settings)
    )
    if args.lock is not None and args.lock not in trip.lock_ids:
        print(f"note: lock {args.lock} is not bound by this declaration; the gate will say so.")
    # A real lock's seq never goes back, across trips too (CONTRACT section 6): live, the
    # seqs start at the wall clock in microseconds, above those of any earlier run, so the same
    # lock can be driven again (the README's loop reuses LK-0001); a trace starts at 1.
    first_seq = 1 if args.trace is not None else time.time_ns() // 1000
    try:
        messages = declaration_trip(
            trip, load_geofences(settings), args.detour, args.lock, first_seq=first_seq
        )
    except KeyError as exc:
        raise ConfigError(f"the declaration names {exc}, which is not in the geofences.") from None
    last = messages[-1][1]["ts"]
    what = f"{len(messages)} messages of {', '.join((args.lock,) if args.lock else trip.lock_ids)}"
    detour = " with a detour" if args.detour else ""
    if args.trace is not None:
        lines = "".join(trace_line(topic, payload) for topic, payload in messages)
        if str(args.trace) == "-":
            sys.stdout.write(lines)
        else:
            args.trace.write_text(lines, encoding="utf-8")
        print(f"Drove the declaration{detour}: {what} -> {args.trace}.", file=sys.stderr)
        return 0
    report = asyncio.run(
        publish_paced(
            messages,
            settings.mqtt.host,
            settings.mqtt.port,
            speed=parse_speed(args.speed),
            client_id=f"smartlock-simulate-{os.getpid()}",
            login=login_for(settings, "simulator"),
            resend_s=settings.mqtt.resend_s,
            reconnect_wait_s=settings.mqtt.reconnect_wait_s,
            progress=sys.stderr.isatty(),
        )
    )
    locks = (args.lock,) if args.lock else trip.lock_ids
    print(
        f"Drove the declaration{detour}: sealed at {trip.origin_site}, along {trip.corridor_id} "
        f"to {trip.destination_gate} (last fix {last}); {report.acked} of {report.sent} messages "
        "acknowledged."
    )
    if len(locks) == 1:
        container = (
            trip.containers[trip.lock_ids.index(locks[0])] if locks[0] in trip.lock_ids else "?"
        )
        print(
            f"At the gate: smartlock gate {trip.destination_gate} --plate {trip.plate} "
            f"--lock {locks[0]} --container {container}"
        )
    else:  # a train: the gate verifies it as a batch
        batch = {
            "vehicle_plate": trip.plate,
            "containers": [
                {"lock_id": lock, "container_no": container}
                for lock, container in zip(trip.lock_ids, trip.containers, strict=True)
            ],
        }
        print(f"At the gate: smartlock gate {trip.destination_gate} --batch train.json")
        print(f"  where train.json holds {json.dumps(batch, ensure_ascii=False)}")
    return 0 if report.acked == report.sent else 1


def run(args: argparse.Namespace) -> int:
    settings = settings_with_servers(args)
    if args.declaration is not None:
        return _run_declaration(args, settings)
    fleet = Fleet(fleet_config(args), load_geofences(settings))
    speed = parse_speed(args.speed)
    if args.keys_out is not None:
        args.keys_out.write_text(
            json.dumps(fleet.keys(), indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
    chosen = Counter(spec.name for spec in fleet.assigned.values())
    summary = ", ".join(f"{name} {n}" for name, n in sorted(chosen.items())) or "none"
    if args.trace is not None:
        if str(args.trace) == "-":
            count = fleet.write_trace(sys.stdout)
        else:
            with args.trace.open("w", encoding="utf-8") as out:
                count = fleet.write_trace(out)
        print(
            f"simulated {fleet.config.trucks} trucks (scenarios: {summary}): {count} messages -> {args.trace}",
            file=sys.stderr,
        )
        return 0
    messages = ((t, topic, payload) for t, topic, payload in fleet.messages())
    report = asyncio.run(
        publish_paced(
            messages,
            settings.mqtt.host,
            settings.mqtt.port,
            speed=speed,
            client_id=f"smartlock-simulate-{os.getpid()}",
            login=login_for(settings, "simulator"),
            resend_s=settings.mqtt.resend_s,
            reconnect_wait_s=settings.mqtt.reconnect_wait_s,
            progress=sys.stderr.isatty(),
        )
    )
    print(
        f"simulated {fleet.config.trucks} trucks (scenarios: {summary}): {report.sent} sent, {report.acked} acknowledged "
        f"in {report.seconds:.1f} s ({report.rate:.0f} msg/s)"
    )
    return 0 if report.acked == report.sent else 1
