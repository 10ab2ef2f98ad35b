"""Every Redis key the project reads or writes, built in one place from the configured prefix.

``<p>`` is ``redis.prefix`` (default ``smartlock``):

* ``<p>:trip:<lock_id>``: hash of the lock's current trip (declaration, state, colour,
  position, open alerts, last verdict);
* ``<p>:decl:<declaration_id>``: set of the lock ids the declaration binds;
* ``<p>:positions``: GEO index of current positions, member = lock id;
* ``<p>:alerts``: stream of alerts; ``<p>:alert_ids``: the alert ids already added;
* ``<p>:verdicts`` and ``<p>:deadletters``: streams of gate verdicts and dead letters;
* ``<p>:writeoff:<declaration_id>``: hash lock id -> write-off record;
* ``<p>:audit:<declaration_id>``: stream of audit entries, one per gate verdict;
* ``<p>:workers``: hash worker name -> the partitions it owns;
* ``<p>:intake:<reference>`` and ``<p>:intake:declaration:<declaration_id>``: the intake's
  declarations and the index from declaration id to reference.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one prefix. ``RedisKeys(settings.redis.prefix).trip("LK-01")``."""

    prefix: str = "smartlock"

    def trip(self, lock_id: str) -> str:
        return f"{self.prefix}:trip:{lock_id}"

    def declaration_locks(self, declaration_id: str) -> str:
        return f"{self.prefix}:decl:{declaration_id}"

    @property
    def positions(self) -> str:
        return f"{self.prefix}:positions"

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
    def dead_letters(self) -> str:
        return f"{self.prefix}:deadletters"

    def writeoff(self, declaration_id: str) -> str:
        return f"{self.prefix}:writeoff:{declaration_id}"

    def audit(self, declaration_id: str) -> str:
        return f"{self.prefix}:audit:{declaration_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def intake(self, reference: str) -> str:
        return f"{self.prefix}:intake:{reference}"

    def intake_by_declaration(self, declaration_id: str) -> str:
        return f"{self.prefix}:intake:declaration:{declaration_id}"

    def pattern(self, name: str) -> str:
        """A SCAN pattern over one family of keys, e.g. ``pattern("trip")``."""
        return f"{self.prefix}:{name}:*"
