"""Every hole of issue 10 on the real Mosquitto of the tests, each shown closed: the attack is
refused by the broker and changes nothing (CONTRACT section 6)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.mqtt import Login, MqttClient, Received
from smartlock.errors import InfrastructureError
from smartlock.local.stack import MQTT_MESSAGE_LIMIT
from tests.servers import Endpoint, admit

pytestmark = pytest.mark.integration


class Probe:
    """A raw paho client (no help from the project's adapter), as an attacker would use."""

    def __init__(
        self, mqtt: Endpoint, client_id: str, login: Login | None = None, tls: bool = False
    ):
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if login is not None:
            self.client.username_pw_set(login.username, login.password.get_secret_value())
        if tls:
            assert mqtt.ca_file is not None
            self.client.tls_set(ca_certs=str(mqtt.ca_file))
        self.connack: ReasonCode | None = None
        self.disconnects: list[str] = []
        self.acks: dict[int, str] = {}
        self.suback: list[str] = []
        self.received: list[tuple[str, bytes]] = []
        self._event = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.append(str(rc))
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, str(rc))
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, bytes(m.payload)))
        self.client.reconnect_delay_set(60, 60)  # a refused probe must not hammer the broker
        self.client.connect(mqtt.host, mqtt.tls_port if tls else mqtt.port)  # type: ignore[arg-type]
        self.client.loop_start()
        assert self._event.wait(10), "no CONNACK"

    def _on_connect(self, c: Any, u: Any, f: Any, rc: ReasonCode, p: Any) -> None:
        self.connack = rc
        self._event.set()

    def _on_subscribe(self, c: Any, u: Any, mid: int, codes: list[ReasonCode], p: Any) -> None:
        self.suback = [str(code) for code in codes]
        self._event.set()

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> str:
        """Publishes QoS 1 and returns the broker's answer ("Success", "Not authorized", ...).

        Mosquitto 2.0 answers a refused publish with its reason code and then drops the
        connection: use a fresh probe (:func:`attempt`) for every publish that may be refused.
        """
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        deadline = time.monotonic() + 10
        while info.mid not in self.acks and not self.disconnects and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.acks.get(info.mid, "no PUBACK: disconnected")

    def subscribe(self, topic: str) -> list[str]:
        self._event.clear()
        self.client.subscribe(topic, qos=1)
        assert self._event.wait(10), "no SUBACK"
        return self.suback

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def probe(
    mqtt: Endpoint, client_id: str, login: Login | None = None, tls: bool = False
) -> Iterator[Probe]:
    p = Probe(mqtt, client_id, login, tls)
    try:
        yield p
    finally:
        p.close()


def attempt(mqtt: Endpoint, login: Login, topic: str, payload: bytes, retain: bool = False) -> str:
    """One publish on a fresh connection as ``login``; the broker's answer."""
    with probe(mqtt, login.client_id(f"try-{uuid.uuid4().hex[:6]}"), login) as client:
        assert client.accepted
        return client.publish(topic, payload, retain)


def logged(store: CredentialStore, mqtt: Endpoint, role: str, name: str | None = None) -> Login:
    return Login.of(admit(store, mqtt, role, name))


@pytest.fixture
def watcher(mqtt_server: Endpoint) -> Iterator[Probe]:
    """The test harness's recorder, which may read every topic: proves what did (not) get through."""
    with probe(mqtt_server, f"watch-{uuid.uuid4().hex[:8]}", mqtt_server.login("recorder")) as w:
        assert w.subscribe("#") == ["Granted QoS 1"]
        yield w


def settle(watcher: Probe, topic: str, wait: float = 0.5) -> list[bytes]:
    time.sleep(wait)
    return [payload for t, payload in watcher.received if t == topic]


# --------------------------------------------------------------------------- authentication


def test_anonymous_and_wrong_password_connections_are_refused(
    mqtt_server: Endpoint, credentials: CredentialStore, unique: str
) -> None:
    with probe(mqtt_server, f"anon-{unique}") as anonymous:
        assert not anonymous.accepted and str(anonymous.connack) == "Not authorized"
    lock = admit(credentials, mqtt_server, "lock", f"LK-{unique}")
    wrong = Login(lock.name, type(lock.secret)("not-the-password"), True)
    with probe(mqtt_server, lock.name, wrong) as guess:
        assert not guess.accepted
    with probe(mqtt_server, f"anon-{unique}", tls=True) as anonymous_tls:
        assert not anonymous_tls.accepted
    with probe(mqtt_server, lock.name, Login.of(lock), tls=True) as device:  # TLS with the local CA
        assert device.accepted


def test_the_tls_listener_refuses_a_client_that_does_not_trust_its_ca(
    mqtt_server: Endpoint,
) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.tls_set()  # the system's CAs only
    with pytest.raises(OSError, match="certificate verify failed"):
        client.connect(mqtt_server.host, mqtt_server.tls_port)  # type: ignore[arg-type]


def test_a_revoked_lock_is_disconnected_and_refused_without_restarting_anything(
    mqtt_server: Endpoint, credentials: CredentialStore, unique: str
) -> None:
    from smartlock.adapters.broker_auth import push_identity

    lock = admit(credentials, mqtt_server, "lock", f"LK-{unique}")
    with probe(mqtt_server, lock.name, Login.of(lock)) as device:
        assert device.accepted
        revoked = credentials.revoke(lock.name)
        push_identity(
            mqtt_server.host, mqtt_server.port, credentials.get("admin"), revoked, revoked=True
        )
        deadline = time.monotonic() + 5
        while not device.disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        assert device.disconnects  # kicked at once ("Administrative action")
    with probe(mqtt_server, lock.name, Login.of(lock)) as again:
        assert not again.accepted


# --------------------------------------------------------------------------- publishing


def test_a_lock_cannot_publish_on_another_locks_topic(
    mqtt_server: Endpoint, credentials: CredentialStore, watcher: Probe, unique: str
) -> None:
    mine, other = f"LK-{unique}-a", f"LK-{unique}-b"
    login = logged(credentials, mqtt_server, "lock", mine)
    forged = b'{"forged": true}'
    assert attempt(mqtt_server, login, f"locks/{other}/telemetry", forged) == "Not authorized"
    assert attempt(mqtt_server, login, f"locks/{other}/events", forged) == "Not authorized"
    assert attempt(mqtt_server, login, f"locks/{mine}/telemetry", b'{"own": true}') == "Success"
    with probe(mqtt_server, mine, login) as lock:
        assert lock.subscribe("locks/#") == ["Not authorized"]  # a lock reads nothing
    assert settle(watcher, f"locks/{other}/telemetry") == []
    assert settle(watcher, f"locks/{mine}/telemetry", 0) == [b'{"own": true}']


def test_a_gate_cannot_publish_a_verdict_or_read_another_gates(
    mqtt_server: Endpoint, credentials: CredentialStore, watcher: Probe, unique: str
) -> None:
    gate = f"gate-{unique}"
    login = logged(credentials, mqtt_server, "gate", gate)
    forged = json.dumps({"gate_id": gate, "verdict": "release"}).encode()
    assert attempt(mqtt_server, login, f"gates/{gate}/verdicts", forged) == "Not authorized"
    assert attempt(mqtt_server, login, "gates/beilun-gate/arrivals", b"{}") == "Not authorized"
    with probe(mqtt_server, gate, login) as client:
        assert client.subscribe("gates/beilun-gate/verdicts") == ["Not authorized"]
        assert client.subscribe(f"gates/{gate}/verdicts") == ["Granted QoS 1"]
    assert settle(watcher, f"gates/{gate}/verdicts") == []


def test_only_the_intake_publishes_declarations(
    mqtt_server: Endpoint, credentials: CredentialStore, watcher: Probe, unique: str
) -> None:
    declaration = json.dumps({"declaration_id": f"DCL-{unique}"}).encode()
    for role, name in (
        ("lock", f"LK-{unique}"),
        ("gate", f"gate-{unique}"),
        ("operator", f"op-{unique}"),
    ):
        login = logged(credentials, mqtt_server, role, name)
        assert attempt(mqtt_server, login, "customs/declarations", declaration) == "Not authorized"
    intake = mqtt_server.login("intake")
    assert attempt(mqtt_server, intake, "customs/declarations", declaration) == "Success"
    assert settle(watcher, "customs/declarations").count(declaration) == 1


def test_only_an_officer_records_an_outcome_and_only_in_its_own_name(
    mqtt_server: Endpoint, credentials: CredentialStore, watcher: Probe, unique: str
) -> None:
    officer, other = f"officer-{unique}", f"officer2-{unique}"
    outcome = json.dumps({"officer": officer, "outcome": "cleared"}).encode()
    own = f"customs/outcomes/{officer}"
    gate = logged(credentials, mqtt_server, "gate", f"gate-{unique}")
    assert attempt(mqtt_server, gate, own, outcome) == "Not authorized"  # a gate cannot
    impostor = logged(credentials, mqtt_server, "officer", other)
    assert attempt(mqtt_server, impostor, own, outcome) == "Not authorized"  # nor another officer
    login = logged(credentials, mqtt_server, "officer", officer)
    assert attempt(mqtt_server, login, own, outcome) == "Success"
    assert settle(watcher, own) == [outcome]


def test_nobody_but_the_worker_writes_or_erases_alerts_statuses_and_verdicts(
    mqtt_server: Endpoint, credentials: CredentialStore, watcher: Probe, unique: str
) -> None:
    operator = f"op-{unique}"
    login = logged(credentials, mqtt_server, "operator", operator)
    status = f"monitoring/status/DCL-{unique}"
    assert attempt(mqtt_server, login, status, b'{"colour": "green"}', True) == "Not authorized"
    assert attempt(mqtt_server, login, status, b"", True) == "Not authorized"  # erasing it
    assert attempt(mqtt_server, login, f"monitoring/alerts/DCL-{unique}", b"{}") == "Not authorized"
    assert attempt(mqtt_server, login, "gates/beilun-gate/verdicts", b"{}") == "Not authorized"
    worker = mqtt_server.login("worker")
    assert attempt(mqtt_server, worker, status, b'{"colour": "red"}', True) == "Success"
    attempt(mqtt_server, worker, status, b"", True)  # clean up the retained message
    assert settle(watcher, status) == [b'{"colour": "red"}', b""]


def test_an_operator_resolves_only_in_its_own_name(
    mqtt_server: Endpoint, credentials: CredentialStore, watcher: Probe, unique: str
) -> None:
    me, colleague = f"op-{unique}-a", f"op-{unique}-b"
    logged(credentials, mqtt_server, "operator", colleague)
    login = logged(credentials, mqtt_server, "operator", me)
    colleagues = f"monitoring/resolutions/{colleague}"
    assert attempt(mqtt_server, login, colleagues, b"{}") == "Not authorized"
    assert (
        attempt(mqtt_server, login, f"monitoring/resolutions/{me}", b'{"note": "mine"}')
        == "Success"
    )
    with probe(mqtt_server, me, login) as client:
        assert client.subscribe("monitoring/#") == ["Granted QoS 1"]  # operators watch monitoring
        assert client.subscribe("locks/#") == ["Not authorized"]  # but not positions and plates
    assert settle(watcher, f"monitoring/resolutions/{colleague}") == []
    assert settle(watcher, f"monitoring/resolutions/{me}", 0) == [b'{"note": "mine"}']


def test_an_observer_reads_monitoring_only(
    mqtt_server: Endpoint, credentials: CredentialStore, unique: str
) -> None:
    name = f"wall-{unique}"
    with probe(mqtt_server, name, logged(credentials, mqtt_server, "observer", name)) as screen:
        assert screen.subscribe("monitoring/#") == ["Granted QoS 1"]
        for topic in ("#", "locks/+/telemetry", "customs/declarations", "gates/+/verdicts"):
            assert screen.subscribe(topic) == ["Not authorized"], topic
    login = logged(credentials, mqtt_server, "observer", name)
    assert attempt(mqtt_server, login, f"monitoring/resolutions/{name}", b"{}") == "Not authorized"


# --------------------------------------------------------------------------- sessions


def test_the_bridges_shared_subscription_cannot_be_joined(
    mqtt_server: Endpoint, credentials: CredentialStore, unique: str
) -> None:
    group, lock = f"bridges-{unique}", f"LK-{unique}"
    shared = f"$share/{group}/locks/+/telemetry"
    got: list[Received] = []
    bridge = MqttClient(
        mqtt_server.host, mqtt_server.port, f"b-{unique}", login=mqtt_server.login("bridge")
    )
    bridge.subscribe([shared], got.append)
    bridge.connect()
    try:
        for role, name in (
            ("lock", lock),
            ("operator", f"op-{unique}"),
            ("observer", f"o-{unique}"),
        ):
            with probe(mqtt_server, name, logged(credentials, mqtt_server, role, name)) as thief:
                assert thief.subscribe(shared) == ["Not authorized"], role
        # The join was refused, so the group is the bridge's alone: it gets every message
        # (with Mosquitto's plain acl_file the thief would have been handed every other one).
        thief_login = logged(credentials, mqtt_server, "operator", f"op-{unique}")
        with (
            probe(mqtt_server, lock, logged(credentials, mqtt_server, "lock", lock)) as device,
            probe(mqtt_server, f"op-{unique}", thief_login) as thief,
        ):
            thief.subscribe(shared)
            for n in range(10):
                device.publish(f"locks/{lock}/telemetry", str(n).encode())
            time.sleep(0.5)
            assert thief.received == []
        deadline = time.monotonic() + 5
        while len(got) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r.payload for r in got] == [str(n).encode() for n in range(10)]
    finally:
        bridge.disconnect()


def test_the_workers_client_id_cannot_be_taken(
    mqtt_server: Endpoint, credentials: CredentialStore, unique: str
) -> None:
    worker_id = f"t{unique}-worker-1"
    worker = MqttClient(
        mqtt_server.host, mqtt_server.port, worker_id, login=mqtt_server.login("worker")
    )
    worker.connect()
    try:
        taken = worker.client_id  # "worker:<id>": no device name can contain ':'
        assert taken == f"worker:{worker_id}"
        for role, name in (
            ("lock", f"LK-{unique}"),
            ("gate", f"g-{unique}"),
            ("operator", f"op-{unique}"),
        ):
            login = logged(credentials, mqtt_server, role, name)
            with probe(mqtt_server, taken, login) as thief:
                assert not thief.accepted and str(thief.connack) == "Not authorized", role
        # The worker never noticed: still connected, still publishing.
        asyncio_publish(worker, f"monitoring/status/DCL-{unique}")
    finally:
        worker.disconnect()


def asyncio_publish(client: MqttClient, topic: str) -> None:
    import asyncio

    asyncio.run(client.publish_all([(topic, b"{}", False)]))


def test_an_oversized_message_is_refused_by_the_broker(
    mqtt_server: Endpoint, credentials: CredentialStore, watcher: Probe, unique: str
) -> None:
    lock = f"LK-{unique}"
    login = logged(credentials, mqtt_server, "lock", lock)
    big = b"x" * (MQTT_MESSAGE_LIMIT + 1)
    assert attempt(mqtt_server, login, f"locks/{lock}/telemetry", big) in (
        "Packet too large",
        "no PUBACK: disconnected",
    )
    assert settle(watcher, f"locks/{lock}/telemetry") == []


def test_the_adapter_reports_a_refused_publish(
    mqtt_server: Endpoint, credentials: CredentialStore, unique: str
) -> None:
    lock = f"LK-{unique}"
    client = MqttClient(
        mqtt_server.host,
        mqtt_server.port,
        "x",
        login=logged(credentials, mqtt_server, "lock", lock),
    )
    client.connect()
    try:
        with pytest.raises(InfrastructureError, match="refused 1 message.*Not authorized"):
            asyncio_publish(client, "locks/someone-else/telemetry")
    finally:
        client.disconnect()
