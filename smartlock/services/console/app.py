"""The console's web application (aiohttp): pages, the live event stream and the desk API.

Every page, asset and API needs a session except the sign-in page; the browser libraries
are served from the ``node_modules`` that ``make setup`` installs with ``npm ci`` from the
committed lock file, so the page never loads anything from outside.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis.asyncio as aioredis
from aiohttp import web

from smartlock.adapters.keys import RedisKeys
from smartlock.errors import ConfigError
from smartlock.services.console.auth import COOKIE, Principal, Sessions
from smartlock.services.console.desk import Desk, DeskError, ResolutionPublisher
from smartlock.services.console.feed import LiveFeed
from smartlock.services.console.health import Health, HealthProbe
from smartlock.services.console.lag import KafkaLag
from smartlock.services.console.trip import trip_detail

log = logging.getLogger(__name__)

WEB = Path(__file__).parent / "web"
STATIC = WEB / "static"
NODE_MODULES = WEB / "node_modules"
#: URL prefix -> directory of a vendored browser library.
VENDOR = {
    "leaflet": NODE_MODULES / "leaflet" / "dist",
    "supercluster": NODE_MODULES / "supercluster" / "dist",
}
HEARTBEAT_S = 15.0
HEALTH_EVERY_S = 2.0
#: Pages and assets that work without a session.
PUBLIC = ("/login", "/static/login.css", "/static/login.js")
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def check_vendor() -> None:
    """Raises ConfigError unless the browser libraries were installed by ``make setup``."""
    missing = [name for name, path in VENDOR.items() if not path.is_dir()]
    if missing:
        raise ConfigError(
            f"console browser libraries missing ({', '.join(missing)}): run `make setup` "
            f"(it runs `npm ci` in {WEB})"
        )


@dataclass
class ConsoleConfig:
    """What the console app needs from the settings."""

    #: Opens the console's Redis client (user ``console``: reads all, writes only its keys).
    redis: Callable[[], aioredis.Redis]
    prefix: str
    geofences: dict[str, Any]
    verify: Callable[[str, str], Principal | None]  # name, password -> who, or None
    publish_resolution: ResolutionPublisher
    probe: HealthProbe
    basemap: Callable[[], dict[str, Any]] = lambda: {"type": "FeatureCollection", "features": []}  # noqa: E731
    #: Whether a signed-in identity still holds its role (a revoked one loses its sessions).
    active: Callable[[Principal], bool] = lambda who: True  # noqa: E731
    session_ttl_s: int = 12 * 3600
    secure_cookie: bool = False
    #: (bootstrap, workers' consumer group, inbound topic) to measure the workers' Kafka lag.
    kafka_lag: tuple[str, str, str] | None = None
    #: SASL keyword arguments of the console's Kafka client (kafka_auth.kafka_login), if any.
    kafka_login: dict[str, Any] = field(default_factory=dict)


@dataclass
class Parts:
    """What the handlers use, made at start-up."""

    config: ConsoleConfig
    redis: aioredis.Redis
    keys: RedisKeys
    feed: LiveFeed
    sessions: Sessions
    desk: Desk
    health: Health
    lag: KafkaLag | None
    health_task: asyncio.Task[None]
    basemap_task: asyncio.Task[dict[str, Any]]
    throttle: SignInThrottle = field(default_factory=lambda: SignInThrottle())


class SignInThrottle:
    """Refuses sign-in from an address after ``limit`` failures within ``window_s`` seconds."""

    def __init__(self, limit: int = 10, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self.failures: dict[str, deque[float]] = {}

    def failed(self, client: str) -> None:
        self.failures.setdefault(client, deque(maxlen=self.limit)).append(time.monotonic())

    def blocked(self, client: str) -> bool:
        recent = self.failures.get(client)
        return (
            recent is not None
            and len(recent) == self.limit
            and time.monotonic() - recent[0] < self.window_s
        )


CONFIG = web.AppKey("config", ConsoleConfig)
PARTS = web.AppKey("parts", Parts)
PRINCIPAL = web.RequestKey("principal", Principal)


def create_app(config: ConsoleConfig) -> web.Application:
    """The console application; the feed starts and stops with it."""
    check_vendor()
    app = web.Application(
        middlewares=[_security_headers, _require_session], client_max_size=64 * 1024
    )
    app[CONFIG] = config
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)
    app.add_routes(
        [
            web.get("/login", _login_page),
            web.post("/login", _login),
            web.post("/logout", _logout),
            web.get("/", _index),
            web.get("/trip/{lock_id}", _index),
            web.get("/api/me", _me),
            web.get("/api/geofences", _geofences),
            web.get("/api/basemap", _basemap),
            web.get("/api/events", _events),
            web.get("/api/trips/{lock_id}", _trip),
            web.get("/api/health", _health),
            web.post("/api/alerts/{alert_id}/ack", _ack),
            web.post("/api/alerts/{alert_id}/resolve", _resolve),
        ]
    )
    app.router.add_static("/static/", STATIC)
    for name, path in VENDOR.items():
        if path.is_dir():
            app.router.add_static(f"/vendor/{name}/", path)
    return app


# ---------------------------------------------------------------------- life cycle


async def _startup(app: web.Application) -> None:
    config = app[CONFIG]
    client = config.redis()
    keys = RedisKeys(config.prefix)
    feed = LiveFeed(client, keys)
    await feed.start()
    lag = KafkaLag(*config.kafka_lag, login=config.kafka_login) if config.kafka_lag else None
    health = Health(client, keys, feed, config.probe, lag.measure if lag else None)
    app[PARTS] = Parts(
        config=config,
        redis=client,
        keys=keys,
        feed=feed,
        sessions=Sessions(client, keys.session, config.session_ttl_s),
        desk=Desk(client, keys, feed.model, config.publish_resolution),
        health=health,
        lag=lag,
        health_task=asyncio.create_task(health.run(HEALTH_EVERY_S)),
        basemap_task=asyncio.create_task(asyncio.to_thread(config.basemap)),  # a few seconds
    )


async def _cleanup(app: web.Application) -> None:
    parts = app[PARTS]
    parts.health_task.cancel()
    parts.basemap_task.cancel()
    if parts.lag is not None:
        await parts.lag.close()
    await parts.feed.stop()
    await parts.redis.aclose()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def _require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC:
        return await handler(request)
    parts = request.app[PARTS]
    principal = await parts.sessions.get(request.cookies.get(COOKIE))
    if principal is not None and not parts.config.active(principal):
        await parts.sessions.close(request.cookies.get(COOKIE))
        log.info("console: session of %s ended: its credentials were revoked", principal.name)
        principal = None
    if principal is None:
        if request.path.startswith("/api/"):
            return web.json_response({"error": "sign in first"}, status=401)
        raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='')}")
    if (
        request.method == "POST"
        and request.path.startswith("/api/")
        and request.content_type != "application/json"
    ):
        # A cross-site form cannot send JSON without a CORS preflight, which we never grant.
        return web.json_response({"error": "send JSON"}, status=415)
    request[PRINCIPAL] = principal
    return await handler(request)


# ---------------------------------------------------------------------- sign-in


async def _login_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "login.html")


def _safe_next(target: str) -> str:
    """Only local paths: no open redirect to another site."""
    return (
        target
        if target.startswith("/") and not target.startswith("//") and "\\" not in target
        else "/"
    )


async def _login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "/")))
    config = request.app[PARTS].config
    throttle = request.app[PARTS].throttle
    client = request.remote or "?"
    if throttle.blocked(client):
        return web.Response(status=429, text="too many failed sign-ins: wait a minute")
    principal = await asyncio.to_thread(config.verify, name, password)
    if principal is None:
        throttle.failed(client)
        log.info("console: failed sign-in for %r", name[:64])
        raise web.HTTPFound(f"/login?failed=1&next={quote(target, safe='')}")
    token = await request.app[PARTS].sessions.open(principal)
    response = web.HTTPFound(target)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=config.secure_cookie,
        max_age=config.session_ttl_s,
    )
    log.info("console: %s signed in as %s", principal.name, principal.role)
    raise response


async def _logout(request: web.Request) -> web.StreamResponse:
    await request.app[PARTS].sessions.close(request.cookies.get(COOKIE))
    response = web.HTTPFound("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


# ---------------------------------------------------------------------- pages and data


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


async def _me(request: web.Request) -> web.StreamResponse:
    who: Principal = request[PRINCIPAL]
    return web.json_response({"name": who.name, "role": who.role, "may_act": who.may_act})


async def _geofences(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[PARTS].config.geofences)


async def _basemap(request: web.Request) -> web.StreamResponse:
    land = await asyncio.shield(request.app[PARTS].basemap_task)
    return web.json_response(land, headers={"Cache-Control": "private, max-age=86400"})


async def _trip(request: web.Request) -> web.StreamResponse:
    parts = request.app[PARTS]
    detail = await trip_detail(
        parts.redis,
        parts.keys,
        parts.feed.model,
        request.match_info["lock_id"],
    )
    if detail is None:
        return web.json_response(
            {"error": f"no trip for lock {request.match_info['lock_id']}"}, status=404
        )
    return web.json_response(detail, dumps=_dumps)


async def _health(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[PARTS].health.latest, dumps=_dumps)


async def _ack(request: web.Request) -> web.StreamResponse:
    try:
        entry = await request.app[PARTS].desk.acknowledge(
            request[PRINCIPAL], request.match_info["alert_id"]
        )
    except DeskError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    return web.json_response(entry, dumps=_dumps)


async def _resolve(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": 'body must be JSON {"note": ...}'}, status=400)
    note = body.get("note") if isinstance(body, dict) else None
    if not isinstance(note, str):
        return web.json_response({"error": "note (text) is required"}, status=422)
    try:
        entry = await request.app[PARTS].desk.resolve(
            request[PRINCIPAL], request.match_info["alert_id"], note
        )
    except DeskError as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    except Exception as exc:  # the broker refused or did not answer: say so, nothing recorded
        log.warning(
            "console: resolution of %s not published: %s", request.match_info["alert_id"], exc
        )
        return web.json_response(
            {"error": f"the pipeline did not take the resolution: {exc}"}, status=502
        )
    return web.json_response(entry, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------- live events (SSE)


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a snapshot (or the missed updates), then every update as it comes."""
    feed = request.app[PARTS].feed
    health = request.app[PARTS].health
    last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b"retry: 1000\n\n")
    missed = feed.since(last_id)
    if missed is None:
        seq = feed.seq
        await _send(response, "snapshot", feed.snapshot_json(), feed.current_id())
    else:
        for update in missed:
            await _send(response, update.event, update.data, update.id)
        seq = feed.seq if not missed else int(missed[-1].id.rpartition("-")[2])
    await _send(response, "health", json.dumps(health.latest, ensure_ascii=False), None)
    health_seen = health.version
    beat = time.monotonic()
    while True:
        await feed.wait(seq, min(HEALTH_EVERY_S, HEARTBEAT_S))
        pending = feed.since(feed.current_id().rpartition("-")[0] + f"-{seq}")
        if pending is None:  # this browser fell behind the whole ring: start it over
            seq = feed.seq
            await _send(response, "snapshot", feed.snapshot_json(), feed.current_id())
        else:
            for update in pending:
                await _send(response, update.event, update.data, update.id)
                seq = int(update.id.rpartition("-")[2])
        if health.version != health_seen:
            health_seen = health.version
            await _send(response, "health", json.dumps(health.latest, ensure_ascii=False), None)
        if time.monotonic() - beat > HEARTBEAT_S:
            beat = time.monotonic()
            await response.write(b": keep-alive\n\n")


async def _send(response: web.StreamResponse, event: str, data: str, event_id: str | None) -> None:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id else "")
    await response.write((head + f"data: {data}\n\n").encode())
