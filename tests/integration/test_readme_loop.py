"""The README's hand-run loop, run as written: the commands of the "The closed loop" section's
loop block and train block, one by one in one bash session (variables carry over), with the
shipped examples, the project's own commands, curl and jq, on real servers with security on.

What the test adds, and nothing else: the servers, the bridge, the worker and the intake come
from fixtures (the README's first block starts the same with `smartlock stack up` and the three
commands); the intake's address `localhost:8080` becomes the fixture's port; identities the
README issues are revoked first if an earlier test of the session issued them (a new user's
store has none); before the gate's command the test waits until the worker has the trip's
last fix (a person typing the next command is slower than that), and it reads the declaration
again until the write-off notice has arrived.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.local.stack import free_ports
from tests.integration.procs import ROOT, Pipeline
from tests.integration.test_gate_loop import pipeline as pipeline  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
README_INTAKE = "localhost:8080"


def readme_blocks() -> list[str]:
    """The ```sh blocks of the README's section "The closed loop: from declaration to write-off"."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## The closed loop: from declaration to write-off")
    section = text[start : text.index("\n## ", start + 3)]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def commands(block: str) -> list[str]:
    """The block's commands: comment and blank lines dropped, continued lines joined."""
    out, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line + "\n"
        if not line.rstrip().endswith("\\"):
            out.append(current.rstrip("\n"))
            current = ""
    assert not current, f"a command of the README ends with a backslash: {current}"
    return out


class Shell:
    """One bash session: each command runs in it, its output and exit status are returned."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str]:
        marker = f"__done_{uuid.uuid4().hex}__"
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\nprintf '\\n{marker} %s\\n' $?\n")
        self.proc.stdin.flush()
        output, deadline = [], time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith(marker):
                return int(line.split()[1]), "".join(output).strip()
            output.append(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def intake(pipeline: Pipeline) -> Iterator[str]:  # noqa: F811
    """`smartlock intake` on a free port; yields its address (host:port)."""
    [port] = free_ports(1)
    pipeline.extra_env["SMARTLOCK_INTAKE__PORT"] = str(port)  # the commands find it too
    env = pipeline.env()
    log = open(pipeline.workdir / "intake.log", "ab")  # noqa: SIM115 - the child holds it
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartlock.cli.main", "intake"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/healthz", timeout=2):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, pipeline.log("intake")
            time.sleep(0.2)
    yield address
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture
def shell(pipeline: Pipeline, intake: str, tmp_path: Path) -> Iterator[Shell]:  # noqa: F811
    """A bash session like the reader's: the project's commands on the PATH, the settings of
    the test servers in the environment, a working directory with the repository's docs/."""
    work = tmp_path / "by-hand"
    work.mkdir()
    (work / "docs").symlink_to(ROOT / "docs")
    env = pipeline.env() | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    }
    session = Shell(work, env)
    yield session
    session.close()


def _fresh_identities(p: Pipeline, block: str) -> None:
    """Revokes the identities the block issues, if an earlier test of the session issued them."""
    store = CredentialStore(p.credentials_dir or p.workdir / "credentials")
    for _role, name in re.findall(r"smartlock credentials issue (\w+) ([\w.-]+)", block):
        if store.find(name) is not None:
            done = subprocess.run(
                [sys.executable, "-m", "smartlock.cli.main", "credentials", "revoke", name],
                env=p.env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr


def _wait_heard(p: Pipeline, locks: list[str], timeout: float = 60.0) -> None:
    """Until the worker has each lock's last fix (its last_ts stops moving)."""
    r, deadline = p.redis(), time.monotonic() + timeout
    keys = RedisKeys(p.prefix)
    last: list[str | None] = []
    while True:
        current = [r.hget(keys.trip(lock), "last_ts") for lock in locks]
        if None not in current and current == last:
            return
        last = current
        assert time.monotonic() < deadline, p.log("worker-1")
        time.sleep(1.0)


def _run_block(p: Pipeline, shell: Shell, block: str, intake: str) -> dict[str, str]:
    """Runs the block's commands; returns the output of each, by command."""
    outputs: dict[str, str] = {}
    for command in commands(block):
        command = command.replace(README_INTAKE, intake)
        if command.startswith("smartlock gate "):
            locks = re.findall(r"--lock (\S+)", command) or [
                c["lock_id"]
                for c in json.loads((ROOT / "docs" / "examples" / "train.json").read_text())[
                    "containers"
                ]
            ]
            _wait_heard(p, locks)
        status, output = shell.run(command)
        assert status == 0, f"{command}\n-> exit {status}:\n{output}"
        outputs[command] = output
    return outputs


def _is_get(command: str) -> bool:
    """A curl that reads a declaration (the README's look at the status)."""
    return command.startswith("curl ") and "-X POST" not in command and "/transfers" not in command


def _read_until_written_off(shell: Shell, command: str, first: str) -> dict:
    record, deadline = json.loads(first), time.monotonic() + 30
    while record["status"] != "written_off" and time.monotonic() < deadline:
        time.sleep(0.3)
        record = json.loads(shell.run(command)[1])
    return dict(record)


def test_the_readme_hand_run_loop_ends_with_the_declaration_written_off(
    pipeline: Pipeline,  # noqa: F811
    intake: str,
    shell: Shell,
) -> None:
    p = pipeline
    servers, loop, train = readme_blocks()
    assert "smartlock stack up" in servers and "smartlock intake" in servers
    _fresh_identities(p, loop + train)
    out = _run_block(p, shell, loop, intake)

    accepted = json.loads(next(o for c, o in out.items() if "-d @form.json" in c))
    reference = accepted["reference"]
    assert accepted["status"] == "accepted" and accepted["fee"]["total"] == "0.50"
    bound = json.loads(next(o for c, o in out.items() if "/bind" in c))
    assert (bound["status"], bound["vehicle_plate"]) == ("bound", "浙G01345")
    approved = json.loads(next(o for c, o in out.items() if "/approve" in c))
    assert approved["approval"]["office"] == "yiwu-office"
    assert approved["approval"]["seals"] == [
        {"lock_id": "LK-0001", "container_no": "CSQU3054383", "seal_no": "YW-2611-000123"}
    ]
    inbox = json.loads(next(o for c, o in out.items() if "/transfers?gate=beilun-gate" in c))
    [row] = [r for r in inbox["transfers"] if r["transfer"]["reference"] == reference]
    assert row["status"] == "bound" and row["transfer"]["approving_office"] == "yiwu-office"
    assert row["transfer"]["seals"] == approved["approval"]["seals"]
    driven = next(o for c, o in out.items() if c.startswith("smartlock simulate"))
    assert driven.splitlines()[-1] == (
        "At the gate: smartlock gate beilun-gate --plate 浙G01345 --lock LK-0001 "
        "--container CSQU3054383"
    )
    gate = next(o for c, o in out.items() if c.startswith("smartlock gate"))
    assert gate.startswith(f"RELEASE → fast lane: declaration {reference} written off"), gate
    [(look, first)] = [(c, o) for c, o in out.items() if _is_get(c)]
    record = _read_until_written_off(shell, look, first)
    assert record["status"] == "written_off", record
    [container] = record["containers"]
    assert (container["lock_id"], container["gate_id"]) == ("LK-0001", "beilun-gate")
    assert [e["event"] for e in record["history"]] == [
        "submitted",
        "bound",
        "approved",
        "written_off",
    ]

    # The train: the rail example, the shipped batch file, three containers written off.
    out = _run_block(p, shell, train, intake)
    batch = next(o for c, o in out.items() if c.startswith("smartlock gate"))
    assert "3 containers released and written off, 0 sent to inspection" in batch, batch
    driven = next(o for c, o in out.items() if c.startswith("smartlock simulate"))
    assert "At the gate: smartlock gate beilun-rail-gate --batch train.json" in driven
    shipped = json.loads((ROOT / "docs" / "examples" / "train.json").read_text(encoding="utf-8"))
    assert json.loads(driven.split("where train.json holds ", 1)[1]) == shipped
    approved = json.loads(next(o for c, o in out.items() if "/approve" in c))
    assert approved["approval"]["transfer_topic"] == "customs/transfers/beilun-rail-gate"
    assert approved["approval"]["seals"] == [
        c | {"seal_no": c["lock_id"]} for c in shipped["containers"]
    ]
    [(look, first)] = [(c, o) for c, o in out.items() if _is_get(c)]
    record = _read_until_written_off(shell, look, first)
    assert record["status"] == "written_off", record
    assert [(c["lock_id"], c["gate_id"]) for c in record["containers"]] == [
        (c["lock_id"], "beilun-rail-gate") for c in shipped["containers"]
    ]
    assert [e["event"] for e in record["history"]][:3] == ["submitted", "bound", "approved"]
    status, listed = shell.run(
        f'curl -s "{intake}/declarations?status=written_off" -H "Authorization: Bearer $TOKEN"'
    )
    assert status == 0
    assert {d["reference"] for d in json.loads(listed)["declarations"]} == {
        reference,
        record["reference"],
    }
