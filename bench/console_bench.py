"""The console under the 1,000-truck fleet: publish-to-screen latency, page responsiveness, and
whether 20 live clients raise the worker's latency.

Runs the demo headless (local servers, bridge, worker, console, the demo fleet of 1,000
trucks, with more incidents than the demo's: 15 % detours and 15 % forced seals, so that each
phase has alerts to time) and, after a warm-up (the fleet's catch-up burst), five phases of
equal length in one run:

1. ``0 clients``: nothing connected to the console;
2. ``20 SSE clients``: 20 signed-in clients reading every server-sent event (what 20 browsers
   cost the console server; the clients run in this process, on the same machine);
3. ``0 clients again`` and 4. ``20 SSE clients again``: alternating, so that the fleet's and
   the machine's drift shows apart from the clients' effect;
5. ``1 browser``: a real Chromium (Debian's) signed in as an operator, the whole page live.

Per phase: the worker's publish-to-alert latency (publishing the message that raised an alert
to receiving the alert on MQTT; the demo's terminal view measures it), the CPU the worker and
the console used (share of one core, from /proc), the machine's load (/proc/loadavg). In the
browser phase also: publish-to-screen (the same publish time to the page drawing the alert on
its desk; page and bench read the same machine's wall clock; alerts raised by a timer, not a
message, have no publish time), Redis-to-screen (the alert's stream entry id is Redis's
clock), the page's long tasks (PerformanceObserver ``longtask``), its frame intervals
(requestAnimationFrame) and the map's render time. Run:
``python bench/console_bench.py [--trucks 1000] [--speed 5] [--phase 30] [--warmup 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import signal
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from playwright.sync_api import sync_playwright
from rich.console import Console

import smartlock.local.demo as demo
from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.redis_auth import connect
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.settings import RedisSettings
from smartlock.simulators.fleet import DEMO_START, Fleet, demo_preset

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by make setup; never downloaded
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
]
LOAD_PAGE_PROBES = """
window.__longtasks = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longtasks.push(e.duration); })
  .observe({ type: "longtask", buffered: true });
window.__frames = [];
(() => { let last = performance.now();
  const tick = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick); })();
"""


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (q=1: the maximum)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Captured:
    """What the patched demo hands over: the console URL, the run dir, the terminal view."""

    url: str | None = None
    run_dir: Path | None = None
    view: Any = None
    redis_url: str | None = None
    pids: dict[str, int] = {}  # noqa: RUF012 - role -> pid of the worker and the console


def patch_demo() -> None:
    start_console = demo.start_console

    def capture_console(procs: demo.DemoProcesses, run_dir: Path, console: Console) -> str:
        Captured.url = start_console(procs, run_dir, console)
        Captured.run_dir = run_dir
        Captured.pids = {role: procs.procs[role].pid for role in ("worker", "console")}
        # Only values that differ from the defaults are in the environment.
        Captured.redis_url = procs.env.get("SMARTLOCK_REDIS__URL", RedisSettings().url)
        return Captured.url

    class CapturedView(demo.LiveView):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            Captured.view = self

    demo.start_console = capture_console  # type: ignore[assignment]
    demo.LiveView = CapturedView  # type: ignore[misc]


async def sse_clients(
    base: str, user: str, secret: str, n: int, stop: threading.Event, counts: list[int]
) -> None:
    async def one(k: int) -> None:
        # unsafe=True: keep the session cookie of a numeric host (127.0.0.1), as browsers do.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            signed = await session.post(
                f"{base}/login", data={"name": user, "password": secret}, allow_redirects=False
            )
            assert signed.status == 302, f"SSE client {k}: sign-in answered {signed.status}"
            async with session.get(
                f"{base}/api/events", timeout=aiohttp.ClientTimeout(total=None)
            ) as resp:
                assert resp.status == 200, f"SSE client {k}: /api/events answered {resp.status}"
                while not stop.is_set():
                    line = await resp.content.readline()
                    if line.startswith(b"data: "):
                        json.loads(line[6:])  # a browser parses every event too
                        counts[k] += 1

    tasks = [asyncio.create_task(one(k)) for k in range(n)]
    while not stop.is_set():
        await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if outcome is not None and not isinstance(outcome, asyncio.CancelledError):
            print(f"an SSE client failed: {outcome!r}")


def worker_figures(view: Any, first: int) -> dict[str, Any]:
    with view.state.lock:
        worker = list(view.state.latencies_ms)[first:]
    return {
        "samples": len(worker),
        "median": pct(worker, 0.5),
        "p95": pct(worker, 0.95),
        "max": pct(worker, 1.0),
    }


def page_figures(
    page: Any, r: Any, publish_times: dict[tuple[str, str], float], wall_minus_mono: float
) -> dict[str, Any]:
    """What the page measured since its probes were last cleared."""
    shown = page.evaluate(
        "[...window.smartlockConsole.alertShownAt].map(([id, at]) => { "
        "const a = window.smartlockConsole.alerts.get(id) || {}; return [id, a.lock_id, a.ts, at]; })"
    )
    longtasks = page.evaluate("window.__longtasks")
    frames = page.evaluate("window.__frames")
    stored = {
        json.loads(f["json"])["alert_id"]: int(i.split("-")[0])
        for i, f in r.xrange(RedisKeys("smartlock").alerts)
    }
    redis_to_screen, publish_to_screen = [], []
    for alert_id, lock_id, ts, at in shown:
        if not at:
            continue
        if alert_id in stored:
            redis_to_screen.append(at - stored[alert_id])
        sent = publish_times.get((lock_id, ts))
        if sent is not None:
            publish_to_screen.append(at - (sent + wall_minus_mono) * 1000)
    return {
        "alerts_on_screen": len(shown),
        "publish_to_screen_ms": {
            "samples": len(publish_to_screen),
            "median": pct(publish_to_screen, 0.5),
            "p95": pct(publish_to_screen, 0.95),
            "max": pct(publish_to_screen, 1.0),
        },
        "redis_to_screen_ms": {
            "median": pct(redis_to_screen, 0.5),
            "p95": pct(redis_to_screen, 0.95),
            "max": pct(redis_to_screen, 1.0),
        },
        "long_tasks": {
            "count": len(longtasks),
            "total_ms": round(sum(longtasks)),
            "longest_ms": pct(longtasks, 1.0),
        },
        "frame_interval_ms": {
            "frames": len(frames),
            "median": pct(frames, 0.5),
            "p95": pct(frames, 0.95),
            "max": pct(frames, 1.0),
            "over_50ms": sum(1 for f in frames if f > 50),
        },
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phase:
    """Figures every phase has: worker latency, load, CPU of the worker and of the console."""

    def __init__(self, name: str) -> None:
        view, pids = Captured.view, Captured.pids
        self.name = name
        self.first = len(view.state.latencies_ms)
        self.load_before = loadavg()
        self.cpu = {role: cpu_seconds(pid) for role, pid in pids.items()}
        self.started = time.monotonic()

    def end(self, **more: Any) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        return {
            "phase": self.name,
            "load_before": self.load_before,
            "load_after": loadavg(),
            "worker_publish_to_alert_ms": worker_figures(Captured.view, self.first),
            "cpu_pct_of_one_core": {
                role: round(100 * (cpu_seconds(pid) - self.cpu[role]) / elapsed, 1)
                for role, pid in Captured.pids.items()
            },
            **more,
        }


def measure(phase_s: float, results: dict[str, Any]) -> None:
    """0 clients, 20 SSE clients, 0, 20 again (alternating, so drift shows), then the browser."""
    while Captured.url is None or Captured.view is None:
        time.sleep(0.5)
    base = Captured.url.rstrip("/")
    assert Captured.run_dir is not None and Captured.redis_url is not None
    view = Captured.view
    creds = dict(
        line.split()[1:3]
        for line in (Captured.run_dir / "console-sign-in.txt").read_text().splitlines()
        if len(line.split()) >= 3
    )
    r = connect(Captured.redis_url, CredentialStore(Captured.run_dir / "credentials").get("admin"))
    wall_minus_mono = (
        time.time() - time.monotonic()
    )  # the fleet stamps publish times with monotonic
    phases: list[dict[str, Any]] = []
    results["phases"] = phases

    for name, clients in (
        ("0 clients", 0),
        ("20 SSE clients", 20),
        ("0 clients again", 0),
        ("20 SSE clients again", 20),
    ):
        phase = Phase(name)
        stop = threading.Event()
        counts = [0] * clients
        thread = None
        if clients:
            thread = threading.Thread(
                target=asyncio.run,
                args=(
                    sse_clients(
                        base, demo.DEMO_OBSERVER, creds[demo.DEMO_OBSERVER], clients, stop, counts
                    ),
                ),
                daemon=True,
            )
            thread.start()
        time.sleep(phase_s)
        stop.set()
        if thread is not None:
            thread.join(10)
        phases.append(phase.end(events_read_by_the_sse_clients=sum(counts)))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
        context.add_init_script(LOAD_PAGE_PROBES)
        page = context.new_page()
        page.goto(base + "/")
        page.fill("input[name=name]", demo.DEMO_OPERATOR)
        page.fill("input[name=password]", creds[demo.DEMO_OPERATOR])
        page.click("button[type=submit]")
        page.wait_for_function("window.smartlockConsole && window.smartlockConsole.snapshots > 0")
        page.wait_for_timeout(3000)  # the snapshot drawn, the coast loaded
        page.evaluate(
            "window.__longtasks = []; window.__frames = []; "
            "window.smartlockConsole.alertShownAt.clear()"
        )
        phase = Phase("1 browser (Chromium, the whole page)")
        renders: list[float] = []
        end = time.monotonic() + phase_s
        while time.monotonic() < end:
            renders.append(page.evaluate("window.smartlockConsole.lastRenderMs || 0"))
            time.sleep(1.0)
        figures = page_figures(page, r, view.publish_times, wall_minus_mono)
        phases.append(
            phase.end(
                **figures,
                map_render_ms={"median": pct(renders, 0.5), "max": pct(renders, 1.0)},
            )
        )
        browser.close()
    results["done"] = True


def _cell(fig: dict[str, Any] | None) -> str:
    if not fig:
        return "-"
    return f"n={fig['samples']} p50 {fig['median']} p95 {fig['p95']} max {fig['max']}"


def table(phases: list[dict[str, Any]]) -> str:
    """The phases side by side: one line each."""
    lines = [
        f"{'phase':<36} {'load (1/5/15 min)':<17}  {'worker publish->alert ms':<36}  "
        f"{'publish->screen ms':<36}  {'long tasks':<18}  {'frames p95/max ms':<18}  "
        "CPU % of a core: worker, console"
    ]
    for ph in phases:
        lt, fr = ph.get("long_tasks"), ph.get("frame_interval_ms")
        tasks = f"{lt['count']}, longest {lt['longest_ms']}" if lt else "-"
        frames = f"{fr['p95']} / {fr['max']}" if fr else "-"
        lines.append(
            f"{ph['phase']:<36} {ph['load_before']:<17}  "
            f"{_cell(ph['worker_publish_to_alert_ms']):<36}  "
            f"{_cell(ph.get('publish_to_screen_ms')):<36}  {tasks:<18}  {frames:<18}  "
            f"{ph['cpu_pct_of_one_core']['worker']}, {ph['cpu_pct_of_one_core']['console']}"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} cores ({cpu}), shared"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trucks", type=int, default=1000)
    parser.add_argument(
        "--speed", type=float, default=5.0, help="event time runs this many times wall time"
    )
    parser.add_argument("--phase", type=float, default=30.0, help="seconds per phase")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds after the console is up, before phase 1"
    )
    args = parser.parse_args()
    patch_demo()
    geo = Geofences.load(default_geofence_dir())
    results: dict[str, Any] = {}

    def measure_then_stop() -> None:
        try:
            while Captured.url is None:
                time.sleep(0.5)
            time.sleep(args.warmup)  # the catch-up burst of the first half hour of event time
            measure(args.phase, results)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # the demo stops cleanly on it

    measurer = threading.Thread(target=measure_then_stop, daemon=True)
    measurer.start()
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as run_dir:
        demo.run_demo(
            lambda: Fleet(
                demo_preset(
                    args.trucks, 11, detour_pct=15, tamper_pct=15, stop_pct=3, signal_loss_pct=3
                ),
                geo,
            ).message_list(),
            run_dir=Path(run_dir),
            duration=None,  # until the measurement is done (or Ctrl-C)
            speed=args.speed,
            paced_from=DEMO_START.timestamp(),
            console=Console(file=io.StringIO()),
        )
    measurer.join(5)
    header = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "trucks": args.trucks,
        "speed": args.speed,
        "phase_s": args.phase,
    }
    print(json.dumps(header | results, indent=2))
    if results.get("phases"):
        print()
        print(table(results["phases"]))
    if not results.get("done"):
        raise SystemExit("the measurement did not finish; see the demo logs")


if __name__ == "__main__":
    main()
