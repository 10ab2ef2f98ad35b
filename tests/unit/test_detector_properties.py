"""Property tests: duplicates and replays never create extra alerts; alert ids are stable."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import Trip, merge, run

PROFILE = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def trips(draw: st.DrawFn, lock: str = "L1", declaration: str = "D1") -> Trip:
    """A trip with randomly placed incidents: detours, breaches, stops, silences, jumps."""
    container = {"L1": "CSQU3054383", "L2": "MSCU1234566"}[lock]
    trip = Trip(lock_id=lock, declaration_id=declaration, container=container).declare()
    trip.event("sealed", at=(0, 0))
    x = 0.0
    while x < 50:
        incident = draw(
            st.sampled_from(
                ["drive", "drive", "detour", "breach", "stop", "silence", "jump", "multipath"]
            )
        )
        if incident == "detour":
            for y in draw(st.lists(st.integers(400, 3000), min_size=1, max_size=6)):
                x += 0.3
                trip.fix(x, y)
        elif incident == "breach":
            trip.fix(x, seal=draw(st.sampled_from(["tampered", "unsealed"])))
        elif incident == "stop":
            for _ in range(draw(st.integers(10, 40))):
                trip.fix(x + 0.01, 10)
        elif incident == "silence":
            x += 0.75
            trip.fix(x, dt=draw(st.integers(300, 1500)))
        elif incident == "jump":
            trip.fix(x, draw(st.integers(5_000, 80_000)))
        elif incident == "multipath":
            trip.fix(x, draw(st.integers(350, 600)))
        x += 0.75
        trip.fix(min(x, 50.0))
    if draw(st.booleans()):
        trip.arrive()
    return trip


def _alert_ids(messages: list) -> list[str]:
    return [a["alert_id"] for a in run(messages).alerts()]


@PROFILE
@given(
    trip=trips(),
    picks=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), max_size=25),
)
def test_duplicates_shuffled_in_never_create_extra_alerts(
    trip: Trip, picks: list[tuple[int, int]]
) -> None:
    base = trip.messages
    expected = _alert_ids(base)
    assert len(expected) == len(set(expected))
    noisy = list(base)
    for original, offset in picks:
        item = base[original % len(base)]
        # A redelivered copy arrives any time after its original.
        first = next(k for k, m in enumerate(noisy) if m is item)
        noisy.insert(first + 1 + offset % (len(noisy) - first), item)
    assert _alert_ids(noisy) == expected


@PROFILE
@given(trip=trips(), cut=st.integers(0, 10_000))
def test_replaying_a_prefix_raises_nothing_new(trip: Trip, cut: int) -> None:
    first = run(trip.messages)
    prefix = trip.messages[: cut % (len(trip.messages) + 1)]
    again = run(prefix, engine=first.engine)
    assert again.alerts() == []
    assert again.verdicts() == []


@PROFILE
@given(a=trips(), b=trips(lock="L2", declaration="D2"))
def test_alert_ids_are_stable_and_independent_of_other_locks(a: Trip, b: Trip) -> None:
    alone = _alert_ids(a.messages)
    assert _alert_ids(a.messages) == alone
    together = run(merge(a, b)).alerts()
    ids_a = {x["alert_id"] for x in together if x["lock_id"] == "L1"}
    # Interleaving with another lock can only move the watermark earlier, which may
    # reveal a silence sooner, never change what an alert is called.
    assert set(alone) <= ids_a
    assert {x["type"] for x in together if x["alert_id"] in ids_a - set(alone)} <= {
        "signal_lost",
        "overdue",
    }
