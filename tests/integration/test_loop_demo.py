"""`smartlock loop` (the README's closed loop) runs end to end on its own local servers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from smartlock.local.loop import TRUCKS, run_loop

pytestmark = pytest.mark.integration


def test_the_closed_loop_releases_writes_off_and_keeps_the_resolution(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_loop(tmp_path / "run", Console(file=out, width=200))
    text = out.getvalue()
    clean, detour = (lock for lock, *_ in TRUCKS)
    assert result["verdicts"][clean]["verdict"] == "release"
    assert result["verdicts"][detour]["verdict"] == "release"  # after the operator's resolution
    assert "INSPECT" in text and "route_deviation" in text and "resolved" in text
    assert "7. Declaration " in text and " written off: container " in text
    assert "{'" not in text and " True" not in text  # sentences, not a dict and a bool
    assert result["declarant_sees"] == {clean: "written_off", detour: "written_off"}
    assert "and reads: written off." in text
    assert text.count("The Yiwu office approved and sealed ") == 2
    assert (
        text.count("reached the Yiwu office on customs/writeoffs/yiwu-origin; the declarant") == 2
    )
    records = {
        lock: rec for per_decl in result["writeoffs"].values() for lock, rec in per_decl.items()
    }
    assert sorted(records) == sorted([clean, detour])
    [deviation] = [
        a for a in records[detour]["evidence"]["alerts"] if a["type"] == "route_deviation"
    ]
    assert deviation["resolution"]["operator"] == "wang-li"
    assert not list((tmp_path / "run" / "gate-queue" / "pending").glob("*.json"))
