"""The console in a real browser (Debian's Chromium driven by Playwright) on a live pipeline.

A red alert raised by the worker shows on the map and the desk within a second of reaching
Redis; an operator acknowledges and resolves it from the page and the next gate arrival is
released; the trip view shows the track and its alerts and its replay stops at them; an
observer cannot resolve; nothing works without a session; the page needs nothing from
outside (every other origin is blocked by the browser context's routing). The wall-screen
and trip-view screenshots of the README are made here (``make screenshots``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.contract.models import format_ts
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.services.gate.client import GateClient, make_arrival
from smartlock.services.gate.queue import FallbackQueue
from smartlock.settings import load_settings
from smartlock.simulators.routes import CorridorRoute
from tests.builders import T0, Trip, merge
from tests.integration.console_browser import (
    ConsoleProcess,
    chromium,
    console_state,
    open_session,
    screenshot,
    sign_in,
)
from tests.integration.procs import Pipeline
from tests.integration.test_pipeline_live import publish as publish_in_loop

pytestmark = pytest.mark.integration
T = TypeVar("T")

GLYPHS_DIFFER = """([a, b]) => {
  const draw = (ch) => { const c = document.createElement("canvas"); c.width = c.height = 40;
    const g = c.getContext("2d"); g.font = "32px " + getComputedStyle(document.body).fontFamily;
    g.fillText(ch, 2, 32); return Array.from(g.getImageData(0, 0, 40, 40).data).join(","); };
  return draw(a) !== draw(b);
}"""

GEO = Geofences.load(default_geofence_dir())
BEILUN = CorridorRoute(GEO, "g1512-yiwu-beilun", "yiwu-origin", "beilun-gate")


@pytest.fixture(scope="module")
def live(
    mqtt_server: Any,
    redis_server: Any,
    kafka_server: Any,
    credentials: CredentialStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Pipeline, ConsoleProcess]]:
    workdir = tmp_path_factory.mktemp("console")
    p = Pipeline.on(
        mqtt_server,
        kafka_server.bootstrap,
        redis_server.url,
        workdir,
        credentials_dir=credentials.directory,  # the identities the test servers know
    )
    p.start("worker")
    p.start("bridge")
    console = ConsoleProcess(p, workdir, credentials)
    try:
        p.wait_worker_ready()
        console.start()
        yield p, console
    finally:
        console.stop()
        p.stop_all()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Runs fn in a thread: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def publish(mqtt: Any, messages: list[tuple[str, Any]]) -> None:
    off_loop(publish_in_loop, mqtt, messages)


#: Event time of the next trips: each test's trips start four hours (longer than a trip) after
#: the previous ones, so a trip never starts behind the pipeline's event-time clock (its
#: watermark), whatever ran first; all stay in the past (a future ts is refused).
_clock = [T0]


def next_start() -> datetime:
    _clock[0] += timedelta(hours=4)
    return _clock[0]


def detour_trip(lock: str, decl: str, plate: str) -> tuple[Trip, Trip]:
    """(the part before the detour, the detour and the rest of the road) of one truck."""
    before = Trip(lock, decl, plate=plate, container="CSQU3054383", route=BEILUN, t=next_start())
    before.declare().event("sealed", at=(0, 0)).drive(0, 60)
    after = Trip(
        lock, decl, plate=plate, container="CSQU3054383", route=BEILUN, t=before.t, seq=before.seq
    )
    for i, y in enumerate((700, 1500, 2500, 2500, 2500, 1500, 700, 50)):  # off the ramp and back
        after.fix(60 + 0.5 * (i + 1), y, dt=150)
    after.drive(64.5, BEILUN.length_km)
    return before, after


def wait_heard(p: Pipeline, trip: Trip, timeout: float = 60.0) -> None:
    last = next(payload["ts"] for _, payload in reversed(trip.messages) if "seq" in payload)
    r, deadline = p.redis(), time.monotonic() + timeout
    while r.hget(RedisKeys(p.prefix).trip(trip.lock_id), "last_ts") != last:
        assert time.monotonic() < deadline, p.log("worker-1")
        time.sleep(0.2)


def alert_entry(
    p: Pipeline, lock: str, type_: str, timeout: float = 30.0
) -> tuple[int, dict[str, Any]]:
    """(milliseconds when Redis stored it, payload) of the lock's alert of that type."""
    r, deadline = p.redis(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry_id, fields in r.xrange(RedisKeys(p.prefix).alerts):
            alert = json.loads(fields["json"])
            if alert["lock_id"] == lock and alert["type"] == type_:
                return int(entry_id.split("-")[0]), alert
        time.sleep(0.05)
    raise AssertionError(f"no {type_} alert for {lock}:\n{p.log('worker-1')}")


@pytest.fixture(scope="module")
def shown_trip(live: tuple[Pipeline, ConsoleProcess]) -> Trip:
    """A whole trip with a detour (its red alert left open), for the trip view and the observer."""
    p, _ = live
    before, after = detour_trip("LK-CON-VIEW", "DCL-CON-VIEW", "浙G20001")
    after.messages = before.messages + after.messages  # the whole trip
    publish(p.mqtt, after.messages)
    wait_heard(p, after)
    alert_entry(p, after.lock_id, "route_deviation")
    return after


def test_a_page_without_a_session_redirects_to_sign_in_and_the_api_refuses(
    live: tuple[Pipeline, ConsoleProcess], browser: Browser
) -> None:
    _, console = live
    s = open_session(browser, console.base)
    try:
        s.page.goto(console.base + "/trip/LK-1?wall")
        url = urlsplit(s.page.url)
        assert url.path == "/login" and parse_qs(url.query)["next"] == ["/trip/LK-1?wall"]
        for path in (
            "/api/events",
            "/api/trips/LK-1",
            "/api/geofences",
            "/static/console.js",
            "/vendor/leaflet/leaflet.js",
        ):
            status = s.context.request.get(console.base + path, max_redirects=0).status
            assert status in (401, 302), (path, status)
        refused = s.context.request.post(
            console.base + "/api/alerts/al-x/resolve", data={"note": "x"}
        )
        assert refused.status == 401
        s.page.fill("input[name=name]", console.operator[0])
        s.page.fill("input[name=password]", "wrong password")
        s.page.click("button[type=submit]")
        assert "/login?failed=1" in s.page.url
        s.page.wait_for_selector("#failed", state="visible", timeout=5000)
        assert s.context.cookies() == []
    finally:
        s.context.close()


def test_red_alert_on_map_and_desk_then_resolved_from_the_page_and_released(
    live: tuple[Pipeline, ConsoleProcess], browser: Browser, tmp_path: Path
) -> None:
    p, console = live
    before, after = detour_trip("LK-CON-RED", "DCL-CON-RED", "浙G20002")
    publish(p.mqtt, before.messages)
    wait_heard(p, before)
    s = open_session(browser, console.base)
    try:
        page = sign_in(s, console.base, console.operator)
        cookie = next(c for c in s.context.cookies() if c["name"] == "smartlock_console")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        page.click("#sound")  # sound on (browsers allow it after a click on the page)
        assert page.inner_text("#sound") == "sound on"
        flashes, beeps = console_state(page, "[S.flashes, S.beeps]")
        publish(p.mqtt, after.messages)
        stored_ms, alert = alert_entry(p, after.lock_id, "route_deviation")
        row = f"#alerts li[data-alert='{alert['alert_id']}']"
        page.wait_for_selector(row, timeout=5000)
        page.wait_for_function(
            f"window.smartlockConsole.trips.get('{after.lock_id}')?.colour === 'red'", timeout=5000
        )
        seen_ms = console_state(page, f"S.alertShownAt.get('{alert['alert_id']}')")
        latency_ms = seen_ms - stored_ms
        print(f"alert stored in Redis -> drawn on the page: {latency_ms} ms")
        # The one-second target is measured by bench/console_bench.py, not asserted here: a
        # loaded machine delays the page, and the 5 s waits above already bound it.
        assert latency_ms >= 0
        # On the map: drawn as a red truck (never hidden in a cluster); the screen flashed and beeped.
        page.wait_for_function(
            f"window.smartlockConsole.redDrawn && window.smartlockConsole.redDrawn.includes('{after.lock_id}')",
            timeout=2000,
        )
        assert console_state(page, "S.flashes") > flashes and console_state(page, "S.beeps") > beeps

        page.click(f"{row} button[data-act=ack]")
        page.wait_for_selector(f"{row} .status.acknowledged", timeout=5000)
        assert f"acknowledged by {console.operator[0]}" in page.inner_text(row)
        page.click(f"{row} button[data-act=resolve]")
        page.click(f"{row} button[type=submit]")  # without a note: the browser refuses the form
        assert page.evaluate(f"document.querySelector(\"{row} textarea\").matches(':invalid')")
        page.fill(f"{row} textarea", "   ")  # blanks only: refused by the page
        page.click(f"{row} button[type=submit]")
        assert page.inner_text(f"{row} .error") == "a note is required"
        assert p.redis().hget(RedisKeys(p.prefix).pending, alert["alert_id"]) is None
        page.fill(
            f"{row} textarea",
            "detour to the Fenghua toll plaza for a police check, confirmed by phone",
        )
        page.click(f"{row} button[type=submit]")
        page.select_option("#f-status", "")
        page.wait_for_selector(f"{row} .status.resolved", timeout=30000)
        assert f"resolved by {console.operator[0]}" in page.inner_text(row)

        p.mqtt.login("gate", "beilun-gate")  # the gate's own identity, admitted by the broker
        settings = load_settings(
            credentials={"dir": p.credentials_dir},
            mqtt={"host": p.mqtt_host, "port": p.mqtt_port, "client_id_prefix": p.prefix},
            redis={"url": p.redis_url, "prefix": p.prefix},
        )
        wait_heard(p, after)
        arrival = make_arrival(
            "beilun-gate",
            after.plate,
            after.lock_id,
            after.container,
            format_ts(after.t + timedelta(minutes=2)),
        )

        def at_the_gate() -> Any:
            gate = GateClient("beilun-gate", settings, FallbackQueue(tmp_path / "queue"), 2.0)
            assert gate.connect()
            try:
                return gate.arrive(arrival)
            finally:
                gate.close()

        outcome = off_loop(at_the_gate)
        assert outcome.verdict is not None and outcome.verdict["verdict"] == "release", (
            outcome.verdict
        )
        page.click("#tabs button[data-tab=gates]")  # the gate view shows the verdict as it happens
        page.wait_for_selector(
            f"#verdicts li:has-text('{after.declaration_id}') .release", timeout=5000
        )
        assert "redis" in page.inner_text("#health") and "worker 1" in page.inner_text("#health")
        page.wait_for_function(
            "document.querySelector('#loop tr:nth-child(3) td')?.textContent === '1'", timeout=5000
        )  # written off today: this release
        deadline = time.monotonic() + 10  # the audit entry is written beside the verdict
        while not (trail := p.redis().xrange(RedisKeys(p.prefix).audit(after.declaration_id))):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        trail = [json.loads(f["json"]) for _, f in trail]
        [deviation] = [a for a in trail[-1]["evidence"]["alerts"] if a["type"] == "route_deviation"]
        assert deviation["resolution"]["operator"] == console.operator[0]
        assert s.blocked == [] and s.errors == []
    finally:
        s.context.close()


def test_trip_view_shows_track_alerts_and_replay_stops_at_the_alert(
    live: tuple[Pipeline, ConsoleProcess], browser: Browser, shown_trip: Trip, tmp_path: Path
) -> None:
    _, console = live
    s = open_session(browser, console.base)
    try:
        page = sign_in(s, console.base, console.operator)
        # Click the red truck on the map: its trip opens.
        page.wait_for_function(
            f"(window.smartlockConsole.redDrawn || []).includes('{shown_trip.lock_id}')",
            timeout=10000,
        )
        x, y = console_state(
            page,
            f"(() => {{ const t = S.trips.get('{shown_trip.lock_id}'); "
            "const p = S.map.latLngToContainerPoint([t.lat, t.lon]); return [p.x, p.y]; })()",
        )
        box = page.locator("#map").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + x, box["y"] + y)
        page.wait_for_selector("#trip:not([hidden])", timeout=10000)
        assert page.url.endswith(f"/trip/{shown_trip.lock_id}")
        body = page.inner_text("#trip-body")
        fixes = sum(1 for topic, _ in shown_trip.messages if topic.endswith("/telemetry"))
        assert shown_trip.declaration_id in body and shown_trip.plate in body
        assert "polyester knitted scarves" in body and "g1512-yiwu-beilun" in body
        assert f"track: {fixes} fixes" in body
        assert "route_deviation" in page.inner_text("#trip-body .alerts")
        assert console_state(page, "S.trip.data.track.length") == fixes
        page.click("#replay-play")
        page.wait_for_selector("#replay-stop:not([hidden])", timeout=20000)
        assert "route_deviation" in page.inner_text("#replay-stop")
        stopped = console_state(page, "S.trip.data.track[S.trip.index][0]")
        alert_ts = console_state(
            page, "S.trip.data.alerts.find(a => a.type === 'route_deviation').ts"
        )
        assert stopped >= alert_ts and console_state(page, "S.trip.playing") is False
        page.click("#replay-play")  # resumes from the alert
        page.wait_for_timeout(300)
        page.click("#replay-play")
        assert console_state(page, "S.trip.index") > 0
        page.fill("#replay-slider", str(fixes - 1))  # back to now for the picture
        screenshot(page, "console-trip.png", tmp_path)
        assert s.blocked == [] and s.errors == []
    finally:
        s.context.close()


def test_an_observer_sees_the_desk_but_cannot_resolve_or_acknowledge(
    live: tuple[Pipeline, ConsoleProcess], browser: Browser, shown_trip: Trip
) -> None:
    p, console = live
    _, alert = alert_entry(p, shown_trip.lock_id, "route_deviation")
    s = open_session(browser, console.base)
    try:
        page = sign_in(s, console.base, console.observer)
        row = f"#alerts li[data-alert='{alert['alert_id']}']"
        page.wait_for_selector(row, timeout=10000)
        assert page.locator(f"{row} button").count() == 0
        for action, body in (("resolve", {"note": "looks fine"}), ("ack", {})):
            status = page.evaluate(
                """async ([id, action, body]) => (await fetch(`/api/alerts/${id}/${action}`,
                     {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})).status""",
                [alert["alert_id"], action, body],
            )
            assert status == 403, action
        assert p.redis().hget(RedisKeys(p.prefix).pending, alert["alert_id"]) is None
        assert console_state(page, f"S.alerts.get('{alert['alert_id']}').status") == "open"
    finally:
        s.context.close()


def test_the_page_loads_with_the_outside_network_blocked_and_the_wall_screen_renders_chinese(
    live: tuple[Pipeline, ConsoleProcess], browser: Browser, shown_trip: Trip, tmp_path: Path
) -> None:
    p, console = live
    start = next_start()
    fleet = [
        Trip(f"LK-CON-F{k:02d}", f"DCL-CON-F{k:02d}", plate=f"浙G3{k:04d}", route=BEILUN, t=start)
        .declare()
        .event("sealed", at=(0, 0))
        .drive(0, 10 + 4.5 * k, step_km=5, dt=200)
        for k in range(40)
    ]
    publish(p.mqtt, merge(*fleet))
    wait_heard(p, fleet[-1])
    s = open_session(browser, console.base, width=1920, height=1080)
    try:
        page = sign_in(s, console.base, console.observer, path="/?wall")
        assert page.evaluate("document.body.classList.contains('wall')")
        page.wait_for_function(
            "window.smartlockConsole.basemapDrawn === 1", timeout=30000
        )  # the coast
        drawn = console_state(page, "S.geofencesDrawn")
        assert drawn == len(GEO.corridors) + len(GEO.zones), drawn
        page.wait_for_function("document.querySelector('#n-red').textContent !== '0'")
        # Real glyphs, not "tofu": two different characters must draw differently.
        assert page.evaluate(GLYPHS_DIFFER, ["最", "新"]), (
            "no CJK font: run `make setup` (fonts-noto-cjk)"
        )
        assert "最新红色警报" in page.inner_text("#wall-side")
        assert shown_trip.plate in page.inner_text("#wall-alerts")
        page.wait_for_timeout(500)
        screenshot(page, "console-wall.png", tmp_path)
        assert s.blocked == [], s.blocked
        assert s.errors == [], s.errors
    finally:
        s.context.close()


def test_revoking_an_identity_ends_its_sessions(
    live: tuple[Pipeline, ConsoleProcess], browser: Browser, credentials: CredentialStore
) -> None:
    _, console = live
    visitor = credentials.ensure("observer", "visitor-1")
    s = open_session(browser, console.base)
    try:
        sign_in(s, console.base, (visitor.name, visitor.secret.get_secret_value()))
        assert s.context.request.get(console.base + "/api/me").status == 200
        credentials.revoke(visitor.name)
        assert s.context.request.get(console.base + "/api/me").status == 401
        s.page.reload()
        assert urlsplit(s.page.url).path == "/login"
    finally:
        s.context.close()


def test_gate_view_shows_round_trips_a_stopped_worker_the_lag_and_the_manual_fallback(
    live: tuple[Pipeline, ConsoleProcess], browser: Browser, tmp_path: Path
) -> None:
    """Gate round trips appear after arrivals; with the worker stopped the health view says it is
    down, the bridge's messages pile up as Kafka lag, and the gate's fall back to manual
    inspection appears as it happens; once the worker is back the fallback is reconciled."""
    p, console = live
    p.mqtt.login("gate", "beilun-gate")
    settings = load_settings(
        credentials={"dir": p.credentials_dir},
        mqtt={"host": p.mqtt_host, "port": p.mqtt_port, "client_id_prefix": p.prefix},
        redis={"url": p.redis_url, "prefix": p.prefix},
    )
    gate = GateClient("beilun-gate", settings, FallbackQueue(tmp_path / "queue"), 1.0)
    now = datetime.now(UTC).replace(microsecond=0)

    def arrive(k: int, timeout: float) -> Any:
        gate.timeout = timeout
        arrival = make_arrival(
            "beilun-gate",
            f"浙G4{k:04d}",
            f"LK-CON-GATE{k}",
            "CSQU3054383",
            format_ts(now + timedelta(seconds=k)),
        )
        assert gate.connect()
        try:
            return gate.arrive(arrival)
        finally:
            gate.close()

    s = open_session(browser, console.base)
    try:
        page = sign_in(s, console.base, console.operator)
        page.click("#tabs button[data-tab=gates]")
        # Worker and bridge beat in Redis: the health view shows them up.
        page.wait_for_selector("[data-member='worker:1'][data-up='true']", timeout=15000)
        page.wait_for_selector("[data-member='bridge:1'][data-up='true']", timeout=15000)
        page.wait_for_selector("#kafka-lag", timeout=15000)  # measured from the broker
        # Arrivals of unknown locks are judged (inspect, with reasons); a loaded machine may
        # take more than the gate's usual second, so these three wait longer.
        outcomes = [off_loop(arrive, k, 10.0) for k in (1, 2, 3)]
        assert all(o.verdict is not None and o.round_trip_s is not None for o in outcomes)
        page.wait_for_function(
            "Number(document.querySelector('#round-trip')?.dataset.count) >= 3", timeout=10000
        )
        assert "median" in page.inner_text("#round-trip") and "p95" in page.inner_text(
            "#round-trip"
        )
        page.wait_for_selector("#verdicts li:has-text('LK-CON-GATE3') .rtt", state="attached")
        assert p.log("worker-1").count(" ready: ") == 1  # the lag probe never joined the group

        p.stop("worker-1")
        page.wait_for_selector("[data-member='worker:1'][data-up='false']", timeout=40000)
        assert "DOWN" in page.inner_text("#health") or "STOPPED" in page.inner_text("#health")
        manual = off_loop(arrive, 4, 1.0)
        assert manual.manual and manual.published
        row = "#verdicts li.gate-manual[data-lock='LK-CON-GATE4']"
        page.wait_for_selector(row, timeout=10000)
        assert "no signed verdict within 1 s" in page.inner_text(row)
        page.wait_for_function(  # the health figures follow within a refresh (2 s)
            "Number(document.querySelector('#manual-count')?.dataset.count) >= 1", timeout=10000
        )
        # The bridge put the arrival in Kafka, and its ticks (one a second on each of the 4
        # partitions) pile up too; no worker takes them: the lag shows it.
        page.wait_for_function(
            "Number(document.querySelector('#kafka-lag')?.dataset.total) >= 12", timeout=15000
        )

        p.start("worker")
        p.wait_worker_ready()
        gate.timeout = 1.0
        assert gate.connect()
        try:
            settled = off_loop(gate.reconcile, 60.0)
        finally:
            gate.close()
        assert [e["arrival"]["lock_id"] for e in settled] == ["LK-CON-GATE4"]
        page.wait_for_selector("#verdicts li.gate-reconciled[data-lock='LK-CON-GATE4']")
        page.wait_for_selector("[data-member='worker:1'][data-up='true']", timeout=15000)
        # Caught up. Not exactly 0: ticks keep coming (4 a second) and the worker commits
        # every 0.5 s, so a sample can fall between a tick and its commit (CI saw 30 s of
        # samples without a 0 on a loaded machine). At most 2 s of ticks is caught up.
        page.wait_for_function(
            "Number(document.querySelector('#kafka-lag')?.dataset.total ?? 99) <= 8", timeout=30000
        )
        assert s.blocked == [] and s.errors == []
    finally:
        s.context.close()
        if "worker-1" not in p.procs:
            p.start("worker")
            p.wait_worker_ready()
