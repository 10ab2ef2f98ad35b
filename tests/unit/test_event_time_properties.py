"""Property tests of CONTRACT section 3 (v2): time-based alerts depend only on publish order.

One published stream (several locks, with silences and store-and-forward bursts) is run
offline through the engine, and live-like through the bridge's :class:`Forwarder` and the
worker's :class:`BatchProcessor`: the locks spread over random partitions, the bridge's
ticks placed after random batch sizes, and the worker reading the partitions in a random
interleaving, in random batch sizes. Every lock's outputs must be byte-identical.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartlock.contract.codec import decode
from smartlock.contract.models import format_ts, iso6346_check_digit
from smartlock.core.detector import Detector, Output
from smartlock.core.engine import Engine
from smartlock.core.evaluate import dumps_line
from smartlock.core.limits import DetectionSettings
from smartlock.stream.inbound import Forwarder
from smartlock.stream.lock_table import LockTable
from smartlock.stream.processor import BatchProcessor, Record
from tests.builders import STREAM_KEY, T0, Trip, synthetic_geofences

PROFILE = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMITS = DetectionSettings(silence_limit_s=300.0, overdue_grace_s=600.0)
GEO = synthetic_geofences()

Published = tuple[float, str, dict[str, Any]]  # (publish time, topic, payload)


def container(n: int) -> str:
    first = f"CSQU{n:06d}"
    return first + str(iso6346_check_digit(first))


@st.composite
def lock_stream(draw: st.DrawFn, n: int) -> list[Published]:
    """One lock's trip as published: fixes, silences, coverage gaps uploaded in a burst."""
    start = T0 + timedelta(seconds=draw(st.integers(0, 900)))
    trip = Trip(lock_id=f"L{n}", declaration_id=f"D{n}", container=container(n), t=start)
    trip.declare(eta_h=draw(st.sampled_from([0.5, 1.0, 3.0])))
    trip.event("sealed", at=(0, 0))
    published: list[Published] = [(start.timestamp() - 60, *trip.messages[0])]
    published.append((_ts(trip.messages[1]), *trip.messages[1]))
    buffered: list[tuple[str, dict[str, Any]]] = []
    x = 0.0
    for _ in range(draw(st.integers(2, 8))):
        kind = draw(st.sampled_from(["drive", "drive", "silence", "gap", "gap_upload"]))
        if kind == "silence":  # out of coverage, nothing kept: the next fix comes late
            trip.t += timedelta(seconds=draw(st.integers(100, 900)))
        count = draw(st.integers(1, 8))
        dt = draw(st.sampled_from([20.0, 30.0, 60.0]))
        for _ in range(count):
            x = min(x + 0.5, 48.0)
            trip.fix(x, dt=dt)
            message = trip.messages[-1]
            if kind == "gap_upload":
                buffered.append(message)  # stored by the lock, uploaded when back in coverage
            elif kind != "gap":  # a gap without upload: the readings are lost
                for old in buffered:  # the burst goes out, oldest first, before the live fix
                    published.append((_ts(message), *old))
                buffered = []
                published.append((_ts(message), *message))
    if draw(st.booleans()):
        trip.arrive()
        published.append((_ts(trip.messages[-1]), *trip.messages[-1]))
    return published


def _ts(message: tuple[str, dict[str, Any]]) -> float:
    return datetime.fromisoformat(message[1]["ts"].replace("Z", "+00:00")).timestamp()


@st.composite
def fleets(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    """Several locks' streams merged in publish order (ties broken at random)."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    streams = [draw(lock_stream(n)) for n in range(draw(st.integers(2, 4)))]
    tagged = [
        (when, rng.random(), i, j, topic, payload)
        for i, stream in enumerate(streams)
        for j, (when, topic, payload) in enumerate(stream)
    ]
    tagged.sort(key=lambda t: (t[0], t[1], t[2], t[3]))
    return [(topic, payload) for *_, topic, payload in tagged]


def detector() -> Detector:
    return Detector(LIMITS, GEO)


def offline(stream: list[tuple[str, dict[str, Any]]]) -> list[Output]:
    engine = Engine(detector())
    outputs: list[Output] = []
    for topic, payload in stream:
        outputs += engine.feed(decode(topic, payload)).outputs
    return outputs


def live(
    stream: list[tuple[str, dict[str, Any]]], partitions: int, batches: int, rng: random.Random
) -> list[Output]:
    """The stream through a bridge and a worker, as Kafka would carry it."""
    forwarder = Forwarder("b1", stream_key=STREAM_KEY)
    logs: list[list[Record]] = [[] for _ in range(partitions)]
    where: dict[bytes, int] = {}
    received = datetime(2026, 12, 1, tzinfo=UTC)  # wall clock after the trace: no future_ts
    for k, (topic, payload) in enumerate(stream):
        forwarded = forwarder.forward(topic, json.dumps(payload).encode(), received)
        assert forwarded.dead is None
        for record in forwarded.records:
            assert record.key is not None
            p = where.setdefault(record.key, rng.randrange(partitions))
            logs[p].append(Record(record.key, record.value, p, record.headers))
        if rng.randrange(batches) == 0 or k == len(stream) - 1:  # end of a bridge batch: tick
            tick = forwarder.tick(received)
            if tick is not None:
                for p in range(partitions):
                    logs[p].append(Record(None, tick.value, p, tick.headers))
    processor = BatchProcessor(detector(), LockTable({}), stream_keys=[STREAM_KEY])
    outputs: list[Output] = []
    cursors = [0] * partitions
    while any(c < len(log) for c, log in zip(cursors, logs, strict=True)):
        batch: list[Record] = []
        for _ in range(rng.randint(1, 40)):  # a worker batch mixes partitions at random
            open_ = [p for p in range(partitions) if cursors[p] < len(logs[p])]
            if not open_:
                break
            p = rng.choice(open_)
            batch.append(logs[p][cursors[p]])
            cursors[p] += 1
        result = processor.process(batch)
        assert result.dead_letters == []
        outputs += result.outputs
    return outputs


def per_lock(outputs: list[Output]) -> dict[str, list[str]]:
    lines: dict[str, list[str]] = defaultdict(list)
    for output in outputs:
        lines[output.payload["lock_id"]].append(dumps_line(output))
    return dict(lines)


@PROFILE
@given(
    stream=fleets(),
    partitions=st.integers(1, 6),
    batches=st.integers(1, 30),
    seed=st.integers(0, 2**32),
)
def test_partitions_batches_and_interleavings_change_no_output(
    stream: list[tuple[str, dict[str, Any]]], partitions: int, batches: int, seed: int
) -> None:
    expected = per_lock(offline(stream))
    assert per_lock(live(stream, partitions, batches, random.Random(seed))) == expected


@PROFILE
@given(stream=fleets())
def test_one_silence_raises_at_most_one_signal_lost(
    stream: list[tuple[str, dict[str, Any]]],
) -> None:
    alerts = [o.payload for o in offline(stream) if o.kind == "alert"]
    lost = [a for a in alerts if a["type"] == "signal_lost"]
    assert len({a["alert_id"] for a in lost}) == len(lost)
    # Between two signal_lost alerts of a lock, the lock was heard with a current message:
    # two alerts never name the same last-heard time, and never overlap in time.
    by_lock: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in lost:
        by_lock[a["lock_id"]].append(a)
    for items in by_lock.values():
        heard = [a["detail"]["last_heard_ts"] for a in items]
        assert heard == sorted(set(heard))
        assert [a["ts"] for a in items] == sorted({a["ts"] for a in items})


def test_a_store_and_forward_burst_raises_one_signal_lost_however_it_interleaves() -> None:
    # L1 goes out of coverage for 20 minutes, stores a fix every 30 s, then uploads them
    # all in a burst while L2's live fixes keep coming: exactly one signal_lost for L1.
    l1 = Trip(lock_id="L1", declaration_id="D1", container=container(1)).declare()
    l2 = Trip(lock_id="L2", declaration_id="D2", container=container(2)).declare()
    l1.event("sealed", at=(0, 0)).drive(0, 2)
    l2.event("sealed", at=(0, 0)).drive(0, 2)
    published: list[tuple[str, dict[str, Any]]] = [*l1.messages, *l2.messages]
    start = len(l1.messages)
    l1.drive(2.5, 20, step_km=0.5)  # 36 fixes, 30 s apart: 18 minutes out of coverage
    burst = l1.messages[start:]
    live_l2 = Trip(lock_id="L2", declaration_id="D2", container=container(2), t=l2.t, seq=l2.seq)
    live_l2.drive(2.5, 20, step_km=0.5)
    published += live_l2.messages  # L2 live all along: the clock passes L1's deadline
    for i, message in enumerate(burst):  # L1's burst, with L2's next fixes in between
        published.append(message)
        if i % 5 == 0:
            live_l2.fix(20.0 + i / 100)
            published.append(live_l2.messages[-1])
    l1.fix(20.5)  # back in coverage: a current fix ends the silence
    published.append(l1.messages[-1])
    outputs = offline(published)
    lost = [o.payload for o in outputs if o.kind == "alert" and o.payload["type"] == "signal_lost"]
    assert [a["lock_id"] for a in lost] == ["L1"]
    assert lost[0]["detail"]["last_heard_ts"] == format_ts(_dt(burst[0]) - timedelta(seconds=30))
    status = [o.payload for o in outputs if o.kind == "status" and o.payload["lock_id"] == "L1"]
    assert status[-1]["open_alerts"] == []  # closed by the current fix, not by the burst
    for seed in range(20):
        rng = random.Random(seed)
        assert per_lock(live(published, rng.randint(1, 4), rng.randint(1, 10), rng)) == per_lock(
            outputs
        )


def _dt(message: tuple[str, dict[str, Any]]) -> datetime:
    return datetime.fromtimestamp(_ts(message), UTC)


def test_a_partition_clock_waits_for_every_live_bridge_and_forgets_a_stopped_one() -> None:
    engine = Engine(detector())
    engine.observe(100.0, 0, "b1", at=1000.0)
    engine.observe(50.0, 0, "b2", at=1000.0)
    assert engine.clock(0) == 50.0  # b2 may still deliver messages published before 100
    engine.observe(None, 0, "b2", at=1001.0, closing=True)
    assert engine.clock(0) == 100.0  # b2 stopped cleanly: it holds nothing back
    engine.observe(60.0, 0, "b2", at=1002.0)  # back under the same name: a floor again
    assert engine.clock(0) == 60.0
    engine.observe(120.0, 0, "b1", at=1040.0)  # b2 silent for 38 s while b1 ticks
    assert engine.clock(0) == 120.0
    assert engine.clock(1) is None  # another partition has its own clock
