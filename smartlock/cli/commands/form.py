"""`smartlock form FILE --arrive-in MINUTES`: an example declaration form with fresh times.

The intake takes a declaration no earlier than 14 days before departure, and the driver binds
it at least 30 minutes before arrival; a shipped example (``docs/examples/*.json``) carries
fixed times. This prints the form with its arrival moved to ``MINUTES`` from now and its
departure moved by as much (the trip keeps its duration), in the form's own time zone.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smartlock.errors import ConfigError
from smartlock.services.intake.fields import DEFAULT_TZ, parse_local_time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "form", type=Path, help="a declaration form, e.g. docs/examples/road-form.json"
    )
    parser.add_argument(
        "--arrive-in",
        type=float,
        default=45.0,
        help="minutes from now to the arrival at the gate (default 45: bindable for 15 minutes)",
    )


def shifted(form: dict[str, Any], arrive_in_min: float, now: datetime) -> dict[str, Any]:
    """The form with ``arrival`` at now + ``arrive_in_min`` and ``departure`` as much earlier
    as it was before arrival, both to the minute, written with the arrival's zone.

    Raises:
        ConfigError: the form's times cannot be read.
    """
    times = {}
    for key in ("departure", "arrival"):
        parsed = parse_local_time(key, form.get(key), DEFAULT_TZ)
        if not isinstance(parsed, datetime):
            raise ConfigError(f"{parsed.message}.")
        times[key] = parsed
    arrival = (now + timedelta(minutes=arrive_in_min)).replace(second=0, microsecond=0)
    departure = arrival - (times["arrival"] - times["departure"])
    zone = str(form["arrival"]).split()[-1]
    offset = parse_local_time("arrival", f"2000-01-01 00:00 {zone}", DEFAULT_TZ)
    assert isinstance(offset, datetime)
    delta = datetime(2000, 1, 1) - offset.replace(tzinfo=None)  # the zone's offset from UTC

    def local(ts: datetime) -> str:
        return (ts.astimezone(UTC).replace(tzinfo=None) + delta).strftime("%Y-%m-%d %H:%M ") + zone

    return form | {"departure": local(departure), "arrival": local(arrival)}


def run(args: argparse.Namespace) -> int:
    try:
        form = json.loads(args.form.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the form {args.form}: {exc}.") from None
    if not isinstance(form, dict):
        raise ConfigError(f"{args.form} is not a declaration form (a JSON object).")
    out = shifted(form, args.arrive_in, datetime.now(UTC))
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0
