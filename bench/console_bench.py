"""The console under the 1,000-truck fleet: alert-to-screen latency, page responsiveness, 20 browsers.

Runs the demo headless (local servers, bridge, worker, console, the demo fleet) and, once the
console is up, a real Chromium signed in as an operator. Two phases of equal length:

1. one browser;
2. the same browser plus 19 more live connections (signed-in SSE clients reading every event).

Per phase it prints: the time from an alert reaching Redis (its stream entry id is Redis's
clock) to the page applying it (the page's own clock, same machine), median / p95 / max;
the page's long tasks (PerformanceObserver 'longtask': count, total and longest) and the
map's render time; and the worker's publish-to-alert latency (publishing the message that
raised an alert to receiving the alert on MQTT) over the same phase, to show whether 20
browsers raise it. Run: ``python bench/console_bench.py [--trucks 1000] [--phase 40]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import threading
import time
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
from smartlock.simulators.fleet import DEMO_START, Fleet, demo_preset

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by make setup; never downloaded
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
]
LONGTASKS = """
window.__longtasks = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__longtasks.push(e.duration); })
  .observe({ type: "longtask", buffered: true });
"""


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * q))], 1)


class Captured:
    """What the patched demo hands over: the console URL, the run dir, the terminal view."""

    url: str | None = None
    run_dir: Path | None = None
    view: Any = None
    redis_url: str | None = None


def patch_demo() -> None:
    start_console = demo.start_console

    def capture_console(procs: demo.DemoProcesses, run_dir: Path, console: Console) -> str:
        Captured.url = start_console(procs, run_dir, console)
        Captured.run_dir = run_dir
        Captured.redis_url = procs.env["SMARTLOCK_REDIS__URL"]
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
        async with aiohttp.ClientSession() as session:
            await session.post(
                f"{base}/login", data={"name": user, "password": secret}, allow_redirects=False
            )
            async with session.get(
                f"{base}/api/events", timeout=aiohttp.ClientTimeout(total=None)
            ) as resp:
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
    await asyncio.gather(*tasks, return_exceptions=True)


def measure(phase_s: float, results: dict[str, Any]) -> None:
    while Captured.url is None or Captured.view is None:
        time.sleep(0.5)
    base = Captured.url.rstrip("/")
    assert Captured.run_dir is not None and Captured.redis_url is not None
    creds = dict(
        line.split()[1:3]
        for line in (Captured.run_dir / "console-sign-in.txt").read_text().splitlines()
    )
    r = connect(Captured.redis_url, CredentialStore(Captured.run_dir / "credentials").get("admin"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
        context.add_init_script(LONGTASKS)
        page = context.new_page()
        page.goto(base + "/")
        page.fill("input[name=name]", demo.DEMO_OPERATOR)
        page.fill("input[name=password]", creds[demo.DEMO_OPERATOR])
        page.click("button[type=submit]")
        page.wait_for_function("window.smartlockConsole && window.smartlockConsole.snapshots > 0")
        for phase, extra in (("1 browser", 0), ("20 browsers", 19)):
            stop = threading.Event()
            counts = [0] * extra
            clients = None
            if extra:
                clients = threading.Thread(
                    target=asyncio.run,
                    args=(
                        sse_clients(
                            base, demo.DEMO_OBSERVER, creds[demo.DEMO_OBSERVER], extra, stop, counts
                        ),
                    ),
                    daemon=True,
                )
                clients.start()
            worker_from = len(Captured.view.state.latencies_ms)
            page.evaluate("window.__longtasks = []; window.smartlockConsole.alertShownAt.clear()")
            renders: list[float] = []
            end = time.monotonic() + phase_s
            while time.monotonic() < end:
                renders.append(page.evaluate("window.smartlockConsole.lastRenderMs || 0"))
                time.sleep(1.0)
            seen = page.evaluate("Object.fromEntries(window.smartlockConsole.alertShownAt)")
            longtasks = page.evaluate("window.__longtasks")
            stop.set()
            if clients is not None:
                clients.join(10)
            stored = {
                json.loads(f["json"])["alert_id"]: int(i.split("-")[0])
                for i, f in r.xrange(RedisKeys("smartlock").alerts)
            }
            latencies = [seen[a] - stored[a] for a in seen if seen[a] and a in stored]
            worker = list(Captured.view.state.latencies_ms)[worker_from:]
            results[phase] = {
                "alerts_on_screen": len(latencies),
                "redis_to_screen_ms": {
                    "median": pct(latencies, 0.5),
                    "p95": pct(latencies, 0.95),
                    "max": pct(latencies, 1.0),
                },
                "long_tasks": {
                    "count": len(longtasks),
                    "total_ms": round(sum(longtasks)),
                    "longest_ms": pct(longtasks, 1.0),
                },
                "map_render_ms": {"median": pct(renders, 0.5), "max": pct(renders, 1.0)},
                "worker_publish_to_alert_ms": {
                    "samples": len(worker),
                    "median": pct(worker, 0.5),
                    "p99": pct(worker, 0.99),
                },
                "extra_sse_events_read": sum(counts),
            }
        browser.close()
    results["done"] = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trucks", type=int, default=1000)
    parser.add_argument("--speed", type=float, default=30.0)
    parser.add_argument("--phase", type=float, default=40.0, help="seconds per phase")
    args = parser.parse_args()
    patch_demo()
    geo = Geofences.load(default_geofence_dir())
    results: dict[str, Any] = {}
    warmup = 30.0  # the catch-up burst of the first half hour of event time
    measurer = threading.Thread(
        target=lambda: (time.sleep(warmup), measure(args.phase, results)), daemon=True
    )
    measurer.start()
    with tempfile.TemporaryDirectory() as run_dir:
        demo.run_demo(
            lambda: Fleet(
                demo_preset(
                    args.trucks, 11, detour_pct=5, tamper_pct=5, stop_pct=3, signal_loss_pct=3
                ),
                geo,
            ).message_list(),
            run_dir=Path(run_dir),
            duration=warmup + 2 * args.phase + 60,
            speed=args.speed,
            paced_from=DEMO_START.timestamp(),
            console=Console(file=io.StringIO()),
        )
    measurer.join(5)
    print(
        json.dumps(
            {"trucks": args.trucks, "speed": args.speed, "phase_s": args.phase, **results}, indent=2
        )
    )
    if not results.get("done"):
        raise SystemExit("the measurement did not finish; see the demo logs")


if __name__ == "__main__":
    main()
