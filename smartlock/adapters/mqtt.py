"""A thin adapter over paho-mqtt 2.x (MQTT 5).

paho calls back on its own network thread. Everything that arrives is turned into a
:class:`Received` at exactly one place (:func:`_from_paho_message`) and handed to the
asyncio loop; a failure on paho's thread is stored and re-raised in the caller's thread
(:meth:`MqttClient.raise_if_failed`), so a callback never dies silently.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import SecretStr

from smartlock.adapters.credentials import CredentialError, CredentialStore, Identity
from smartlock.errors import InfrastructureError
from smartlock.settings import Settings


@dataclass(frozen=True)
class Login:
    """Who a client is on the broker (CONTRACT section 6).

    Attributes:
        username: the identity's name.
        password: its secret.
        bound: the broker ties this identity to the client id equal to its name (devices and
            people); service accounts are not tied and name their client ids ``<account>:<id>``.
    """

    username: str
    password: SecretStr
    bound: bool

    @classmethod
    def of(cls, identity: Identity) -> Login:
        return cls(identity.name, identity.secret, identity.bound)

    def client_id(self, wanted: str) -> str:
        """The client id this login may use for a client that wants ``wanted``."""
        return self.username if self.bound else f"{self.username}:{wanted}"


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    """One inbound MQTT message, as the project sees it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    received_at: datetime


def _from_paho_message(msg: paho.MQTTMessage) -> Received:
    return Received(
        topic=msg.topic,
        payload=bytes(msg.payload),
        mid=msg.mid,
        qos=msg.qos,
        retain=bool(msg.retain),
        received_at=datetime.now(UTC),
    )


class MqttClient:
    """A connected MQTT 5 client.

    Args:
        host: broker host.
        port: broker port.
        client_id: stable id; with ``persistent=True`` the broker keeps the session (and
            queued QoS 1 messages) while the client is away.
        persistent: keep the session for a day after disconnect (clean_start off).
        manual_ack: acknowledge inbound QoS 1 messages only when :meth:`ack` is called.
        max_inflight: outbound QoS 1 messages in flight at once.
        login: the identity to authenticate as (the broker refuses anonymous clients); it
            decides the client id actually used (see :meth:`Login.client_id`).
        ca_file: connect with TLS, trusting this CA certificate (PEM).
        resend_s: after a reconnect, publish again the QoS 1 messages the broker acknowledged
            in the last ``resend_s`` seconds before the connection was lost, and wait for the
            reconnect instead of failing a publish: a broker killed with -9 forgets what it
            acknowledged since its last save (Mosquitto: two seconds) and had not yet handed
            on. 0 (default): off. The copies are duplicates downstream, where the anti-replay
            window and the digests drop them.
        reconnect_wait_s: with ``resend_s``, how long :meth:`publish` waits for a lost
            connection to come back before it raises.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        persistent: bool = False,
        manual_ack: bool = False,
        max_inflight: int = 1000,
        login: Login | None = None,
        ca_file: Path | None = None,
        resend_s: float = 0.0,
        reconnect_wait_s: float = 30.0,
    ) -> None:
        self.host, self.port = host, port
        self.client_id = login.client_id(client_id) if login is not None else client_id
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            manual_ack=manual_ack,
        )
        if login is not None:
            self._client.username_pw_set(login.username, login.password.get_secret_value())
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file))
        self._refused: dict[int, str] = {}  # mid -> reason of a publish the broker refused
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._persistent = persistent
        self._connected = threading.Event()
        self._failure: BaseException | None = None
        self._on_receive: Callable[[Received], None] | None = None
        self._subscriptions: list[tuple[str, int]] = []
        self._client.on_connect = self._handle_connect
        self._client.on_message = self._handle_message
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_publish = self._handle_publish
        self._client.on_subscribe = self._handle_subscribe
        # paho reconnects by itself (loop_start); keep the gap short after a broker restart.
        self._client.reconnect_delay_set(0.2, 5)
        #: monotonic time the connection was lost, None while connected (or never connected).
        self.lost_since: float | None = None
        self._closing = False
        self._resend_s = resend_s
        self.reconnect_wait_s = reconnect_wait_s
        # (monotonic time, topic, payload, qos, retain, info) of recent QoS 1 publishes
        self._recent: deque[tuple[float, str, bytes, int, bool, paho.MQTTMessageInfo]] = deque()
        self._recent_lock = threading.Lock()
        #: The lock that holds this client's session of its identity (see :func:`client_for`).
        self.session_lock: IO[str] | None = None

    # ----------------------------------------------------------------- paho thread

    def _handle_connect(
        self, client: paho.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        try:
            if getattr(reason, "is_failure", False):
                self._failure = InfrastructureError(
                    f"MQTT broker {self.host}:{self.port} refused connection: {reason}"
                )
                return
            if self._subscriptions:
                opts = [(t, SubscribeOptions(qos=q)) for t, q in self._subscriptions]
                client.subscribe(opts)
            if self.lost_since is not None and self._resend_s:
                self._publish_again(client, self.lost_since - self._resend_s)
            if self.lost_since is not None:
                log.warning(
                    "MQTT %s: reconnected to %s:%s after %.1f s",
                    self.client_id, self.host, self.port, time.monotonic() - self.lost_since,
                )  # fmt: skip
            self.lost_since = None
            self._connected.set()
        except BaseException as exc:  # noqa: BLE001 - stored and re-raised in the caller's thread
            self._failure = exc

    def _publish_again(self, client: paho.Client, since: float) -> None:
        """Publishes again, in their order, the acknowledged messages sent after ``since``
        (paho itself re-sends those still unacknowledged, after these: the order holds)."""
        with self._recent_lock:
            again = [r for r in self._recent if r[0] >= since and r[5].is_published()]
        for _, topic, payload, qos, retain, _ in again:
            client.publish(topic, payload, qos=qos, retain=retain)
        if again:
            log.warning(
                "MQTT %s: published %d acknowledged message(s) of the last %.0f s again, "
                "which the broker may have lost", self.client_id, len(again), self._resend_s,
            )  # fmt: skip

    def _handle_publish(
        self, client: paho.Client, userdata: object, mid: int, reason: object, props: object
    ) -> None:
        # MQTT 5: a PUBACK with a failure code (e.g. 0x87 "Not authorized") is still a PUBACK;
        # paho counts the message as published, so the refusal is recorded here.
        if getattr(reason, "is_failure", False):
            self._refused[mid] = str(reason)

    def _handle_subscribe(
        self, client: paho.Client, userdata: object, mid: int, reasons: object, props: object
    ) -> None:
        failed = [str(r) for r in reasons if getattr(r, "is_failure", False)]  # type: ignore[attr-defined]
        if failed:
            self._failure = InfrastructureError(
                f"MQTT broker {self.host}:{self.port} refused the subscription of "
                f"{self.client_id}: {', '.join(failed)}"
            )

    def _handle_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if self._connected.is_set() and not self._closing:
            self.lost_since = time.monotonic()
            log.warning(
                "MQTT %s: connection to %s:%s lost (%s); reconnecting",
                self.client_id, self.host, self.port, reason,
            )  # fmt: skip
        self._connected.clear()

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for a lost connection to come back.

        Raises:
            InfrastructureError: still not connected after ``timeout`` (or paho failed).
        """
        back = self._connected.wait(timeout)
        self.raise_if_failed()
        if not back:
            gone = time.monotonic() - self.lost_since if self.lost_since is not None else timeout
            raise InfrastructureError(
                f"MQTT broker {self.host}:{self.port} went away {gone:.0f} s ago and did not "
                f"come back within {timeout:.0f} s; is it running? (`smartlock stack status`)"
            )

    def _handle_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            if self._on_receive is not None:
                self._on_receive(_from_paho_message(msg))
        except BaseException as exc:  # noqa: BLE001
            self._failure = exc

    # ----------------------------------------------------------------- caller side

    def raise_if_failed(self) -> None:
        """Re-raises a failure that happened on paho's network thread."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def connect(self, timeout: float = 10.0) -> None:
        """Connects and starts paho's network thread; waits for the CONNACK."""
        props = Properties(PacketTypes.CONNECT)
        if self._persistent:
            props.SessionExpiryInterval = 86_400
        props.ReceiveMaximum = 65_535
        try:
            self._client.connect(
                self.host,
                self.port,
                keepalive=30,
                clean_start=not self._persistent,
                properties=props,
            )
        except OSError as exc:
            raise InfrastructureError(
                f"cannot reach MQTT broker at {self.host}:{self.port} ({exc}); start it with `smartlock stack up`"
            ) from exc
        self._client.loop_start()
        try:
            if not self._connected.wait(timeout):
                self.raise_if_failed()
                raise InfrastructureError(
                    f"no CONNACK from MQTT broker {self.host}:{self.port} within {timeout}s"
                )
            self.raise_if_failed()
        except BaseException:
            self._client.loop_stop()  # a refused client must not keep reconnecting
            raise

    def subscribe(
        self, topics: Iterable[str], on_receive: Callable[[Received], None], qos: int = 1
    ) -> None:
        """Subscribes (again after every reconnect); ``on_receive`` runs on paho's thread."""
        self._on_receive = on_receive
        self._subscriptions = [(t, qos) for t in topics]
        if self._connected.is_set():
            self._client.subscribe([(t, SubscribeOptions(qos=q)) for t, q in self._subscriptions])

    def ack(self, received: Received) -> None:
        """Acknowledges an inbound QoS 1 message (with ``manual_ack``)."""
        if received.qos > 0:
            self._client.ack(received.mid, received.qos)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> paho.MQTTMessageInfo:
        if self._resend_s and not self._connected.is_set():
            self.wait_connected(self.reconnect_wait_s)  # the copies of the last seconds go first
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        queued = self._resend_s and info.rc == paho.MQTT_ERR_NO_CONN  # paho sends it on reconnect
        if info.rc != paho.MQTT_ERR_SUCCESS and not queued:
            raise InfrastructureError(
                f"MQTT publish to {topic} failed: {paho.error_string(info.rc)}"
            )
        if self._resend_s and qos > 0:
            now = time.monotonic()
            with self._recent_lock:
                self._recent.append((now, topic, payload, qos, retain, info))
                if self.lost_since is None:  # keep what a reconnect may have to send again
                    while self._recent and self._recent[0][0] < now - self._resend_s:
                        self._recent.popleft()
        return info

    async def publish_all(
        self, messages: Iterable[tuple[str, bytes, bool]], qos: int = 1, timeout: float = 10.0
    ) -> None:
        """Publishes messages and waits until the broker acknowledged every one (with
        ``resend_s``, first waits up to ``timeout`` for a lost connection to come back)."""
        if self._resend_s and not self._connected.is_set():
            await asyncio.to_thread(self.wait_connected, timeout)
        infos = [
            self.publish(topic, payload, qos=qos, retain=retain)
            for topic, payload, retain in messages
        ]
        if infos and qos > 0:
            await asyncio.to_thread(_wait_all, infos, timeout)
            self.raise_if_refused(infos)
        self.raise_if_failed()

    def refusal(self, info: paho.MQTTMessageInfo) -> str | None:
        """Why the broker refused an acknowledged QoS 1 publish (e.g. "Not authorized"), or None."""
        return self._refused.get(info.mid)

    def raise_if_refused(self, infos: Iterable[paho.MQTTMessageInfo]) -> None:
        """Raises InfrastructureError if the broker refused any of these publishes."""
        refused = [(i.mid, self._refused.pop(i.mid)) for i in infos if i.mid in self._refused]
        if refused:
            raise InfrastructureError(
                f"MQTT broker refused {len(refused)} message(s) from {self.client_id}: "
                f"{refused[0][1]} (is this identity allowed to publish there? CONTRACT section 6)"
            )

    def disconnect(self) -> None:
        self._closing = True
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            if self.session_lock is not None:  # the session is free for another process
                self.session_lock.close()
                self.session_lock = None


def _wait_all(infos: list[paho.MQTTMessageInfo], timeout: float) -> None:
    for info in infos:
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise InfrastructureError(
                f"MQTT broker did not acknowledge message {info.mid} within {timeout}s"
            )


def login_for(settings: Settings, identity: str) -> Login:
    """The login of ``identity`` from the credentials store of ``settings``.

    Raises:
        CredentialError: the identity has no credentials; the message says how to issue them.
    """
    return Login.of(CredentialStore(settings.credentials_dir).get(identity))


def client_for(settings: Settings, identity: str, client_id: str, **kwargs: Any) -> MqttClient:
    """An MQTT client of ``settings``' broker that logs in as ``identity`` of the credentials store.

    Args:
        settings: broker address, TLS and the credentials directory.
        identity: name of the identity (``bridge``, ``worker``, a gate id, an operator id...).
        client_id: the wanted client id (see :meth:`Login.client_id`).
        **kwargs: passed to :class:`MqttClient`.

    Raises:
        CredentialError: the identity has no credentials; the message says how to issue them.
    """
    store = CredentialStore(settings.credentials_dir)
    found = store.get(identity)
    login, held = Login.of(found), None
    if found.bound and len(found.sessions) > 1:
        session, held = claim_session(store.directory, found)
        login = Login(session, found.secret, bound=True)
    ca = settings.mqtt.ca_file if settings.mqtt.tls else None
    client = MqttClient(
        settings.mqtt.host, settings.mqtt.port, client_id, login=login, ca_file=ca, **kwargs
    )
    client.session_lock = held
    return client


def hold_first_free(
    folder: Path, names: Iterable[str], prefix: str = ""
) -> tuple[str, IO[str]] | None:
    """The first of ``names`` whose lock file ``folder/<prefix><name>.lock`` no other process
    holds, with that file open and locked (an exclusive ``flock``, held while it stays open or
    the process lives); None when every name is held.

    Raises:
        OSError: the folder or a lock file cannot be made (a read-only store).
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in names:
        handle = open(folder / f"{prefix}{name}.lock", "a")  # noqa: SIM115 - held while open
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return name, handle
    return None


def claim_session(directory: Path, identity: Identity) -> tuple[str, IO[str] | None]:
    """The first session of a bound identity that no other client on this host holds.

    A gate, an operator, an observer or an officer may hold a few MQTT connections at once
    (:attr:`Identity.sessions`: ``wang-li``, ``wang-li~2``, ...), each its own user name and
    client id on the broker, so two processes of one identity no longer take each other's
    session over. Clients of the same credentials store agree through an exclusive ``flock``
    per session under ``<credentials dir>/.sessions/``, held until the client disconnects
    (or its process ends). Returns the session's user name and the open lock file; on a
    read-only credentials store (no lock files possible), the first session and no lock.

    Raises:
        CredentialError: every session of the identity is held.
    """
    held = directory / ".sessions"
    try:
        claimed = hold_first_free(held, identity.sessions)
    except OSError as exc:
        log.warning("%s: cannot hold MQTT sessions in %s (%s)", identity.name, held, exc)
        return identity.name, None
    if claimed is not None:
        return claimed
    raise CredentialError(
        f"{identity.name} already holds all its {len(identity.sessions)} MQTT connections on "
        "this host (one per running gate client, console resolution or resolve command); "
        "stop one of them",
        identity.name,
    )
