"""Who may publish and subscribe what on Mosquitto (CONTRACT section 6), as dynamic-security roles.

Mosquitto's plain ``acl_file`` never checks a SUBSCRIBE (any client could join the bridges'
``$share/...`` group and swallow their messages) and cannot bind a client id to a user, so the
broker runs its dynamic-security plugin: every identity of the credentials store becomes a
dynsec client with one role of its own, whose ACLs come from the template of its role below
(the plugin in Mosquitto 2.0 has no ``%u`` patterns, so the pattern is filled in here). Devices
and people are bound to the client id that equals their name, and may hold a few connections
at once (:attr:`Identity.sessions`): the 2nd is the dynsec client ``<name>~2``, bound to the client
id ``<name>~2``, with the same password and role, and so on; the pipeline's service accounts
are not bound (they run several instances) and name their client ids ``<account>:<instance>``.

Everything not granted is denied (``defaultACLAccess``). The broker reads the JSON at start;
while it runs, :class:`BrokerAdmin` applies issues and revocations through
``$CONTROL/dynamic-security/v1`` (a revoked client is disconnected at once).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from smartlock.adapters.credentials import Identity
from smartlock.contract import topics
from smartlock.errors import InfrastructureError

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ITERATIONS = 1000

SEND = "publishClientSend"
SUB = "subscribePattern"
RECEIVE = "publishClientReceive"


def role_acls(identity: Identity) -> list[tuple[str, str]]:
    """(acltype, topic) pairs granted to ``identity`` by its role (CONTRACT section 6 table)."""
    n = identity.name
    monitoring = topics.MONITORING_ALL
    templates: dict[str, list[tuple[str, str]]] = {
        "lock": [(SEND, topics.LOCK_TELEMETRY.topic(n)), (SEND, topics.LOCK_EVENTS.topic(n))],
        # The destination office at a gate reads the transfers approved for that gate.
        "gate": [
            (SEND, topics.GATE_ARRIVALS.topic(n)),
            (SUB, topics.GATE_VERDICTS.topic(n)),
            (SUB, topics.TRANSFERS.topic(n)),
        ],
        # A customs officer records a hand inspection's outcome in its own name only
        # (customs/outcomes/{officer}, an addition to the contract).
        "officer": [(SEND, topics.OUTCOMES.topic(n))],
        "operator": [(SEND, topics.RESOLUTIONS.topic(n)), (SUB, monitoring)],
        "observer": [(SUB, monitoring)],
        "intake": [
            (SEND, topics.DECLARATIONS.topic()),
            (SEND, topics.CANCELLATIONS.topic()),
            (SEND, topics.TRANSFERS.subscription),
            # The intake is the origin office's system: it receives the write-off notices.
            (SUB, topics.WRITEOFFS.subscription),
        ],
        # Only the bridges may subscribe to the inbound topics: the one inbound session that
        # the active bridge holds (plain subscriptions) or a shared subscription (any group).
        "bridge": [(SUB, topic) for topic in topics.INBOUND_SUBSCRIPTIONS]
        + [(SUB, f"$share/+/{topic}") for topic in topics.INBOUND_SUBSCRIPTIONS],
        "worker": [
            (SEND, topics.ALERTS.subscription),
            (SEND, topics.STATUS.subscription),
            (SEND, topics.GATE_VERDICTS.subscription),
            (SEND, topics.WRITEOFFS.subscription),  # write-off notices back to the origin office
        ],
        "console": [(SUB, monitoring)],
        # Tools of the local stack and the tests: the simulator and replay stand in for the
        # whole world (intake, locks, gates, operators), the recorder reads everything.
        "simulator": [(SEND, topic) for topic in topics.INBOUND_SUBSCRIPTIONS],
        "replay": [(SEND, topic) for topic in topics.INBOUND_SUBSCRIPTIONS],
        "recorder": [(SUB, "#"), (SEND, "smartlock/record/+")],  # + its readiness probe
        "admin": [
            (SEND, "$CONTROL/dynamic-security/#"),
            (RECEIVE, "$CONTROL/dynamic-security/#"),
            (SUB, "$CONTROL/dynamic-security/#"),
        ],
    }
    return templates.get(identity.role, [])


def _role_name(identity: Identity) -> str:
    return f"{identity.role}-{identity.name}"


def _role(identity: Identity) -> dict[str, Any]:
    return {
        "rolename": _role_name(identity),
        "acls": [
            {"acltype": t, "topic": topic, "priority": 0, "allow": True}
            for t, topic in role_acls(identity)
        ],
    }


def hash_password(password: str, iterations: int = ITERATIONS) -> dict[str, Any]:
    """The dynsec password fields: PBKDF2-SHA512 over a random 12-byte salt, both base64."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def mqtt_identities(identities: Iterable[Identity]) -> list[Identity]:
    """The identities that may connect to MQTT (not the intake's declarants and customs)."""
    return [i for i in identities if role_acls(i)]


def dynsec_config(identities: Iterable[Identity]) -> dict[str, Any]:
    """The dynamic-security JSON for every MQTT identity of the store (deny by default)."""
    clients, roles = [], []
    for identity in sorted(mqtt_identities(identities), key=lambda i: i.name):
        for username in identity.sessions:
            client: dict[str, Any] = {
                "username": username,
                "textName": identity.role,
                **hash_password(identity.secret.get_secret_value()),
                "roles": [{"rolename": _role_name(identity)}],
            }
            if identity.bound:
                client["clientid"] = username
            clients.append(client)
        roles.append(_role(identity))
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def issue_commands(identity: Identity) -> list[dict[str, Any]]:
    """Control commands that (re)create ``identity`` on a running broker."""
    commands = revoke_commands(identity)
    role = _role(identity)
    commands.append({"command": "createRole", "rolename": role["rolename"]})
    for acl in role["acls"]:
        commands.append({"command": "addRoleACL", "rolename": role["rolename"], **acl})
    for username in identity.sessions:
        client: dict[str, Any] = {
            "command": "createClient",
            "username": username,
            "password": identity.secret.get_secret_value(),
            "textname": identity.role,
            "roles": [{"rolename": role["rolename"]}],
        }
        if identity.bound:
            client["clientid"] = username
        commands.append(client)
    return commands


def revoke_commands(identity: Identity) -> list[dict[str, Any]]:
    """Control commands that remove ``identity`` (and disconnect it) on a running broker."""
    return [
        *({"command": "deleteClient", "username": name} for name in identity.sessions),
        {"command": "deleteRole", "rolename": _role_name(identity)},
    ]


class BrokerAdmin:
    """Sends dynamic-security commands to a running Mosquitto as the ``admin`` account.

    Args:
        host: broker address.
        port: broker port.
        admin: the ``admin`` identity of the credentials store.
    """

    def __init__(self, host: str, port: int, admin: Identity) -> None:
        self.host, self.port, self.admin = host, port, admin

    def apply(self, commands: list[dict[str, Any]], timeout: float = 5.0) -> list[dict[str, Any]]:
        """Sends ``commands`` in one request; returns the broker's responses (one per command).

        A "not found" answer to a delete is expected (revoking what the broker never had).

        Raises:
            InfrastructureError: the broker is unreachable, refuses the admin, or does not answer.
        """
        from smartlock.adapters.mqtt import Login, MqttClient

        answer: list[dict[str, Any]] = []
        got = threading.Event()

        def on_response(received: Any) -> None:
            answer.extend(json.loads(received.payload).get("responses", []))
            got.set()

        login = Login(self.admin.name, self.admin.secret, bound=False)
        client = MqttClient(self.host, self.port, f"ctl-{uuid.uuid4().hex[:8]}", login=login)
        client.subscribe([RESPONSE_TOPIC], on_response)
        client.connect(timeout=timeout)
        try:
            time.sleep(0.05)  # let the SUBSCRIBE take effect before the request goes out
            client.publish(
                CONTROL_TOPIC, json.dumps({"commands": commands}).encode()
            ).wait_for_publish(timeout)
            if not got.wait(timeout):
                raise InfrastructureError(
                    f"Mosquitto {self.host}:{self.port} did not answer the "
                    "dynamic-security request; is the dynsec plugin loaded?"
                )
        finally:
            client.disconnect()
        failures = [r for r in answer if r.get("error") and not _expected(r)]
        if failures:
            raise InfrastructureError(f"Mosquitto refused credential changes: {failures}")
        return answer


def _expected(response: dict[str, Any]) -> bool:
    return response.get("command") in ("deleteClient", "deleteRole") and "not found" in str(
        response.get("error")
    )


def push_identity(
    host: str, port: int, admin: Identity, identity: Identity, *, revoked: bool = False
) -> None:
    """Applies one issue, rotation or revocation to a running broker (as ``admin``).

    Raises:
        InfrastructureError: the broker refused or did not answer.
    """
    commands = revoke_commands(identity) if revoked else issue_commands(identity)
    if revoked or role_acls(identity):
        BrokerAdmin(host, port, admin).apply(commands)
