"""A console process and a real browser for the browser tests.

The browser is Debian's Chromium (``/usr/bin/chromium``, installed by ``make setup``) driven
by Playwright's Python package; Playwright never downloads a browser here. Every browser
context routes its requests: the console's own origin goes through, anything else is
aborted and recorded, so a page that tried to reach the outside would show it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from smartlock.adapters.credentials import CredentialStore
from tests.integration.procs import ROOT, Pipeline
from tests.servers import admit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
OPERATOR_NAME = "wang.li"
OBSERVER_NAME = "wall-screen"
SCREENSHOTS = (
    Path(os.environ.get("SMARTLOCK_SCREENSHOT_DIR", ""))
    if os.environ.get("SMARTLOCK_SCREENSHOT_DIR")
    else None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ConsoleProcess:
    """``smartlock console`` on a free port, with an operator and an observer who may sign in."""

    pipeline: Pipeline
    workdir: Path
    store: CredentialStore
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    operator: tuple[str, str] = ("", "")
    observer: tuple[str, str] = ("", "")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConsoleProcess:
        for role, name in (("operator", OPERATOR_NAME), ("observer", OBSERVER_NAME)):
            # Issued and pushed to the running broker: the operator resolves over MQTT.
            identity = admit(self.store, self.pipeline.mqtt, role, name)
            setattr(self, role, (name, identity.secret.get_secret_value()))
        env = self.pipeline.env()  # SMARTLOCK_CREDENTIALS__DIR: the pipeline's store
        log = open(self.workdir / "console.log", "ab")  # noqa: SIM115 - the child process holds it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smartlock.cli.main", "console", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"console did not start:\n{self.log()}") from None
                time.sleep(0.2)

    def log(self) -> str:
        path = self.workdir / "console.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextmanager
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        "Chromium is missing: run `make setup` (apt-get install chromium)"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Session:
    """A browser context on the console, with what it tried to fetch from elsewhere."""

    context: BrowserContext
    page: Page
    blocked: list[str]
    errors: list[str]


def open_session(browser: Browser, base: str, width: int = 1600, height: int = 900) -> Session:
    # bypass_csp only lets Playwright evaluate its own probes; the page's CSP is tested apart.
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    blocked: list[str] = []

    def route(r: Route) -> None:
        url = r.request.url
        if url.startswith(base + "/") or url.startswith("data:"):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return Session(context, page, blocked, errors)


def sign_in(session: Session, base: str, who: tuple[str, str], path: str = "/") -> Page:
    page = session.page
    page.goto(base + path)
    page.fill("input[name=name]", who[0])
    page.fill("input[name=password]", who[1])
    page.click("button[type=submit]")
    page.wait_for_function(
        "window.smartlockConsole && window.smartlockConsole.snapshots > 0", timeout=15000
    )
    return page


def console_state(page: Page, expression: str) -> Any:
    return page.evaluate(f"(() => {{ const S = window.smartlockConsole; return {expression}; }})()")


def screenshot(page: Page, name: str, fallback_dir: Path) -> Path:
    """Saves a screenshot (to SMARTLOCK_SCREENSHOT_DIR when set: the README's images)."""
    directory = SCREENSHOTS or fallback_dir
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    page.screenshot(path=str(path))
    return path
