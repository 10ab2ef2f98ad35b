"""`smartlock schema`: write JSON Schemas and the AsyncAPI document."""

from __future__ import annotations

import argparse
from pathlib import Path

from smartlock.contract.schema import write_all


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("docs"), help="output directory (default docs/)"
    )


def run(args: argparse.Namespace) -> int:
    for path in write_all(args.out):
        print(path)
    return 0
