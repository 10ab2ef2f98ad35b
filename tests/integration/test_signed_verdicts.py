"""Signed verdicts on real Mosquitto and Redis: the gate acts only on a verdict signed with its
own key that answers its own arrival; a forged or unsigned one, whether it comes over MQTT or
is written into the Redis verdict stream, is shown as forged and never releases a truck."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.mqtt import MqttClient
from smartlock.contract.codec import sign
from smartlock.services.gate.client import GateClient, make_arrival
from smartlock.services.gate.queue import FallbackQueue
from smartlock.settings import Settings, load_settings
from tests.servers import Endpoint, admit

pytestmark = pytest.mark.integration


def settings_for(mqtt: Endpoint, redis_server: Endpoint, prefix: str) -> Settings:
    return load_settings(
        mqtt={"host": mqtt.host, "port": mqtt.port},
        redis={"url": redis_server.url, "prefix": prefix},
        credentials={"dir": mqtt.credentials_dir},
    )


def verdict_for(arrival: dict[str, Any], verdict: str = "release") -> dict[str, Any]:
    return {
        "gate_id": arrival["gate_id"],
        "declaration_id": "DCL-X",
        "lock_id": arrival["lock_id"],
        "ts": arrival["ts"],
        "verdict": verdict,
        "reasons": [],
    }


def answer_with(
    mqtt: Endpoint, verdicts: list[dict[str, Any]], delay: float = 0.2
) -> threading.Thread:
    """Publishes ``verdicts`` on the gate's topic shortly, as the worker's account would: the
    broker's ACL lets only the pipeline publish there, so this stands for a compromised or
    misconfigured publisher."""

    def run() -> None:
        time.sleep(delay)
        client = MqttClient(mqtt.host, mqtt.port, "forger", login=mqtt.login("worker"))
        client.connect()
        try:
            messages = [
                (f"gates/{v['gate_id']}/verdicts", json.dumps(v).encode(), False) for v in verdicts
            ]
            asyncio.run(client.publish_all(messages))
        finally:
            client.disconnect()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_gate_shows_a_forged_or_unsigned_release_as_forged_and_sends_to_inspection(
    mqtt_server: Endpoint,
    redis_server: Endpoint,
    credentials: CredentialStore,
    tmp_path: Path,
    unique: str,
) -> None:
    gate_id = f"gate-{unique}"
    gate = admit(credentials, mqtt_server, "gate", gate_id)
    other = admit(credentials, mqtt_server, "gate", f"other-{unique}")
    assert gate.key is not None and other.key is not None
    # The forger connects and logs in after the arrival; 5 s leaves room for a loaded machine
    # (CI saw 1.5 s pass with nothing received). The gate still ends in manual inspection.
    client = GateClient(
        gate_id, settings_for(mqtt_server, redis_server, unique), FallbackQueue(tmp_path / "q"), 5.0
    )
    assert client.connect()
    try:
        arrival = make_arrival(gate_id, "浙G01345", f"LK-{unique}", "CSQU3054383")
        unsigned = verdict_for(arrival)
        wrong_key = verdict_for(arrival) | {
            "sig": sign(verdict_for(arrival), other.key.get_secret_value())
        }
        tampered = verdict_for(arrival, "inspect")
        tampered["sig"] = sign(tampered, gate.key.get_secret_value())
        tampered["verdict"] = "release"  # signed as inspect, turned into a release on the way
        thread = answer_with(mqtt_server, [unsigned, wrong_key, tampered])
        outcome = client.arrive(arrival)
        thread.join()
        assert outcome.manual and outcome.verdict is None  # no verdict: manual inspection
        assert [f["verdict"] for f in outcome.forged] == ["release", "release", "release"]
        # The genuine one, signed with this gate's key, is taken.
        second = make_arrival(
            gate_id, "浙G01345", f"LK-{unique}", "CSQU3054383", "2026-11-24T03:00:00Z"
        )
        genuine = verdict_for(second)
        genuine["sig"] = sign(genuine, gate.key.get_secret_value())
        thread = answer_with(mqtt_server, [genuine])
        outcome = client.arrive(second)
        thread.join()
        assert outcome.verdict == genuine and outcome.forged == []
    finally:
        client.close()


def test_reconciliation_trusts_only_signed_verdicts_from_redis(
    mqtt_server: Endpoint,
    redis_server: Endpoint,
    credentials: CredentialStore,
    tmp_path: Path,
    unique: str,
) -> None:
    gate_id = f"gate-{unique}"
    gate = admit(credentials, mqtt_server, "gate", gate_id)
    assert gate.key is not None
    client = GateClient(
        gate_id, settings_for(mqtt_server, redis_server, unique), FallbackQueue(tmp_path / "q"), 0.5
    )
    assert client.connect()
    r = redis_server.client()
    try:
        arrival = make_arrival(gate_id, "浙G01345", f"LK-{unique}", "CSQU3054383")
        assert client.arrive(arrival).manual  # no pipeline: queued for reconciliation
        # Someone who can write the verdict stream records a release the pipeline never made.
        r.xadd(f"{unique}:verdicts", {"json": json.dumps(verdict_for(arrival))})
        forged = verdict_for(arrival) | {"sig": "0" * 64}
        r.xadd(f"{unique}:verdicts", {"json": json.dumps(forged)})
        assert client.reconcile(wait_s=1.0) == []
        assert len(client.queue.pending()) == 1  # still waiting for a real verdict
        genuine = verdict_for(arrival, "inspect") | {"reasons": ["seal was opened"]}
        genuine["sig"] = sign(genuine, gate.key.get_secret_value())
        r.xadd(f"{unique}:verdicts", {"json": json.dumps(genuine)})
        [settled] = client.reconcile(wait_s=1.0)
        assert settled["verdict"] == genuine and client.queue.pending() == []
    finally:
        client.close()
        r.close()
