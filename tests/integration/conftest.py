"""Session-scoped real servers for the integration tests.

``mqtt_server``, ``redis_server`` and ``kafka_server`` each yield a
:class:`tests.servers.Endpoint` (``.host``, ``.port``, ``.url``; ``.bootstrap`` for
Kafka). Each server starts on first use and stops at the end of the session. Which
kind of servers run (local processes or Docker containers) is shown in the report
header and the terminal summary.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smartlock.adapters.credentials import CredentialStore
from smartlock.errors import InfrastructureError
from tests.builders import synthetic_collections
from tests.integration.procs import Pipeline
from tests.servers import Backend, Endpoint, describe_backend, make_backend


def pytest_report_header(config: pytest.Config) -> str:
    return f"servers: {describe_backend()}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    backend = getattr(terminalreporter.config, "_smartlock_servers", None)
    if backend is not None:
        terminalreporter.write_line(f"servers: {backend.description}")
    faults = sys.modules.get("tests.integration.test_faults")
    for line in faults.table_lines() if faults is not None else []:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def servers_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """Starts servers on demand and stops them all at the end of the session."""
    backend = make_backend(tmp_path_factory.mktemp("servers"))
    request.config._smartlock_servers = backend  # type: ignore[attr-defined]  # for the summary
    try:
        yield backend
    finally:
        backend.close()


def _start(backend: Backend, kind: str) -> Endpoint:
    try:
        return backend.start(kind)
    except InfrastructureError as exc:
        # Never skip: a missing server is a broken machine; the message says how to fix it.
        pytest.fail(f"cannot start the {kind} server: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def mqtt_server(servers_backend: Backend) -> Endpoint:
    """A Mosquitto broker with the pipeline's configuration (QoS 1 queues unbounded)."""
    return _start(servers_backend, "mqtt")


@pytest.fixture(scope="session")
def redis_server(servers_backend: Backend) -> Endpoint:
    """A Redis server."""
    return _start(servers_backend, "redis")


@pytest.fixture(scope="session")
def kafka_server(servers_backend: Backend) -> Endpoint:
    """A Kafka-compatible broker: Tansu locally, Apache Kafka (KRaft) in Docker."""
    return _start(servers_backend, "kafka")


@pytest.fixture(scope="session")
def credentials(servers_backend: Backend) -> CredentialStore:
    """The credentials store of the test servers (identities of locks, gates, people, services)."""
    return servers_backend.credentials


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, consumer groups and key prefixes."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def geofence_dir(tmp_path: Path) -> Path:
    """The synthetic corridor, zones and gates of tests/builders.py as a geofence folder."""
    d = tmp_path / "geofences"
    d.mkdir()
    for name, fc in synthetic_collections().items():
        (d / name).write_text(json.dumps(fc))
    return d


@pytest.fixture
def synthetic_pipeline(
    mqtt_server: Endpoint,
    redis_server: Endpoint,
    kafka_server: Endpoint,
    tmp_path: Path,
    geofence_dir: Path,
) -> Iterator[Pipeline]:
    """Bridge and worker processes (started by the test) on the synthetic geofences."""
    p = Pipeline.on(
        mqtt_server, kafka_server.bootstrap, redis_server.url, tmp_path, geofences=geofence_dir
    )
    yield p
    p.stop_all()
