"""Redis admits no anonymous client and each service account only what it needs (issue 10).

A forged verdict written into the Redis verdict stream once made ``smartlock gate --reconcile``
record a release: now only the worker's user may write the pipeline's keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.redis_auth import apply_identity, connect, redis_client
from smartlock.errors import ConfigError
from smartlock.local import stack
from smartlock.settings import load_settings
from tests.servers import Endpoint

pytestmark = pytest.mark.integration

VERDICT = {"json": json.dumps({"verdict": "release", "gate_id": "beilun-gate"})}


def test_an_anonymous_client_is_refused(redis_server: Endpoint) -> None:
    anonymous = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.xadd("smartlock:verdicts", VERDICT)
    finally:
        anonymous.close()


def test_a_wrong_password_is_refused(redis_server: Endpoint, credentials: CredentialStore) -> None:
    worker = credentials.get("worker")
    client = redis.Redis(
        host=redis_server.host, port=redis_server.port, username="worker", password="guess"
    )
    try:
        with pytest.raises(redis.AuthenticationError):
            client.ping()
    finally:
        client.close()
    assert worker.secret.get_secret_value() != "guess"


@pytest.mark.parametrize("account", ["console", "reader", "bridge", "intake", "gates"])
def test_only_the_worker_writes_the_verdict_stream(
    redis_server: Endpoint, unique: str, account: str
) -> None:
    keys = RedisKeys(f"r{unique}")
    client = redis_server.client(account)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.xadd(keys.verdicts, VERDICT)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.hset(keys.trip("LK-01"), mapping={"verdict": "release"})
    finally:
        client.close()
    worker = redis_server.client("worker")
    try:
        worker.xadd(keys.verdicts, VERDICT)
        assert worker.xlen(keys.verdicts) == 1
    finally:
        worker.close()


def test_each_service_writes_only_its_own_keys_and_no_one_runs_admin_commands(
    redis_server: Endpoint, unique: str
) -> None:
    keys = RedisKeys(f"r{unique}")
    console = redis_server.client("console")
    reader = redis_server.client("reader")
    intake = redis_server.client("intake")
    worker = redis_server.client("worker")
    try:
        console.hset(keys.acks, "A-1", "op")  # its own keys
        assert reader.hget(keys.acks, "A-1") == "op"  # everyone reads what it must
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.hset(keys.acks, "A-1", "forged")
        intake.hset(keys.intake("CCRN-1"), "status", "accepted")
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.hset(keys.intake("CCRN-1"), "status", "bound")  # not the intake's store
        with pytest.raises(redis.exceptions.NoPermissionError):
            intake.get(keys.declaration("DCL-1"))  # reads only trips
        assert intake.hgetall(keys.trip("LK-1")) == {}
        with pytest.raises(redis.exceptions.NoPermissionError):
            # the write-off reaches the intake as a notice on MQTT, not from the worker's record
            intake.hgetall(keys.writeoff("DCL-1"))
        for client in (console, reader, intake, worker):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.flushall()
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command("ACL", "LIST")
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command("CONFIG", "GET", "aclfile")
    finally:
        for client in (console, reader, intake, worker):
            client.close()


def test_no_password_in_a_url_and_clients_come_from_the_store(
    redis_server: Endpoint, credentials: CredentialStore
) -> None:
    settings = load_settings(
        redis={"url": redis_server.url}, credentials={"dir": credentials.directory}
    )
    client = redis_client(settings, "reader")
    try:
        assert client.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):  # logged in as reader
            client.set(RedisKeys("smartlock").verdicts, "forged")
    finally:
        client.close()
    secret = credentials.get("admin").secret.get_secret_value()
    with pytest.raises(ConfigError, match="must not carry"):
        connect(f"redis://admin:{secret}@{redis_server.address}/0", credentials.get("admin"))
    with pytest.raises(ConfigError, match="has no Redis user"):
        redis_client(settings, "simulator")


def test_a_rotated_or_revoked_account_takes_effect_without_restarting_redis(
    tmp_path: Path,
) -> None:
    store = CredentialStore(tmp_path / "credentials")
    (port,) = stack.free_ports(1)
    run_dir = tmp_path / "redis"
    stack.start_servers(run_dir, [stack.redis_server(run_dir, port, credentials=store)])
    url = f"redis://127.0.0.1:{port}/0"
    try:
        old = store.get("console")
        connected = connect(url, old)
        assert connected.ping()
        new = store.issue("console", rotate=True)
        assert apply_identity(url, store.get("admin"), new) == "Redis: console has its new password"
        with pytest.raises(redis.AuthenticationError):
            connect(url, old).ping()
        assert connect(url, new).ping()
        apply_identity(url, store.get("admin"), store.revoke("console"), revoked=True)
        with pytest.raises(redis.ConnectionError):  # its open connection was closed
            connected.ping()
        with pytest.raises(redis.AuthenticationError):
            connect(url, new).ping()
    finally:
        stack.stop_servers(run_dir)
