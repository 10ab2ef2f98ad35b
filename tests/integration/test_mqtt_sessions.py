"""One identity, several processes: each holds a session of its own, none takes another's.

Two processes of one operator (the console resolving in its name while ``smartlock resolve``
runs) used to share the client id ``<operator>`` and disconnect each other. Now the 2nd
connection of an identity is the broker user and client id ``<operator>~2``, bound like the
first, with the same role: it may do what the identity may, and no other identity can use it.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from smartlock.adapters.broker_auth import push_identity
from smartlock.adapters.credentials import CredentialError, CredentialStore
from smartlock.adapters.mqtt import Login, MqttClient, claim_session, client_for
from smartlock.contract import topics
from smartlock.errors import InfrastructureError
from smartlock.settings import Settings, load_settings
from tests.integration.test_security import attempt, logged, probe
from tests.servers import Endpoint, admit

pytestmark = pytest.mark.integration


def settings_for(mqtt: Endpoint, store: CredentialStore) -> Settings:
    return load_settings(
        mqtt={"host": mqtt.host, "port": mqtt.port}, credentials={"dir": store.directory}
    )


def resolve(client: MqttClient, operator: str) -> None:
    topic = topics.RESOLUTIONS.topic(operator)
    asyncio.run(client.publish_all([(topic, b"{}", False)]))


def test_two_processes_of_one_operator_keep_their_connections(
    mqtt_server: Endpoint, credentials: CredentialStore, unique: str
) -> None:
    operator = f"op-{unique}"
    admit(credentials, mqtt_server, "operator", operator)
    settings = settings_for(mqtt_server, credentials)
    console = client_for(settings, operator, "console")
    cli = client_for(settings, operator, "resolve")
    console.connect()
    cli.connect()
    try:
        assert (console.client_id, cli.client_id) == (operator, f"{operator}~2")
        time.sleep(1.5)  # a takeover would have dropped the first by now
        assert console.connected and cli.connected
        assert console.lost_since is None and cli.lost_since is None
        resolve(console, operator)  # both may do what the operator may
        resolve(cli, operator)
        with pytest.raises(InfrastructureError, match="Not authorized"):
            resolve(cli, f"op-other-{unique}")  # and only that
    finally:
        console.disconnect()
        cli.disconnect()
    again = client_for(settings, operator, "resolve")  # a disconnect frees its session
    assert again.client_id == operator
    again.disconnect()


def test_no_identity_can_take_another_identitys_second_session(
    mqtt_server: Endpoint, credentials: CredentialStore, unique: str
) -> None:
    operator = f"op-{unique}"
    admit(credentials, mqtt_server, "operator", operator)
    settings = settings_for(mqtt_server, credentials)
    first, second = client_for(settings, operator, "a"), client_for(settings, operator, "b")
    first.connect()
    second.connect()
    try:
        session = second.client_id
        assert session == f"{operator}~2"
        for role, name in (("operator", f"op2-{unique}"), ("lock", f"LK-{unique}")):
            thief = logged(credentials, mqtt_server, role, name)
            with probe(mqtt_server, session, thief) as p:  # its own login, the session's id
                assert not p.accepted and str(p.connack) == "Not authorized", role
            impostor = Login(session, thief.password, bound=True)  # the session's name
            with probe(mqtt_server, session, impostor) as p:
                assert not p.accepted, role
        # A lock has one session only: no `LK-...~2` exists on the broker.
        lock = admit(credentials, mqtt_server, "lock", f"LK-{unique}")
        assert lock.sessions == [lock.name]
        with probe(mqtt_server, f"{lock.name}~2", Login(f"{lock.name}~2", lock.secret, True)) as p:
            assert not p.accepted
        time.sleep(0.5)
        assert first.connected and second.connected  # nobody took them over
    finally:
        first.disconnect()
        second.disconnect()


def test_every_session_is_bound_to_the_identitys_acl_and_revocation_drops_them_all(
    mqtt_server: Endpoint, credentials: CredentialStore, unique: str
) -> None:
    gate = admit(credentials, mqtt_server, "gate", f"gate-{unique}")
    for session in gate.sessions[1:]:
        login = Login(session, gate.secret, bound=True)
        accepted = attempt(mqtt_server, login, topics.GATE_ARRIVALS.topic(gate.name), b"{}")
        assert accepted in ("Success", "No matching subscribers")
        assert attempt(
            mqtt_server, login, topics.GATE_ARRIVALS.topic(f"other-{unique}"), b"{}"
        ) == ("Not authorized")
    settings = settings_for(mqtt_server, credentials)
    held = [client_for(settings, gate.name, str(i)) for i in range(len(gate.sessions))]
    for client in held:
        client.connect()
    try:
        with pytest.raises(CredentialError, match="all its 4 MQTT connections"):
            claim_session(credentials.directory, gate)
        push_identity(
            mqtt_server.host, mqtt_server.port, credentials.get("admin"), gate, revoked=True
        )
        deadline = time.monotonic() + 10
        while any(c.connected for c in held) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(c.connected for c in held)
    finally:
        for client in held:
            client.disconnect()
