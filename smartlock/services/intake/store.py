"""Where accepted declarations live: Redis (service) or memory (tests).

Redis keys (``<p>`` is ``redis.prefix``, default ``smartlock``):

* ``<p>:intake:<reference>``: hash, field ``record`` = the record as JSON, ``status``
  (``accepted`` / ``bound``), while a bind is publishing ``binding``, and one field
  ``writeoff:<lock_id>`` per write-off notice the origin office received (set once, so
  notices of a train's containers never overwrite each other);
* ``<p>:intake:declaration:<declaration_id>``: the reference of that declaration id (unique);
* ``<p>:intake:by:<declarant>``: set of the references a declarant filed (its list);

References are random (see :mod:`smartlock.services.intake.reference`); a drawn reference is
claimed with HSETNX, so two submissions can never share one.

A record is a JSON object: ``reference``, ``declaration_id``, ``declarant`` (the identity that
filed it, the only one besides customs that may see it), ``status``, ``submitted_at``,
``bound_at`` (null until bound), ``vehicle_plate``, ``fee``, ``declaration`` (the contract
payload) and ``intake`` (consignor, consignee, cargo details, local times); after an
amendment also ``version``, ``amended_at`` and ``versions`` (every earlier version), after a
cancellation ``cancelled_at`` and ``cancel_reason``; ``history`` lists what happened to it
(``submitted``, ``amended``, ``bound``, ``approved``, ``cancelled``, ``written_off``). A read
record also carries ``writeoffs`` (lock id -> the WriteOffNotice received for it, from the
``writeoff:`` fields). The trip's progress before the write-off (sealed, in transit, released,
inspect) is read from the pipeline's live trip hash in the same Redis
(:meth:`RedisStore.pipeline_view`); the write-off itself only from the notice.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

from smartlock.adapters.keys import RedisKeys
from smartlock.contract.models import format_ts
from smartlock.errors import SmartlockError
from smartlock.services.intake.reference import make_reference
from smartlock.services.intake.rules import Accepted

#: The hash field of a container's write-off notice: ``writeoff:<lock_id>``.
WRITEOFF_FIELD = "writeoff:"


class IntakeError(SmartlockError):
    """A declaration cannot be stored or bound as asked.

    Attributes:
        reference: the reference concerned, if any.
    """

    def __init__(self, message: str, reference: str | None = None) -> None:
        self.reference = reference
        super().__init__(message)


class DuplicateDeclaration(IntakeError):
    """The declaration id is already taken by another accepted declaration."""


def new_record(
    reference: str, accepted: Accepted, fee: dict[str, Any], now: datetime, declarant: str
) -> dict[str, Any]:
    """The stored record of a freshly accepted declaration filed by ``declarant``."""
    decl = accepted.with_reference(reference).declaration
    return {
        "reference": reference,
        "declaration_id": decl.declaration_id,
        "declarant": declarant,
        "status": "accepted",
        "submitted_at": format_ts(now),
        "bound_at": None,
        "vehicle_plate": decl.vehicle_plate,
        "fee": fee,
        "declaration": decl.to_payload(),
        "intake": accepted.intake,
        "history": [{"event": "submitted", "at": format_ts(now), "by": declarant}],
    }


def bound_event(plate: str, now: datetime) -> dict[str, Any]:
    """The history entry of a binding."""
    return {"event": "bound", "at": format_ts(now), "vehicle_plate": plate}


class DeclarationStore(Protocol):
    """What the service needs from a store."""

    async def create(
        self, accepted: Accepted, fee: dict[str, Any], now: datetime, declarant: str
    ) -> dict[str, Any]: ...
    async def get(self, reference: str) -> dict[str, Any] | None: ...
    async def reference_of(self, declaration_id: str) -> str | None: ...
    async def claim_binding(self, reference: str) -> bool: ...
    async def release_binding(self, reference: str) -> None: ...
    async def mark_bound(self, reference: str, plate: str, now: datetime) -> dict[str, Any]: ...
    async def save(self, record: dict[str, Any]) -> dict[str, Any]: ...
    async def list_records(self, declarant: str | None) -> list[dict[str, Any]]: ...
    async def add_writeoff(self, reference: str, lock_id: str, notice: dict[str, Any]) -> bool: ...
    async def pipeline_view(self, record: dict[str, Any]) -> dict[str, dict[str, str]]: ...


class MemoryStore:
    """An in-process store with the same behaviour as :class:`RedisStore` (tests, demos)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.by_declaration: dict[str, str] = {}
        self._binding: set[str] = set()
        #: What the pipeline reports (tests fill it): lock -> trip hash.
        self.trips: dict[str, dict[str, str]] = {}
        #: reference -> lock -> the write-off notice received.
        self.writeoffs: dict[str, dict[str, dict[str, Any]]] = {}

    async def create(
        self, accepted: Accepted, fee: dict[str, Any], now: datetime, declarant: str
    ) -> dict[str, Any]:
        reference = make_reference(now)
        while reference in self.records:
            reference = make_reference(now)
        record = new_record(reference, accepted, fee, now, declarant)
        if record["declaration_id"] in self.by_declaration:
            raise DuplicateDeclaration(
                f"declaration id {record['declaration_id']} is already declared "
                f"(reference {self.by_declaration[record['declaration_id']]}); "
                "use a new id or omit it",
                reference,
            )
        self.by_declaration[record["declaration_id"]] = reference
        self.records[reference] = record
        return json.loads(json.dumps(record))

    async def get(self, reference: str) -> dict[str, Any] | None:
        record = self.records.get(reference)
        if not record:
            return None
        return json.loads(json.dumps(record | {"writeoffs": self.writeoffs.get(reference, {})}))

    async def reference_of(self, declaration_id: str) -> str | None:
        return self.by_declaration.get(declaration_id)

    async def claim_binding(self, reference: str) -> bool:
        if reference in self._binding or self.records[reference]["status"] != "accepted":
            return False
        self._binding.add(reference)
        return True

    async def release_binding(self, reference: str) -> None:
        self._binding.discard(reference)

    async def mark_bound(self, reference: str, plate: str, now: datetime) -> dict[str, Any]:
        record = self.records[reference]
        record.update(status="bound", bound_at=format_ts(now), bound_plate=plate)
        record["history"] = [*record.get("history", []), bound_event(plate, now)]
        return await self.get(reference) or record

    async def save(self, record: dict[str, Any]) -> dict[str, Any]:
        stored = {k: v for k, v in record.items() if k != "writeoffs"}
        self.records[record["reference"]] = json.loads(json.dumps(stored))
        return await self.get(record["reference"]) or stored

    async def list_records(self, declarant: str | None) -> list[dict[str, Any]]:
        found = [await self.get(ref) for ref in self.records]
        return [r for r in found if r and (declarant is None or r.get("declarant") == declarant)]

    async def add_writeoff(self, reference: str, lock_id: str, notice: dict[str, Any]) -> bool:
        notices = self.writeoffs.setdefault(reference, {})
        if lock_id in notices:
            return False
        notices[lock_id] = json.loads(json.dumps(notice))
        return True

    async def pipeline_view(self, record: dict[str, Any]) -> dict[str, dict[str, str]]:
        return {lock: self.trips[lock] for lock in _locks(record) if lock in self.trips}


class RedisStore:
    """Declarations in Redis (see the module docstring for the keys).

    Args:
        client: a ``redis.asyncio.Redis`` client (``decode_responses=True``).
        prefix: key prefix (setting ``redis.prefix``).
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self._redis = client
        self.keys = RedisKeys(prefix)

    def _key(self, reference: str) -> str:
        return self.keys.intake(reference)

    def _index(self, declaration_id: str) -> str:
        return self.keys.intake_by_declaration(declaration_id)

    async def create(
        self, accepted: Accepted, fee: dict[str, Any], now: datetime, declarant: str
    ) -> dict[str, Any]:
        reference = make_reference(now)
        while not await self._redis.hsetnx(self._key(reference), "status", "accepted"):
            reference = make_reference(now)  # drawn twice in 2**40: draw again
        record = new_record(reference, accepted, fee, now, declarant)
        if not await self._redis.set(self._index(record["declaration_id"]), reference, nx=True):
            await self._redis.delete(self._key(reference))
            other = await self._redis.get(self._index(record["declaration_id"]))
            raise DuplicateDeclaration(
                f"declaration id {record['declaration_id']} is already declared "
                f"(reference {other}); use a new id or omit it",
                reference,
            )
        await self._redis.hset(
            self._key(reference),
            mapping={"record": json.dumps(record, ensure_ascii=False), "status": "accepted"},
        )
        await self._redis.sadd(self._owned(declarant), reference)
        return record

    def _owned(self, declarant: str) -> str:
        return self.keys.intake_by_declarant(declarant)

    async def save(self, record: dict[str, Any]) -> dict[str, Any]:
        stored = {k: v for k, v in record.items() if k != "writeoffs"}  # kept in their fields
        await self._redis.hset(
            self._key(record["reference"]),
            mapping={"record": json.dumps(stored, ensure_ascii=False), "status": record["status"]},
        )
        return await self.get(record["reference"]) or stored

    async def add_writeoff(self, reference: str, lock_id: str, notice: dict[str, Any]) -> bool:
        """Keeps the write-off notice of ``lock_id``; False if one was kept already."""
        return bool(
            await self._redis.hsetnx(
                self._key(reference),
                f"{WRITEOFF_FIELD}{lock_id}",
                json.dumps(notice, ensure_ascii=False),
            )
        )

    async def list_records(self, declarant: str | None) -> list[dict[str, Any]]:
        if declarant is not None:
            references = sorted(await self._redis.smembers(self._owned(declarant)))
        else:  # customs: every declarant's
            references = []
            async for key in self._redis.scan_iter(match=self.keys.intake_by_declarant("*")):
                references.extend(await self._redis.smembers(key))
        records = [await self.get(r) for r in sorted(references)]
        return [r for r in records if r is not None]

    async def pipeline_view(self, record: dict[str, Any]) -> dict[str, dict[str, str]]:
        """The pipeline's live trip hash of each lock (same Redis, same prefix:
        ``<p>:trip:<lock>``)."""
        trips = {}
        for lock in _locks(record):
            trip = await self._redis.hgetall(self.keys.trip(lock))
            if trip:
                trips[lock] = trip
        return trips

    async def get(self, reference: str) -> dict[str, Any] | None:
        fields = await self._redis.hgetall(self._key(reference))
        if not fields.get("record"):
            return None
        record: dict[str, Any] = json.loads(fields["record"])
        record["writeoffs"] = {
            name.removeprefix(WRITEOFF_FIELD): json.loads(value)
            for name, value in sorted(fields.items())
            if name.startswith(WRITEOFF_FIELD)
        }
        return record

    async def reference_of(self, declaration_id: str) -> str | None:
        value = await self._redis.get(self._index(declaration_id))
        return str(value) if value else None

    async def claim_binding(self, reference: str) -> bool:
        # HSETNX is the atomic claim: two concurrent binds cannot both publish.
        if await self._redis.hget(self._key(reference), "status") != "accepted":
            return False
        return bool(await self._redis.hsetnx(self._key(reference), "binding", "1"))

    async def release_binding(self, reference: str) -> None:
        await self._redis.hdel(self._key(reference), "binding")

    async def mark_bound(self, reference: str, plate: str, now: datetime) -> dict[str, Any]:
        record = await self.get(reference)
        if record is None:
            raise IntakeError(f"declaration {reference} vanished while binding", reference)
        record.update(status="bound", bound_at=format_ts(now), bound_plate=plate)
        record["history"] = [*record.get("history", []), bound_event(plate, now)]
        return await self.save(record)


def _locks(record: dict[str, Any]) -> list[str]:
    decl = record["declaration"]
    return [c["lock_id"] for c in decl.get("locks") or [decl]]
