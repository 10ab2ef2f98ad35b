"""`smartlock evaluate` (CONTRACT section 5): golden output, determinism, malformed lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def evaluate_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smartlock.cli.main", "evaluate", *args],
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
    )


def test_acceptance_trace_gives_exactly_the_golden_output() -> None:
    result = evaluate_cli(str(GOLDEN / "acceptance.jsonl"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / "acceptance.expected.jsonl").read_text(encoding="utf-8")
    assert "evaluated 1461 messages" in result.stderr


def test_golden_output_covers_every_alert_type_and_both_verdicts() -> None:
    lines = [json.loads(x) for x in (GOLDEN / "acceptance.expected.jsonl").read_text().splitlines()]
    alerts = {x["payload"]["type"] for x in lines if x["topic"].startswith("monitoring/alerts/")}
    assert alerts == {
        "route_deviation",
        "route_rejoined",
        "seal_breach",
        "unauthorized_stop",
        "signal_lost",
        "implausible_jump",
        "overdue",
        "low_battery",
        "unknown_lock",
    }
    verdicts = {
        x["payload"]["lock_id"]: x["payload"]["verdict"]
        for x in lines
        if x["topic"].endswith("/verdicts")
    }
    assert verdicts == {
        "LK-01": "release",
        "LK-02": "inspect",
        "LK-03": "inspect",
        "LK-04": "release",
        "LK-05": "release",
        "LK-06": "release",
        "LK-07": "release",
        "LK-08": "inspect",
        "LK-09": "inspect",
        "LK-10": "release",
    }


def test_the_shipped_trace_is_what_the_builder_makes() -> None:
    from tests.golden.build_acceptance import build

    rebuilt = "".join(
        json.dumps({"topic": t, "payload": p}, ensure_ascii=False) + "\n" for t, p in build()
    )
    assert rebuilt == (GOLDEN / "acceptance.jsonl").read_text(encoding="utf-8")


def test_same_input_gives_byte_identical_output() -> None:
    first = evaluate_cli(str(GOLDEN / "acceptance.jsonl"))
    second = evaluate_cli("-", stdin=(GOLDEN / "acceptance.jsonl").read_text(encoding="utf-8"))
    assert first.stdout == second.stdout and first.stdout


def test_malformed_lines_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    good = (GOLDEN / "acceptance.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    lines = [
        good[0],
        "{not json",
        json.dumps({"payload": {}}),
        "",
        json.dumps({"topic": "locks/X/telemetry", "payload": {"lock_id": "X"}}),
        *good[1:],
    ]
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    result = evaluate_cli(str(trace))
    assert result.returncode == 0
    err = result.stderr.splitlines()
    assert err[0].startswith("line 2: malformed: -: invalid_json: not JSON")
    assert err[1].startswith("line 3: malformed: -: invalid_line")
    assert err[2].startswith(
        "line 5: malformed: locks/X/telemetry: invalid_payload: seq: Field required"
    )
    assert "3 malformed lines" in err[-1]
    expected = evaluate_cli("-", stdin="\n".join(good) + "\n").stdout
    assert result.stdout == expected  # the rest was processed as if the bad lines were not there


def test_table_view_prints_alerts_and_verdicts() -> None:
    result = evaluate_cli(str(GOLDEN / "acceptance.jsonl"), "--table")
    assert result.returncode == 0
    assert "route_deviation" in result.stdout and "Gate verdicts" in result.stdout


def test_evaluate_on_a_missing_file_says_so_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = tmp_path / "no-such-trace.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "smartlock.cli.main", "evaluate", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"cannot read trace {missing}: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr
