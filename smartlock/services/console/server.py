"""Runs the console: configuration from the settings, then the aiohttp server."""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.kafka_auth import kafka_login
from smartlock.adapters.redis_auth import async_redis_client
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.services.console.app import NODE_MODULES, ConsoleConfig, create_app
from smartlock.services.console.auth import still_active, verify_identity
from smartlock.services.console.basemap import basemap
from smartlock.services.gate.resolution import publish_resolution
from smartlock.settings import Settings

log = logging.getLogger(__name__)

#: GeoJSON properties the browser needs (the rest, such as anchors and sources, stays on disk).
_KEEP = ("kind", "id", "name", "mode", "role", "buffer_m")


def geofence_collection(directory: Path) -> dict[str, Any]:
    """Every feature of the geofence files as one FeatureCollection, after the loader's checks."""
    Geofences.load(directory)  # refuses a broken file with the loader's message
    features = []
    for path in sorted(directory.glob("*.geojson")):
        for feature in json.loads(path.read_text(encoding="utf-8"))["features"]:
            props = {k: v for k, v in feature["properties"].items() if k in _KEEP}
            features.append(
                {"type": "Feature", "properties": props, "geometry": feature["geometry"]}
            )
    return {"type": "FeatureCollection", "features": features}


def console_config(settings: Settings) -> ConsoleConfig:
    """The console's configuration from the project settings."""
    directory = settings.geofence_dir or default_geofence_dir()
    kafka_host, _, kafka_port = settings.kafka.bootstrap.split(",")[0].rpartition(":")
    probe_targets = {
        "mqtt": (settings.mqtt.host, settings.mqtt.port),
        "kafka": (kafka_host, int(kafka_port)),
    }

    def publish(
        alert_id: str, declaration_id: str, lock_id: str, operator: str, note: str
    ) -> dict[str, Any]:
        return publish_resolution(settings, alert_id, declaration_id, lock_id, operator, note)

    store = CredentialStore(settings.credentials_dir)
    geofences = geofence_collection(directory)
    return ConsoleConfig(
        redis=partial(async_redis_client, settings, "console"),
        prefix=settings.redis.prefix,
        geofences=geofences,
        basemap=partial(basemap, NODE_MODULES / "world-atlas" / "land-10m.json", geofences),
        verify=partial(verify_identity, store),
        active=partial(still_active, store),
        publish_resolution=publish,
        probe=lambda: probe_targets,
        session_ttl_s=settings.console.session_ttl_s,
        secure_cookie=settings.console.secure_cookie,
        # The workers form one Faust consumer group named after the app id.
        kafka_lag=(settings.kafka.bootstrap, settings.kafka.app_id, settings.kafka.inbound_topic),
        kafka_login=kafka_login(settings, "console"),
    )


async def start_console(settings: Settings, host: str, port: int) -> web.AppRunner:
    """Starts the console on host:port; returns the runner (``await runner.cleanup()`` stops it)."""
    runner = web.AppRunner(create_app(console_config(settings)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def serve(settings: Settings, host: str, port: int) -> None:
    """Serves until interrupted."""

    async def main() -> None:
        runner = await start_console(settings, host, port)
        log.info("console on http://%s:%d/", host, port)
        print(f"smartlock console on http://{host}:{port}/", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
