"""Live trip state in Redis, for gates and the monitoring dashboard (one call per read).

Keys (``<p>`` is the configured prefix, default ``smartlock``):

* ``<p>:trip:<lock_id>``: hash of the lock's current trip (declaration, state, colour,
  position, open alerts, last verdict);
* ``<p>:decl:<declaration_id>``: set of the lock ids the declaration binds;
* ``<p>:positions``: GEO index of current positions, member = lock id;
* ``<p>:alerts``: stream of alerts (field ``json`` holds the Alert payload), each alert id
  added once (``<p>:alert_ids`` remembers them, so a reprocessed event adds nothing);
* ``<p>:verdicts`` and ``<p>:deadletters``: streams of gate verdicts and dead letters, each
  added once (``<p>:verdict_ids`` and ``<p>:deadletter_ids`` hold digests of what was added);
* ``<p>:writeoff:<declaration_id>``: hash lock id -> write-off record (JSON) of each
  released container, written once (a reprocessed arrival does not overwrite it);
* ``<p>:audit:<declaration_id>``: stream of audit entries, one per gate verdict (JSON, field
  ``json``), with who decided, when and on which evidence (alerts and their resolutions),
  one entry per verdict (``<p>:audit_ids``);
* for the console: ``<p>:trip_changes`` (stream of trip hashes as they change), the track of
  each trip and each accepted declaration (names in :mod:`smartlock.adapters.keys`).

Each "add once" remembers the id and appends only if it was new, in one Lua script, so it is
atomic: a Redis that dies between the two cannot leave an id remembered but never appended,
and a retried or reprocessed batch appends nothing twice. A worker's batch is written by one
script call (:data:`WRITE_BATCH`): the same commands, run inside Redis, atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from smartlock.adapters.keys import RedisKeys
from smartlock.contract.codec import DeadLetter
from smartlock.contract.models import format_epoch
from smartlock.core.detector import Output, colour
from smartlock.core.state import AlertRecord, LockState
from smartlock.core.writeoff import alert_summary


def trip_fields(state: LockState) -> dict[str, str]:
    """The Redis hash of a lock's current trip (strings only)."""
    trip = state.trip
    if trip is None:
        return {
            "lock_id": state.lock_id,
            "declaration_id": "",
            "state": "undeclared",
            "colour": "amber" if state.unknown_alert else "green",
        }
    pos = trip.position
    return {
        "lock_id": state.lock_id,
        "declaration_id": trip.declaration_id,
        "container_no": trip.container_no,
        "vehicle_plate": trip.vehicle_plate,
        "corridor_id": trip.corridor_id,
        "destination_gate": trip.destination_gate,
        "state": trip.state.value,
        "colour": colour(trip).value,
        "seal_intact": "1" if trip.seal_intact else "0",
        "lat": f"{pos.lat:.7f}" if pos else "",
        "lon": f"{pos.lon:.7f}" if pos else "",
        "last_ts": format_epoch(trip.last_heard_ts) if trip.last_heard_ts is not None else "",
        "open_alerts": json.dumps(trip.open_alert_ids()),
        "verdict": trip.verdict or "",
        "verdict_reasons": json.dumps(trip.verdict_reasons, ensure_ascii=False),
        "mode": trip.mode,
        "sealed_ts": format_epoch(trip.sealed_ts) if trip.sealed_ts is not None else "",
        "alerts": json.dumps([_alert_record(a) for a in trip.alerts], ensure_ascii=False),
    }


def _alert_record(record: AlertRecord) -> dict[str, Any]:
    """An alert of the trip as the console shows it: open or not, and who resolved it."""
    out = alert_summary(record)
    if record.resolved_by is not None:
        out["resolved_by"] = record.resolved_by
        out["resolved_note"] = record.resolved_note
        out["resolved_at"] = (
            format_epoch(record.resolved_ts) if record.resolved_ts is not None else None
        )
    return out


#: Entries of the trip change stream kept (the console reads it live; older ones only matter
#: to a console that was down, which starts from the trip hashes anyway).
TRIP_CHANGES_MAXLEN = 20_000
#: Fixes kept per trip for the console's track (a G1512 trip at 30 s per fix has ~300).
TRACK_MAX = 10_000


@dataclass(frozen=True)
class Fix:
    """An accepted position fix of a trip, for its track."""

    declaration_id: str
    lock_id: str
    ts: str
    lat: float
    lon: float


#: KEYS: id set, stream. ARGV: id, maxlen, field, value, field, value, ...
ADD_ONCE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
  return 1
end
return 0
"""


#: ARGV[1]: one batch as JSON (see :meth:`RedisState.write`), every value a string. Runs the
#: same commands a pipeline would, in Redis, atomically; the "add once" entries as ADD_ONCE.
WRITE_BATCH = """
local b = cjson.decode(ARGV[1])
for _, t in ipairs(b.trips) do
  redis.call('HSET', t[1], unpack(t[2]))
  redis.call('XADD', b.changes, 'MAXLEN', '~', b.changes_maxlen, '*', 'json', t[3])
  if t[4] ~= '' then redis.call('SADD', t[4], t[5]) end
  if t[7] ~= '' then redis.call('GEOADD', b.positions, t[6], t[7], t[5]) end
end
for _, a in ipairs(b.once) do
  if redis.call('SADD', a[1], a[3]) == 1 then
    redis.call('XADD', a[2], 'MAXLEN', '~', b.maxlen, '*', unpack(a[4]))
  end
end
for _, f in ipairs(b.tracks) do
  redis.call('RPUSH', f[1], f[2])
  redis.call('LTRIM', f[1], -tonumber(b.track_max), -1)
end
for _, d in ipairs(b.sets) do
  redis.call('SET', d[1], d[2])
end
return 1
"""


def _flat(fields: dict[str, str]) -> list[str]:
    return [x for kv in fields.items() for x in kv]


def digest(record: dict[str, Any], drop: tuple[str, ...] = ()) -> str:
    """A stable id of a record, without the fields (wall-clock times) a reprocessing changes."""
    kept = {k: v for k, v in record.items() if k not in drop}
    text = json.dumps(kept, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class RedisState:
    """Writes the live view; every write of a batch goes in one pipeline round trip.

    Args:
        client: an asyncio client logged in as ``worker``
            (:func:`smartlock.adapters.redis_auth.async_redis_client`), ``decode_responses``.
        prefix: the key prefix.
        stream_maxlen: entries kept in the alert, verdict and dead-letter streams.
    """

    def __init__(self, client: aioredis.Redis, prefix: str, stream_maxlen: int = 100_000) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self.maxlen = stream_maxlen
        self._write_batch = self.client.register_script(WRITE_BATCH)

    def _append_once(
        self, pipe: Any, ids: str, stream: str, member: str, fields: dict[str, str]
    ) -> None:
        flat = [x for kv in fields.items() for x in kv]
        pipe.eval(ADD_ONCE, 2, ids, stream, member, self.maxlen, *flat)

    async def write(
        self,
        states: Iterable[LockState],
        outputs: Iterable[Output],
        dead: Iterable[DeadLetter],
        fixes: Iterable[Fix] = (),
        declarations: Iterable[dict[str, Any]] = (),
    ) -> None:
        """Writes a batch: trips (hash and change stream), alerts, verdicts, dead letters, and for
        the console each accepted fix (the trip's track) and each accepted declaration.

        Alerts, verdicts and dead letters are added once each (a retried or reprocessed batch
        adds nothing); a retried batch may append its fixes to a track again."""
        tracks = [
            (self.keys.track(f.declaration_id, f.lock_id), json.dumps([f.ts, f.lat, f.lon]))
            for f in fixes
        ]
        trips = []
        for state in states:
            fields = trip_fields(state)
            declaration = fields["declaration_id"]
            trips.append(
                (
                    self.keys.trip(state.lock_id),
                    [x for kv in fields.items() for x in kv],
                    json.dumps(fields, ensure_ascii=False),
                    self.keys.declaration_locks(declaration) if declaration else "",
                    state.lock_id,
                    fields.get("lon", ""),
                    fields.get("lat", ""),
                )
            )
        once = []
        for o in outputs:
            if o.kind == "alert":  # a reprocessed event adds nothing
                once.append(
                    (self.keys.alert_ids, self.keys.alerts, o.payload["alert_id"],
                     _flat(_stream_fields(o.payload)))
                )  # fmt: skip
            elif o.kind == "verdict":
                once.append(
                    (self.keys.verdict_ids, self.keys.verdicts, digest(o.payload),
                     _flat(_stream_fields(o.payload)))
                )  # fmt: skip
        for d in dead:
            record = d.to_record()
            once.append(
                (self.keys.deadletter_ids, self.keys.deadletters,
                 digest(record, ("received_at",)), ["json", json.dumps(record, ensure_ascii=False)])
            )  # fmt: skip
        sets = [
            (
                self.keys.declaration(declaration["declaration_id"]),
                json.dumps(declaration, ensure_ascii=False, sort_keys=True),
            )
            for declaration in declarations
        ]
        if not (trips or once or tracks or sets):
            return
        batch = {
            "trips": trips,
            "changes": self.keys.trip_changes,
            "changes_maxlen": str(TRIP_CHANGES_MAXLEN),
            "positions": self.keys.positions,
            "once": once,
            "maxlen": str(self.maxlen),
            "tracks": tracks,
            "track_max": str(TRACK_MAX),
            "sets": sets,
        }
        # One command for the whole batch: redis-py spent 40-80 us of the worker's CPU on each
        # command of a pipeline (about six per message), more than judging the message.
        await self._write_batch(args=[json.dumps(batch, ensure_ascii=False)])

    async def write_verdict_records(
        self, audits: list[dict[str, Any]], writeoffs: list[dict[str, Any]]
    ) -> None:
        """Appends audit entries and stores write-offs (first one per declaration and lock wins)."""
        if not audits and not writeoffs:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for entry in audits:
                key = self.keys.audit(entry["declaration_id"] or "undeclared")
                self._append_once(
                    pipe, self.keys.audit_ids, key, digest(entry, ("processed_at", "decided_by")),
                    {"json": json.dumps(entry, ensure_ascii=False, sort_keys=True)},
                )  # fmt: skip
            for record in writeoffs:
                pipe.hsetnx(
                    self.keys.writeoff(record["declaration_id"]),
                    record["lock_id"],
                    json.dumps(record, ensure_ascii=False, sort_keys=True),
                )
            await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()


def _stream_fields(payload: dict[str, Any]) -> dict[str, str]:
    fields = {
        k: str(payload[k])
        for k in ("alert_id", "declaration_id", "lock_id", "type", "severity", "verdict", "gate_id")
        if payload.get(k) is not None
    }
    fields["json"] = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    return fields
