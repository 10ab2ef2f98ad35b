"""The lock table's changelog records (issue 13): values are written by orjson now.

Faust reads the changelog back with its json codec when a worker recovers its table, so a
record written by orjson and one written by ``json.dumps`` (the earlier format, still on the
topic after an upgrade) must both load as the same table value, and that value must give
back the same lock state.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from faust.serializers import codecs

from smartlock.core.detector import Detector
from smartlock.core.limits import DetectionSettings
from smartlock.core.state import LockState
from smartlock.stream.inbound import Forwarder
from smartlock.stream.lock_table import LockTable
from smartlock.stream.processor import BatchProcessor, Record
from tests.builders import STREAM_KEY, T0, Trip, synthetic_geofences

RECEIVED = T0 + timedelta(days=9)


class _Batch:
    """Stands in for aiokafka's BatchBuilder: takes records until ``capacity`` bytes are used
    (the first record always fits), then refuses them (``append`` returns None)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, key: bytes, value: bytes, timestamp: float | None) -> object | None:
        used = sum(len(k) + len(v) for k, v in self.records)
        if self.records and used + len(key) + len(value) > self.capacity:
            return None
        self.records.append((key, value))
        return object()


class _Producer:
    """Stands in for the aiokafka producer (the Kafka edge): keeps the record batches it is
    given, each as (topic, partition, records)."""

    def __init__(self, capacity: int = 512 * 1024) -> None:
        self.capacity = capacity
        self.batches: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []

    @property
    def sent(self) -> list[tuple[str, bytes, bytes, int]]:
        return [(t, k, v, p) for t, p, records in self.batches for k, v in records]

    def create_batch(self) -> _Batch:
        return _Batch(self.capacity)

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> Any:
        self.batches.append((topic, partition, batch.records))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _changes() -> tuple[LockTable, list[Any]]:
    trip = Trip(lock_id="L1").declare().event("sealed", at=(0, 0)).drive(0, 6)  # plate 浙G12345
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    records = []
    for topic, payload in trip.messages:
        forwarded = forwarder.forward(topic, json.dumps(payload).encode(), RECEIVED)
        records += [Record(r.key, r.value, 2, r.headers) for r in forwarded.records]
    table = LockTable({}, "locks-changelog")
    BatchProcessor(Detector(DetectionSettings(), synthetic_geofences()), table,
                   stream_keys=[STREAM_KEY]).process(records)  # fmt: skip
    return table, table.take_changes()


def test_changelog_records_load_with_fausts_codec_like_the_old_json_records() -> None:
    table, changes = _changes()
    assert [key for _, key, _ in changes] == ["L1"]
    producer = _Producer()
    asyncio.run(table.write_changes(producer, changes))
    [(_, _, value)] = changes
    topic, raw_key, raw_value, partition = producer.sent[0]
    assert (topic, partition) == ("locks-changelog", 2)
    assert raw_key == json.dumps("L1").encode()  # the key's bytes are as before
    old_value = json.dumps(value, separators=(",", ":")).encode()  # the earlier record
    faust_json = codecs.get_codec("json")
    assert faust_json.loads(raw_value) == faust_json.loads(old_value) == value
    assert LockState.model_validate(faust_json.loads(raw_value)["state"]) == table["L1"]
    # the partition's last record is in a batch of its own (Tansu's end offset is exact)
    assert producer.batches[-1] == ("locks-changelog", 2, [(raw_key, raw_value)])


def test_non_ascii_text_is_kept_as_utf8_and_loads_back() -> None:
    value = {"partition": 0, "state": {"declarant": "义乌 Trading é"}}
    table = LockTable({}, "locks-changelog")
    producer = _Producer()
    asyncio.run(table.write_changes(producer, [(0, "L2", value)]))
    raw = producer.sent[0][2]
    assert "义乌".encode() in raw  # not \\u escapes
    assert codecs.get_codec("json").loads(raw) == value


def test_each_partition_ends_with_a_one_record_batch_and_keeps_its_order() -> None:
    changes = [(p, f"L{n}", {"partition": p, "state": {"n": n}}) for n in range(7) for p in (0, 3)]
    producer = _Producer(capacity=80)  # two records (34 bytes each) per batch
    asyncio.run(LockTable({}, "locks-changelog").write_changes(producer, changes))
    for p in (0, 3):
        batches = [records for _, partition, records in producer.batches if partition == p]
        assert [len(b) for b in batches[:-1]] == [2, 2, 2] and len(batches[-1]) == 1
        written = [json.loads(k) for b in batches for k, _ in b]
        assert written == [f"L{n}" for n in range(7)]  # every change once, in order
