"""`smartlock demo` starts the console beside the pipeline, says where it is, and leaves nothing behind."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import smartlock.local.demo as demo
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.local.stack import Ports, stack_status
from smartlock.local.stack.health import free_ports
from smartlock.simulators.fleet import DEMO_START, Fleet, demo_preset
from tests.integration.procs import ROOT

pytestmark = pytest.mark.integration


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_the_demo_starts_the_console_prints_its_url_and_stops_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Free ports, never the defaults (a developer's own servers may be on those).
    mqtt, redis_port, kafka, console_port = free_ports(4)
    monkeypatch.setattr(demo, "_ports", lambda: Ports(mqtt, redis_port, kafka))
    monkeypatch.setattr(demo, "CONSOLE_PORT", console_port)
    run_dir = tmp_path / ".run" / "demo"
    out = io.StringIO()
    seen: dict[str, Any] = {}

    def watch() -> None:
        sign_in = run_dir / "console-sign-in.txt"
        deadline = time.monotonic() + 120
        while not sign_in.exists() or "console: http" not in out.getvalue():
            if time.monotonic() > deadline:
                return
            time.sleep(0.3)
        time.sleep(1)
        seen["mode"] = stat.S_IMODE(sign_in.stat().st_mode)
        seen["roles"] = [line.split()[0] for line in sign_in.read_text().splitlines()]
        url = out.getvalue().split("console: ", 1)[1].split()[0]
        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(url)
        except urllib.error.HTTPError as exc:  # no session: sent to sign in
            seen["root"] = (exc.code, exc.headers["Location"])
        seen["login"] = urllib.request.urlopen(url + "login").status
        env = dict(os.environ) | {"SMARTLOCK_RUN_DIR": str(tmp_path / ".run")}
        seen["status"] = subprocess.run(
            [sys.executable, "-m", "smartlock.cli.main", "stack", "status"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    geo = Geofences.load(default_geofence_dir())
    demo.run_demo(
        lambda: Fleet(demo_preset(30, seed=3), geo).message_list(),
        run_dir=run_dir,
        duration=12,
        speed=60,
        paced_from=DEMO_START.timestamp(),
        console=Console(file=out, width=200),
    )
    watcher.join(30)
    assert seen.get("mode") == 0o600 and seen.get("roles") == ["operator", "observer"], seen
    assert seen["root"][0] == 302 and seen["root"][1].startswith("/login"), seen
    assert seen["login"] == 200
    status = seen["status"]
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"in {run_dir}" in status.stdout and status.stdout.count("answering") >= 3, status.stdout
    secret = (run_dir / "console-sign-in.txt").read_text().split()[2]
    assert secret not in out.getvalue()  # the secrets are in the file only
    assert not any(s.running for s in stack_status(run_dir))  # nothing left behind
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{console_port}/login", timeout=2)
