"""The README's hand-run loop, step by step, with the shipped examples and the project's own
commands (credentials, form, intake, simulate, gate), on real servers: the declarant ends up
seeing its declaration written off."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smartlock.adapters.keys import RedisKeys
from smartlock.local.stack import free_ports
from tests.integration.procs import ROOT, Pipeline
from tests.integration.test_gate_loop import pipeline as pipeline  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

EXAMPLES = ROOT / "docs" / "examples"


def smartlock(p: Pipeline, *argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "smartlock.cli.main", *argv],
        cwd=ROOT,
        env=env or p.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"smartlock {' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def http(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """What the README does with curl."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body, ensure_ascii=False).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def intake(pipeline: Pipeline) -> Iterator[str]:  # noqa: F811
    [port] = free_ports(1)
    env = pipeline.env() | {"SMARTLOCK_INTAKE__PORT": str(port)}
    pipeline.extra_env["SMARTLOCK_INTAKE__PORT"] = str(port)  # the commands find it too
    log = open(pipeline.workdir / "intake.log", "ab")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartlock.cli.main", "intake"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, pipeline.log("intake")
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_the_readme_hand_run_loop_ends_with_the_declaration_written_off(
    pipeline: Pipeline,  # noqa: F811
    intake: str,
    tmp_path: Path,
) -> None:
    p = pipeline
    # 0. A token for the declarant.
    issued = smartlock(p, "credentials", "issue", "declarant", "acme-forwarding", "--print-secret")
    token = json.loads(issued.strip().splitlines()[-1])["secret"]
    # 1. The shipped example, its times moved to now; submitted.
    form_file = tmp_path / "form.json"
    form_file.write_text(
        smartlock(p, "form", str(EXAMPLES / "road-form.json"), "--arrive-in", "45"),
        encoding="utf-8",
    )
    form = json.loads(form_file.read_text(encoding="utf-8"))
    status, accepted = http(f"{intake}/declarations", token, form)
    assert status == 201, accepted
    reference = accepted["reference"]
    # 2. Bound with the plate: now the pipeline knows it.
    status, bound = http(
        f"{intake}/declarations/{reference}/bind", token, {"vehicle_plate": form["vehicle_plate"]}
    )
    assert (status, bound["status"]) == (200, "bound"), bound
    # 3. The lock is sealed at Yiwu and drives the G1512 (the simulator drives this declaration,
    #    read from the intake by its reference with the declarant's token).
    shown = smartlock(
        p,
        "simulate",
        "--declaration",
        reference,
        "--declarant",
        "acme-forwarding",
        "--speed",
        "max",
    )
    assert "Drove the declaration: sealed at yiwu-origin" in shown
    gate_line = shown.strip().splitlines()[-1]
    assert gate_line == (
        "At the gate: smartlock gate beilun-gate --plate 浙G01345 --lock LK-0001 "
        "--container CSQU3054383"
    )
    deadline = time.monotonic() + 60
    while http(f"{intake}/declarations/{reference}", token)[1]["status"] != "in_transit":
        assert time.monotonic() < deadline, p.log("worker-1")
        time.sleep(0.3)
    r = p.redis()
    last = None
    while True:  # until the worker has the lock's last fix (it arrived inside the gate zone)
        current = r.hget(RedisKeys(p.prefix).trip("LK-0001"), "last_ts")
        if current is not None and current == last:
            break
        last = current
        assert time.monotonic() < deadline, p.log("worker-1")
        time.sleep(1.0)
    # 4. At the gate: released within a second, written off.
    argv = gate_line.removeprefix("At the gate: smartlock ").split()
    released = smartlock(p, *argv, "--queue-dir", str(tmp_path / "queue"))
    assert "RELEASE" in released and f"declaration {reference} written off" in released
    # 5. The declarant sees it written off.
    deadline = time.monotonic() + 30
    while (record := http(f"{intake}/declarations/{reference}", token)[1])["status"] != (
        "written_off"
    ):
        assert time.monotonic() < deadline, record
        time.sleep(0.3)
    assert record["containers"][0]["gate_id"] == "beilun-gate"
    status, listed = http(f"{intake}/declarations?status=written_off", token)
    assert [d["reference"] for d in listed["declarations"]] == [reference]
