"""The one Redis key builder: every key the worker writes and the console reads (``<p>`` = prefix).

* ``<p>:trip:<lock_id>``: hash of the lock's current trip; ``<p>:trip_changes``: stream of
  the same hashes as they change (field ``json``), which the console tails;
* ``<p>:alerts``, ``<p>:verdicts``, ``<p>:deadletters``: streams (field ``json``);
* ``<p>:track:<declaration_id>:<lock_id>``: list of ``[ts, lat, lon]`` fixes of a trip;
* ``<p>:declaration:<declaration_id>``: the accepted declaration (JSON);
* ``<p>:writeoff:<declaration_id>``, ``<p>:audit:<declaration_id>``: see the gate docs;
* ``<p>:workers``: worker name -> partitions it owns;
* ``<p>:console:*``: the console's acknowledgements, pending resolutions, desk stream, sessions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one prefix."""

    prefix: str

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
    def deadletters(self) -> str:
        return f"{self.prefix}:deadletters"

    @property
    def trip_changes(self) -> str:
        return f"{self.prefix}:trip_changes"

    @property
    def positions(self) -> str:
        return f"{self.prefix}:positions"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def trip_pattern(self) -> str:
        return f"{self.prefix}:trip:*"

    def trip(self, lock_id: str) -> str:
        return f"{self.prefix}:trip:{lock_id}"

    def declaration_locks(self, declaration_id: str) -> str:
        return f"{self.prefix}:decl:{declaration_id}"

    def track(self, declaration_id: str, lock_id: str) -> str:
        return f"{self.prefix}:track:{declaration_id}:{lock_id}"

    def declaration(self, declaration_id: str) -> str:
        return f"{self.prefix}:declaration:{declaration_id}"

    def writeoff(self, declaration_id: str) -> str:
        return f"{self.prefix}:writeoff:{declaration_id}"

    def audit(self, declaration_id: str) -> str:
        return f"{self.prefix}:audit:{declaration_id}"

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
