"""The gate-side client.

It subscribes to the gate's verdicts, publishes what the gate saw (plate from the
number-plate camera, lock and container read at the gate) as a GateArrival, and waits
up to ``timeout`` (one second) for the verdict. When none comes (the pipeline is down,
or the broker does not take the arrival), it switches to manual inspection: it says so,
and queues the arrival on disk. :meth:`GateClient.reconcile` later publishes what was not
delivered and collects the verdicts the pipeline made, from MQTT or from the Redis
verdict stream, so nothing the gate saw is lost.

Only the gate knows both ends of its round trip (arrival published, signed verdict
received), so it records, for the console's gate view, each verdict with that round trip,
each fall back to manual inspection with its reason, and each later reconciliation, in the
Redis stream ``RedisKeys.gate_events`` (:class:`GateLog`). That record is a report, not the
gate's memory: when Redis does not take it the gate goes on (the disk queue is what counts).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from smartlock.adapters.credentials import CredentialError, CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.mqtt import MqttClient, Received, client_for
from smartlock.adapters.redis_auth import redis_client
from smartlock.contract.codec import signature_valid
from smartlock.contract.models import GateArrival, ManualOutcome, format_ts
from smartlock.contract.timestamps import epoch
from smartlock.contract.topics import OUTCOMES, arrival_topic, verdict_topic
from smartlock.errors import InfrastructureError
from smartlock.services.gate.queue import FallbackQueue, entry_message
from smartlock.settings import Settings

log = logging.getLogger(__name__)

MANUAL = "manual inspection"
#: Entries kept in the gate event stream (all gates of one pipeline).
GATE_EVENTS_MAX = 20_000


@dataclass
class Outcome:
    """What happened to one arrival at the gate."""

    arrival: dict[str, Any]
    verdict: dict[str, Any] | None
    elapsed_s: float
    published: bool
    #: Verdicts that claimed to answer this arrival without a valid signature of this gate.
    forged: list[dict[str, Any]] = field(default_factory=list)
    #: Arrival published -> this arrival's signed verdict received (None without a verdict).
    round_trip_s: float | None = None

    @property
    def manual(self) -> bool:
        return self.verdict is None


def make_arrival(
    gate_id: str, plate: str, lock_id: str, container_no: str, ts: str | None = None
) -> dict[str, Any]:
    """A validated GateArrival payload (``ts`` defaults to now, to the second)."""
    when = ts or format_ts(datetime.now(UTC).replace(microsecond=0))
    return GateArrival.model_validate(
        {
            "gate_id": gate_id,
            "ts": when,
            "vehicle_plate": plate,
            "lock_id": lock_id,
            "container_no": container_no,
        }
    ).to_payload()


def make_outcome(
    gate_id: str,
    plate: str,
    lock_id: str,
    container_no: str,
    outcome: str,
    officer: str,
    note: str,
    ts: str | None = None,
) -> dict[str, Any]:
    """A validated ManualOutcome payload (``ts`` defaults to now, to the second)."""
    when = ts or format_ts(datetime.now(UTC).replace(microsecond=0))
    return ManualOutcome.model_validate(
        {
            "gate_id": gate_id,
            "ts": when,
            "vehicle_plate": plate,
            "lock_id": lock_id,
            "container_no": container_no,
            "outcome": outcome,
            "officer": officer,
            "note": note,
        }
    ).to_payload()


def manual_reason(published: bool, timeout: float) -> str:
    """Why an arrival went to manual inspection, in the officer's words."""
    if not published:
        return "the broker did not take the arrival"
    return f"no signed verdict within {timeout:g} s"


def gate_event(
    kind: str,
    arrival: dict[str, Any],
    at: str,
    *,
    verdict: dict[str, Any] | None = None,
    round_trip_s: float | None = None,
    reason: str | None = None,
    published: bool | None = None,
) -> dict[str, Any]:
    """One entry of the gate event stream (pure).

    ``kind`` is ``verdict`` (a signed verdict came in time: ``round_trip_ms``), ``manual``
    (none came: ``reason``) or ``reconciled`` (a queued arrival's verdict found later).
    """
    event: dict[str, Any] = {
        "kind": kind,
        "gate_id": arrival.get("gate_id"),
        "lock_id": arrival.get("lock_id"),
        "vehicle_plate": arrival.get("vehicle_plate"),
        "container_no": arrival.get("container_no"),
        "arrival_ts": arrival.get("ts"),
        "at": at,
    }
    if verdict is not None:
        event["verdict"] = verdict.get("verdict")
        event["declaration_id"] = verdict.get("declaration_id")
        event["reasons"] = verdict.get("reasons") or []
    if round_trip_s is not None:
        event["round_trip_ms"] = round(round_trip_s * 1000, 1)
    if reason is not None:
        event["reason"] = reason
    if published is not None:
        event["published"] = published
    return event


class GateLog:
    """Appends gate events to the Redis stream ``RedisKeys.gate_events``; never raises.

    A Redis that does not answer within ``timeout`` seconds costs the gate that much once
    per batch of arrivals, and the entries are dropped with a warning (the gate's own record
    is its disk queue).
    """

    def __init__(self, settings: Settings, timeout: float = 0.5) -> None:
        self.key = RedisKeys(settings.redis.prefix).gate_events
        self._client: redis.Redis | None = None
        try:  # the gate clients' Redis account (writes only this stream)
            self._client = redis_client(
                settings, "gates", socket_timeout=timeout, socket_connect_timeout=timeout
            )
        except CredentialError as exc:
            log.warning("gate: events will not be recorded in Redis (%s)", exc)

    def write(self, events: list[dict[str, Any]]) -> bool:
        if not events:
            return True
        if self._client is None:
            return False
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.xadd(
                        self.key,
                        {"json": json.dumps(event, ensure_ascii=False)},
                        maxlen=GATE_EVENTS_MAX,
                        approximate=True,
                    )
                pipe.execute()
            return True
        except redis.RedisError as exc:
            log.warning("gate: %d event(s) not recorded in Redis (%s)", len(events), exc)
            return False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _match_key(payload: dict[str, Any]) -> tuple[str, float] | None:
    try:
        ts = epoch(str(payload["ts"]))
        return str(payload["lock_id"]), ts
    except (KeyError, ValueError):
        return None


class GateClient:
    """One gate's connection to the pipeline.

    Args:
        gate_id: the gate (a ``destination_gate`` zone id).
        settings: MQTT and Redis locations.
        queue: where arrivals wait while the pipeline does not answer.
        timeout: seconds to wait for a verdict before manual inspection.
    """

    def __init__(
        self, gate_id: str, settings: Settings, queue: FallbackQueue, timeout: float = 1.0
    ) -> None:
        self.gate_id, self.settings, self.queue, self.timeout = gate_id, settings, queue, timeout
        self._credentials = CredentialStore(settings.credentials_dir)
        if self._credentials.find(gate_id) is None:  # fail early, saying how to issue them
            raise CredentialError(
                f"Gate {gate_id} has no credentials in {settings.credentials_dir}; issue them "
                f"with `smartlock credentials issue gate {gate_id}`.",
                gate_id,
            )
        self._verdicts: dict[tuple[str, float], dict[str, Any]] = {}
        self._received_at: dict[tuple[str, float], float] = {}  # monotonic, first genuine verdict
        self._forged: dict[tuple[str, float], list[dict[str, Any]]] = {}
        self._cond = threading.Condition()
        self._mqtt: MqttClient | None = None
        self.events = GateLog(settings)

    # ----------------------------------------------------------------- connection

    def connect(self) -> bool:
        """Connects and subscribes to the gate's verdicts; False when the broker is unreachable."""
        # The gate's own identity: it may publish only its arrivals and read only its verdicts.
        # resend_s: arrivals acknowledged just before a broker kill -9 are published again; a
        # broker away longer than the verdict timeout sends the gate to manual (queued on disk).
        client = client_for(
            self.settings, self.gate_id, self.gate_id,
            resend_s=self.settings.mqtt.resend_s, reconnect_wait_s=self.timeout,
        )  # fmt: skip
        client.subscribe([verdict_topic(self.gate_id)], self._on_verdict)
        try:
            client.connect(timeout=min(self.timeout * 3, 5.0))
        except InfrastructureError:
            return False
        self._mqtt = client
        # The SUBSCRIBE goes out on connect; a PINGREQ round trip would not prove it took
        # effect, so publish nothing before the broker had a moment to install it.
        time.sleep(0.05)
        return True

    def close(self) -> None:
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt = None
        self.events.close()

    def genuine(self, payload: dict[str, Any]) -> bool:
        """True if ``payload`` is a verdict for this gate signed with this gate's key.

        The key is read from the credentials store each time (a rotated key applies at once).
        """
        identity = self._credentials.find(self.gate_id)
        if identity is None or identity.key is None or payload.get("gate_id") != self.gate_id:
            return False
        return signature_valid(payload, identity.key.get_secret_value())

    def _on_verdict(self, received: Received) -> None:
        try:
            payload = json.loads(received.payload)
        except ValueError:
            return
        key = _match_key(payload) if isinstance(payload, dict) else None
        if key is None:
            return
        genuine = self.genuine(payload)
        with self._cond:
            if genuine:
                self._verdicts[key] = payload
                self._received_at.setdefault(key, time.monotonic())
            else:  # no verdict: shown to the officer as forged, never acted on
                self._forged.setdefault(key, []).append(payload)
            self._cond.notify_all()

    # ----------------------------------------------------------------- arrivals

    def _publish(self, arrivals: Iterable[dict[str, Any]], topic: str | None = None) -> bool:
        """Publishes arrivals on their gate's topic (or every payload on ``topic``), QoS 1."""
        if self._mqtt is None and not self.connect():
            return False
        assert self._mqtt is not None
        try:
            infos = [
                self._mqtt.publish(
                    topic or arrival_topic(a["gate_id"]),
                    json.dumps(a, ensure_ascii=False).encode(),
                    qos=1,
                )
                for a in arrivals
            ]
            deadline = time.monotonic() + self.timeout
            for info in infos:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            mqtt = self._mqtt
            return all(info.is_published() and mqtt.refusal(info) is None for info in infos)
        except (InfrastructureError, RuntimeError, ValueError):
            return False

    def check_officer(self, officer: str) -> None:
        """Raises CredentialError, saying what to do, unless ``officer`` is an officer's identity."""
        identity = self._credentials.find(officer)
        if identity is None:
            raise CredentialError(
                f"Officer {officer} has no credentials in {self.settings.credentials_dir}; "
                f"customs issues them with `smartlock credentials issue officer {officer}`.",
                officer,
            )
        if identity.role != "officer":
            article = "an" if identity.role[:1] in "aeiou" else "a"
            raise CredentialError(
                f"{officer} is {article} {identity.role}, not an officer: only an officer's own identity "
                f"records a hand inspection (`smartlock credentials issue officer NAME`).",
                officer,
            )

    def _publish_as_officer(self, outcome: dict[str, Any]) -> bool:
        """Publishes a ManualOutcome logged in as its officer (QoS 1): only that identity may
        write ``customs/outcomes/{officer}``. The verdict still comes on the gate's topic."""
        if self._mqtt is None and not self.connect():
            return False
        officer = outcome["officer"]
        client = client_for(self.settings, officer, officer)
        try:
            client.connect()
            info = client.publish(
                OUTCOMES.topic(officer), json.dumps(outcome, ensure_ascii=False).encode(), qos=1
            )
            info.wait_for_publish(self.timeout)
            return info.is_published() and client.refusal(info) is None
        except (InfrastructureError, RuntimeError, ValueError):
            return False
        finally:
            client.disconnect()

    def _wait(
        self, keys: list[tuple[str, float]], deadline: float
    ) -> dict[tuple[str, float], dict[str, Any]]:
        with self._cond:
            while True:
                found = {k: self._verdicts[k] for k in keys if k in self._verdicts}
                left = deadline - time.monotonic()
                if len(found) == len(keys) or left <= 0:
                    return found
                self._cond.wait(left)

    def arrive_all(self, arrivals: list[dict[str, Any]]) -> list[Outcome]:
        """Publishes arrivals together and waits for their verdicts (one timeout for the lot).

        An arrival without a verdict in time goes to manual inspection and into the queue.
        Each outcome (verdict and round trip, or manual fallback and why) is recorded in the
        gate event stream for the console.
        """
        keys = [_match_key(a) for a in arrivals]
        with self._cond:  # a verdict of an earlier visit must not count as this one's
            for key in keys:
                if key is not None:
                    self._received_at.pop(key, None)
        start = time.monotonic()
        published = self._publish(arrivals)
        found = (
            self._wait([k for k in keys if k is not None], start + self.timeout)
            if published
            else {}
        )
        elapsed = time.monotonic() - start
        outcomes = []
        events = []
        now = format_ts(datetime.now(UTC))
        for arrival, key in zip(arrivals, keys, strict=True):
            verdict = found.get(key) if key is not None else None
            with self._cond:
                forged = list(self._forged.get(key, [])) if key is not None else []
                received = self._received_at.get(key) if key is not None else None
            round_trip = received - start if verdict is not None and received is not None else None
            if verdict is None:
                self.queue.add(arrival, published, now, MANUAL)
                reason = manual_reason(published, self.timeout)
                events.append(
                    gate_event("manual", arrival, now, reason=reason, published=published)
                )
            else:
                events.append(
                    gate_event("verdict", arrival, now, verdict=verdict, round_trip_s=round_trip)
                )
            outcomes.append(Outcome(arrival, verdict, elapsed, published, forged, round_trip))
        self.events.write(events)
        return outcomes

    def arrive(self, arrival: dict[str, Any]) -> Outcome:
        """Publishes one arrival and waits for its verdict."""
        return self.arrive_all([arrival])[0]

    def record_outcome(self, outcome: dict[str, Any], wait_s: float = 10.0) -> Outcome:
        """Publishes an officer's ManualOutcome and waits (up to ``wait_s``) for the verdict
        the pipeline records it with: release for cleared, inspect for seized."""
        start = time.monotonic()
        published = self._publish_as_officer(outcome)
        key = _match_key(outcome)
        found = self._wait([key], start + wait_s) if published and key is not None else {}
        verdict = found.get(key) if key is not None else None
        if verdict is None:  # fallback: kept on disk, delivered and confirmed by reconcile()
            self.queue.add_outcome(outcome, published, format_ts(datetime.now(UTC)))
        return Outcome(outcome, verdict, time.monotonic() - start, published)

    # ----------------------------------------------------------------- fallback

    def _verdicts_in_redis(
        self, wanted: set[tuple[str, float]]
    ) -> dict[tuple[str, float], dict[str, Any]]:
        client = redis_client(self.settings, "gates", socket_timeout=2)
        found: dict[tuple[str, float], dict[str, Any]] = {}
        try:
            for _, fields in client.xrevrange(
                RedisKeys(self.settings.redis.prefix).verdicts, count=100_000
            ):
                payload = json.loads(fields.get("json", "{}"))
                key = _match_key(payload)
                # Reconciliation trusts only verdicts signed with this gate's key, wherever
                # they come from (anyone who can write the stream could forge one).
                if key in wanted and key not in found and self.genuine(payload):
                    found[key] = payload
        except redis.RedisError:
            return found
        finally:
            client.close()
        return found

    def reconcile(self, wait_s: float = 5.0) -> list[dict[str, Any]]:
        """Settles the queue: re-publishes undelivered arrivals, collects verdicts, records them.

        Returns the entries reconciled now (with their ``verdict``); the rest stay pending.
        """
        entries = self.queue.pending()
        if not entries:
            return []
        undelivered = [e for e in entries if not e["published"] and "arrival" in e]
        if undelivered and self._publish([e["arrival"] for e in undelivered]):
            for entry in undelivered:
                self.queue.mark_published(entry["key"])
        for entry in entries:  # an officer's outcome goes out in the officer's own name
            unsent = not entry["published"] and "outcome" in entry
            if unsent and self._publish_as_officer(entry["outcome"]):
                self.queue.mark_published(entry["key"])
        wanted = {k for e in entries if (k := _match_key(entry_message(e))) is not None}
        deadline = time.monotonic() + wait_s
        found: dict[tuple[str, float], dict[str, Any]] = {}
        while True:
            found.update(self._verdicts_in_redis(wanted - set(found)))
            with self._cond:
                found.update({k: self._verdicts[k] for k in wanted if k in self._verdicts})
            if len(found) == len(wanted) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        now = format_ts(datetime.now(UTC))
        settled = []
        for entry in entries:
            verdict = found.get(_match_key(entry_message(entry)))  # type: ignore[arg-type]
            if verdict is not None:
                self.queue.reconcile(entry["key"], verdict, now)
                settled.append(entry | {"verdict": verdict})
        self.events.write(
            [
                gate_event("reconciled", e["arrival"], now, verdict=e["verdict"])
                for e in settled
                if "arrival" in e
            ]
        )
        return settled
