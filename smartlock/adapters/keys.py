"""Every Redis key the project reads or writes, built in one place from the configured prefix.

``<p>`` is ``redis.prefix`` (default ``smartlock``):

* ``<p>:trip:<lock_id>``: hash of the lock's current trip (declaration, state, colour,
  position, open alerts, last verdict); ``<p>:trip_changes``: stream of the same hashes as
  they change (field ``json``), which the console tails;
* ``<p>:decl:<declaration_id>``: set of the lock ids the declaration binds;
* ``<p>:positions``: GEO index of current positions, member = lock id;
* ``<p>:track:<declaration_id>:<lock_id>``: list of ``[ts, lat, lon]`` fixes of a trip;
* ``<p>:declaration:<declaration_id>``: the accepted declaration (JSON);
* ``<p>:alerts``, ``<p>:verdicts``, ``<p>:deadletters``: streams of alerts, gate verdicts and
  dead letters, each entry added once (``<p>:alert_ids``, ``<p>:verdict_ids`` and
  ``<p>:deadletter_ids`` remember what was added);
* ``<p>:writeoff:<declaration_id>``: hash lock id -> write-off record;
* ``<p>:audit:<declaration_id>``: stream of audit entries, one per gate verdict (``<p>:audit_ids``);
* ``<p>:workers``: hash worker name -> the partitions it owns;
* ``<p>:alive:<role>:<name>``: a running bridge's or worker's name, expiring without
  heartbeats; ``<p>:members``: hash ``<role>:<name>`` -> its last heartbeat (JSON);
* ``<p>:lease:<name>``: who holds an exclusive role (``bridge``: the inbound MQTT session),
  expiring unless renewed;
* ``<p>:intake:<reference>`` and ``<p>:intake:declaration:<declaration_id>``: the intake's
  declarations and the index from declaration id to reference; ``<p>:intake:by:<declarant>``:
  the references a declarant filed;
* ``<p>:gate:events``: stream of what gate clients saw (field ``json``): each arrival's signed
  verdict with its round trip (arrival published -> verdict received), each fall back to manual
  inspection and each later reconciliation, for the console's gate view;
* ``<p>:console:*``: the console's acknowledgements, pending resolutions, desk stream, sessions.

:meth:`RedisKeys.access` says which of these each service account's Redis user may read and
write (its ACL key patterns, :mod:`smartlock.adapters.redis_auth`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one prefix: ``RedisKeys(settings.redis.prefix).trip("LK-01")``."""

    prefix: str = "smartlock"

    # --- live trip state (the worker writes, gates and the console read)

    def trip(self, lock_id: str) -> str:
        return f"{self.prefix}:trip:{lock_id}"

    @property
    def trip_pattern(self) -> str:
        return f"{self.prefix}:trip:*"

    @property
    def trip_changes(self) -> str:
        return f"{self.prefix}:trip_changes"

    def declaration_locks(self, declaration_id: str) -> str:
        return f"{self.prefix}:decl:{declaration_id}"

    @property
    def positions(self) -> str:
        return f"{self.prefix}:positions"

    def track(self, declaration_id: str, lock_id: str) -> str:
        return f"{self.prefix}:track:{declaration_id}:{lock_id}"

    def declaration(self, declaration_id: str) -> str:
        return f"{self.prefix}:declaration:{declaration_id}"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def alert_ids(self) -> str:
        return f"{self.prefix}:alert_ids"

    @property
    def verdicts(self) -> str:
        return f"{self.prefix}:verdicts"

    @property
    def verdict_ids(self) -> str:
        return f"{self.prefix}:verdict_ids"

    @property
    def deadletters(self) -> str:
        return f"{self.prefix}:deadletters"

    @property
    def deadletter_ids(self) -> str:
        return f"{self.prefix}:deadletter_ids"

    def writeoff(self, declaration_id: str) -> str:
        return f"{self.prefix}:writeoff:{declaration_id}"

    def audit(self, declaration_id: str) -> str:
        return f"{self.prefix}:audit:{declaration_id}"

    @property
    def audit_ids(self) -> str:
        return f"{self.prefix}:audit_ids"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def alive(self, role: str, name: str) -> str:
        return f"{self.prefix}:alive:{role}:{name}"

    @property
    def members(self) -> str:
        return f"{self.prefix}:members"

    def lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    # --- the gate clients

    @property
    def gate_events(self) -> str:
        return f"{self.prefix}:gate:events"

    # --- the intake

    def intake(self, reference: str) -> str:
        return f"{self.prefix}:intake:{reference}"

    def intake_by_declaration(self, declaration_id: str) -> str:
        return f"{self.prefix}:intake:declaration:{declaration_id}"

    def intake_by_declarant(self, declarant: str) -> str:
        return f"{self.prefix}:intake:by:{declarant}"

    # --- the console's own keys

    @property
    def desk(self) -> str:
        return f"{self.prefix}:console:desk"

    @property
    def acks(self) -> str:
        return f"{self.prefix}:console:acks"

    @property
    def pending(self) -> str:
        return f"{self.prefix}:console:pending"

    def session(self, digest: str) -> str:
        return f"{self.prefix}:console:session:{digest}"

    # --- who may touch which keys (Redis ACL key patterns of each service account)

    def access(self, account: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(read-write, read-only) key patterns of ``account``'s Redis user; ((), ()) if none.

        The worker writes the live state; a bridge only its own heartbeat and the inbound
        session's lease; the intake its declarations (and the write-off notices kept on them) and
        reads the trips it reports; the console reads everything and writes only its own keys; ``gates`` (the
        gate clients) appends their event log and reads the verdict stream; ``reader``
        (``resolve``, ``stack status``, the demo's displays) reads only; ``admin`` may do
        anything.
        """
        p = self.prefix
        pipeline = (
            self.trip("*"),
            self.trip_changes,
            self.declaration_locks("*"),
            self.positions,
            f"{p}:track:*",
            self.declaration("*"),
            self.alerts,
            self.alert_ids,
            self.verdicts,
            self.verdict_ids,
            self.deadletters,
            self.deadletter_ids,
            self.writeoff("*"),
            self.audit("*"),
            self.audit_ids,
            self.workers,
            f"{p}:alive:worker:*",
            self.members,
        )
        everything = (f"{p}:*",)
        table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
            "worker": (pipeline, ()),
            "bridge": ((f"{p}:alive:bridge:*", self.members, self.lease("bridge")), ()),
            # The write-off reaches the intake as a notice on MQTT, not from this record.
            "intake": ((f"{p}:intake:*",), (self.trip("*"),)),
            "console": ((f"{p}:console:*",), everything),
            "reader": ((), everything),
            # The gate clients (one account for all): their event log, and the verdict
            # stream they reconcile from.
            "gates": ((self.gate_events,), (self.verdicts,)),
            "admin": (("*",), ()),
        }
        return table.get(account, ((), ()))
