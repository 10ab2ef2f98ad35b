"""The console's pure parts: the live model and desk lifecycle, resume ids, sign-in checks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.services.console.app import SignInThrottle, _safe_next
from smartlock.services.console.auth import Principal, still_active, verify_identity
from smartlock.services.console.basemap import land_within
from smartlock.services.console.desk import DeskError, check_action
from smartlock.services.console.feed import LiveFeed
from smartlock.services.console.health import member_rows, round_trips, trip_counts
from smartlock.services.console.lag import lag_figures
from smartlock.services.console.model import Changes, LiveModel, alert_status, parse_trip
from smartlock.services.console.trip import parse_track

OPERATOR = Principal("wang.li", "operator")
OBSERVER = Principal("wall", "observer")


def alert(
    alert_id: str = "al-1", severity: str = "red", lock: str = "LK-1", decl: str = "D-1"
) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "declaration_id": decl,
        "lock_id": lock,
        "type": "route_deviation",
        "severity": severity,
        "ts": "2026-11-22T08:30:00Z",
        "lat": 29.5,
        "lon": 120.5,
        "detail": {},
    }


def trip(
    lock: str = "LK-1",
    colour: str = "green",
    records: list[dict[str, Any]] | None = None,
    **extra: str,
) -> dict[str, str]:
    records = records or []
    fields = {
        "lock_id": lock,
        "declaration_id": "D-1",
        "vehicle_plate": "浙G00001",
        "corridor_id": "c1",
        "state": "in_transit",
        "colour": colour,
        "lat": "29.5",
        "lon": "120.5",
        "last_ts": "2026-11-22T08:31:00Z",
        "alerts": json.dumps(records),
        "open_alerts": json.dumps([r["alert_id"] for r in records if r.get("open")]),
    }
    return fields | extra


def test_alert_status_follows_the_shared_lifecycle() -> None:
    red = alert()
    assert alert_status(red, None, None, None) == "open"
    assert alert_status(red, {"open": True}, {"by": "a", "at": "t"}, None) == "acknowledged"
    assert alert_status(red, {"open": True}, {"by": "a"}, {"by": "a", "note": "n"}) == "resolving"
    assert alert_status(red, {"open": False, "resolved_by": "a"}, None, {"by": "a"}) == "resolved"
    assert alert_status(red, {"open": False}, {"by": "a"}, None) == "cleared"
    assert alert_status(alert(severity="info"), None, None, None) == "info"


def test_model_reports_what_changed_and_the_pipeline_confirms_a_resolution() -> None:
    model = LiveModel()
    changes = Changes()
    model.apply_alert(alert(), changes)
    assert changes.alerts["al-1"]["status"] == "open"
    changes = Changes()
    model.apply_trip(trip(colour="red", records=[{"alert_id": "al-1", "open": True}]), changes)
    assert changes.trips["LK-1"]["colour"] == "red" and changes.trips["LK-1"]["open_alerts"] == 1
    assert changes.alerts["al-1"]["corridor_id"] == "c1"  # the row now knows its trip
    changes = Changes()
    model.apply_desk({"alert_id": "al-1", "action": "ack", "by": "wang.li", "at": "T1"}, changes)
    assert changes.alerts["al-1"]["status"] == "acknowledged"
    assert changes.alerts["al-1"]["ack"] == {"by": "wang.li", "at": "T1"}
    changes = Changes()
    model.apply_desk(
        {"alert_id": "al-1", "action": "resolve", "by": "wang.li", "at": "T2", "note": "ok"},
        changes,
    )
    assert changes.alerts["al-1"]["status"] == "resolving"
    changes = Changes()
    resolved = {
        "alert_id": "al-1",
        "open": False,
        "resolved_by": "wang.li",
        "resolved_note": "ok",
        "resolved_at": "2026-11-22T09:00:00Z",
    }
    model.apply_trip(trip(colour="green", records=[resolved]), changes)
    row = changes.alerts["al-1"]
    assert row["status"] == "resolved" and row["resolution"] == {
        "by": "wang.li",
        "note": "ok",
        "ts": "2026-11-22T09:00:00Z",
    }
    assert changes.trips["LK-1"]["colour"] == "green"
    changes = Changes()
    model.apply_trip(trip(colour="green", records=[resolved]), changes)  # nothing new
    assert not changes


def test_snapshot_holds_every_alert_and_trip_with_a_position() -> None:
    model = LiveModel()
    for n in range(50):
        model.apply_alert(alert(f"al-{n}", lock=f"LK-{n}"), Changes())
        model.load_trip(trip(f"LK-{n}"))
    model.load_trip(
        {"lock_id": "LK-X", "declaration_id": "", "state": "undeclared", "colour": "green"}
    )
    snap = model.snapshot()
    assert (
        len(snap["alerts"]) == 50 and len(snap["trips"]) == 50
    )  # the undeclared lock has no place


def test_parse_trip_survives_bad_json_and_types_fields() -> None:
    parsed = parse_trip(
        {"lock_id": "L", "lat": "x", "lon": "", "alerts": "{bad", "seal_intact": "0"}
    )
    assert parsed["lat"] is None and parsed["lon"] is None and parsed["alerts"] == []
    assert parsed["seal_intact"] is False


def feed_with(updates: int, ring: int = 5) -> LiveFeed:
    feed = LiveFeed(None, RedisKeys("t"))  # type: ignore[arg-type]  # no Redis needed for the ring
    feed.ring = type(feed.ring)(maxlen=ring)

    async def fill() -> None:
        for n in range(updates):
            await feed.publish("update", {"n": n})

    asyncio.run(fill())
    return feed


def test_resume_gives_exactly_the_missed_updates_or_none_when_the_ring_lost_them() -> None:
    feed = feed_with(8, ring=5)  # updates 1..8, ring holds 4..8
    boot = feed.boot
    assert [json.loads(u.data)["n"] for u in feed.since(f"{boot}-5") or []] == [5, 6, 7]
    assert feed.since(f"{boot}-8") == []
    assert feed.since(f"{boot}-3") is not None and len(feed.since(f"{boot}-3") or []) == 5
    assert feed.since(f"{boot}-2") is None  # update 3 is gone: the browser needs a snapshot
    assert feed.since("otherboot-7") is None  # an earlier console process
    assert (
        feed.since(f"{boot}-99") is None
        and feed.since(f"{boot}-x") is None
        and feed.since(None) is None
    )


def test_desk_rules_observers_notes_and_states() -> None:
    model = LiveModel()
    model.apply_alert(alert(), Changes())
    model.apply_alert(alert("al-u", decl="UNDECLARED"), Changes())
    with pytest.raises(DeskError) as exc:
        check_action(model, OBSERVER, "al-1", "resolve", "fine")
    assert exc.value.status == 403
    with pytest.raises(DeskError) as exc:
        check_action(model, OPERATOR, "al-1", "resolve", "   ")
    assert exc.value.status == 422
    with pytest.raises(DeskError) as exc:
        check_action(model, OPERATOR, "al-1", "resolve", "x" * 501)
    assert exc.value.status == 422
    with pytest.raises(DeskError) as exc:
        check_action(model, OPERATOR, "al-nope", "ack")
    assert exc.value.status == 404
    with pytest.raises(DeskError) as exc:
        check_action(model, OPERATOR, "al-u", "resolve", "checked")
    assert exc.value.status == 409
    assert check_action(model, OPERATOR, "al-1", "resolve", "checked")["alert_id"] == "al-1"
    model.apply_desk({"alert_id": "al-1", "action": "ack", "by": "a", "at": "t"}, Changes())
    with pytest.raises(DeskError) as exc:
        check_action(model, OPERATOR, "al-1", "ack")
    assert exc.value.status == 409
    model.apply_desk(
        {"alert_id": "al-1", "action": "resolve", "by": "a", "at": "t", "note": "n"}, Changes()
    )
    with pytest.raises(DeskError) as exc:
        check_action(model, OPERATOR, "al-1", "resolve", "again")
    assert exc.value.status == 409


def test_sign_in_checks_the_secret_and_the_role(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials")
    op = store.issue("operator", "wang.li").secret.get_secret_value()
    wall = store.issue("observer", "wall").secret.get_secret_value()
    lock = store.issue("lock", "LK-01").secret.get_secret_value()
    assert verify_identity(store, "wang.li", op) == OPERATOR
    assert verify_identity(store, "wall", wall) == OBSERVER
    assert verify_identity(store, "wang.li", wall) is None
    assert verify_identity(store, "nobody", op) is None
    assert verify_identity(store, "LK-01", lock) is None  # a lock is no console user
    assert OPERATOR.may_act and not OBSERVER.may_act
    assert still_active(store, OPERATOR)
    store.revoke("wang.li")
    assert not still_active(store, OPERATOR) and verify_identity(store, "wang.li", op) is None


def test_only_local_paths_are_followed_after_sign_in() -> None:
    assert _safe_next("/trip/LK-1?wall") == "/trip/LK-1?wall"
    for bad in ("//evil.example/", "https://evil.example/", "/\\evil", "javascript:alert(1)"):
        assert _safe_next(bad) == "/"


def test_track_points_sorted_without_repeats() -> None:
    raw = [json.dumps(p) for p in (["T2", 2, 2], ["T1", 1, 1], ["T2", 2, 2], ["T3", 3, 3])] + [
        "junk"
    ]
    assert parse_track(raw) == [["T1", 1, 1], ["T2", 2, 2], ["T3", 3, 3]]


def test_trip_counts_by_colour_and_overdue() -> None:
    trips = {
        "a": parse_trip(trip("a", "red")),
        "b": parse_trip(trip("b", "amber", [{"alert_id": "x", "type": "overdue", "open": True}])),
        "c": parse_trip(trip("c", "green", state="released")),
        "d": parse_trip({"lock_id": "d", "declaration_id": "", "colour": "amber"}),
    }
    counts = trip_counts(trips)
    assert (counts["red"], counts["amber"], counts["green"]) == (1, 1, 0)
    assert counts["overdue"] == 1 and counts["released"] == 1 and counts["trips"] == 3


def test_sign_in_is_refused_after_repeated_failures_from_one_address() -> None:
    throttle = SignInThrottle(limit=3, window_s=60)
    for _ in range(3):
        assert not throttle.blocked("10.0.0.1")
        throttle.failed("10.0.0.1")
    assert throttle.blocked("10.0.0.1") and not throttle.blocked("10.0.0.2")
    throttle.window_s = 0  # the window has passed
    assert not throttle.blocked("10.0.0.1")


def test_a_resolution_the_pipeline_refused_goes_back_to_the_desk_with_the_reason() -> None:
    model = LiveModel()
    model.apply_alert(alert(), Changes())
    model.apply_desk(
        {
            "alert_id": "al-1",
            "action": "resolve",
            "by": "wang.li",
            "at": "2026-11-24T03:00:00Z",
            "note": "ok",
        },
        Changes(),
    )
    changes = Changes()
    model.apply_dead_letter({"topic": "locks/LK-1/telemetry", "reason": "duplicate"}, changes)
    assert not changes
    refusal = {
        "topic": "monitoring/resolutions/wang.li",
        "reason": "unknown_alert",
        "detail": "not an alert",
        "received_at": "2026-11-24T03:00:01Z",
        "original_text": json.dumps({"alert_id": "al-1"}),
    }
    model.apply_dead_letter(refusal, changes)
    row = changes.alerts["al-1"]
    assert row["status"] == "open" and row["refused"]["reason"] == "unknown_alert"
    assert row["refused"]["by"] == "wang.li"
    # A newer attempt is not undone by the refusal of an older one (read again at start-up).
    model.apply_desk(
        {
            "alert_id": "al-1",
            "action": "resolve",
            "by": "wang.li",
            "at": "2026-11-24T03:05:00Z",
            "note": "again",
        },
        Changes(),
    )
    model.apply_dead_letter(refusal, Changes())
    assert (
        model.alert_row("al-1")["status"] == "resolving"
        and model.alert_row("al-1")["refused"] is None
    )


def test_basemap_keeps_the_land_inside_the_box_from_a_quantized_topology() -> None:
    # One square island from (0,0) to (2,2), quantized at 0.5 degree, delta-encoded, one arc.
    topology = {
        "type": "Topology",
        "transform": {"scale": [0.5, 0.5], "translate": [0, 0]},
        "arcs": [[[0, 0], [4, 0], [0, 4], [-4, 0], [0, -4]]],
        "objects": {
            "land": {
                "type": "GeometryCollection",
                "geometries": [{"type": "Polygon", "arcs": [[0]]}],
            }
        },
    }
    land = land_within(topology, (1.0, 1.0, 3.0, 3.0))
    assert shape(land["geometry"]).area == pytest.approx(1.0)  # the quarter inside the box
    assert shape(land_within(topology, (5.0, 5.0, 6.0, 6.0))["geometry"]).is_empty


def test_gate_round_trips_median_and_p95_over_the_window_and_manual_fallbacks() -> None:
    now_ms = 1_000_000_000.0
    events = [
        {"kind": "verdict", "round_trip_ms": float(ms), "recorded_ms": now_ms - 1000}
        for ms in range(10, 210, 10)  # 20 arrivals: 10 .. 200 ms
    ]
    events += [
        {"kind": "verdict", "round_trip_ms": 9000.0, "recorded_ms": now_ms - 901_000},  # too old
        {"kind": "manual", "reason": "no signed verdict within 1 s", "recorded_ms": now_ms - 5},
        {"kind": "manual", "reason": "old", "recorded_ms": now_ms - 2_000_000},
        {"kind": "reconciled", "verdict": "release", "recorded_ms": now_ms},
    ]
    figures = round_trips(events, now_ms, window_s=900)
    assert figures["count"] == 20
    assert figures["median_ms"] == 100.0  # nearest rank: the 10th of 20
    assert figures["p95_ms"] == 190.0  # the 19th of 20
    assert figures["max_ms"] == 200.0
    assert (figures["manual"], figures["reconciled"]) == (1, 1)
    empty = round_trips([], now_ms)
    assert empty["count"] == 0 and empty["median_ms"] is None and empty["p95_ms"] is None


def test_members_up_down_and_left_from_their_heartbeats() -> None:
    def record(role: str, name: str, beat: float) -> dict[str, Any]:
        return {"role": role, "name": name, "host": "h", "pid": 1, "beat": beat, "owns": ""}

    now = 1000.0
    recorded = {
        "bridge:b1": record("bridge", "b1", 998.0),
        "worker:1": record("worker", "1", 970.0),  # its alive key expired: no heartbeat
    }
    seen = {"bridge:b0": record("bridge", "b0", 900.0)}  # seen earlier, record gone: left
    rows = {r["id"]: r for r in member_rows(recorded, {"bridge:b1"}, seen, now)}
    assert rows["bridge:b1"]["up"] is True and rows["bridge:b1"]["beat_s"] == 2.0
    assert rows["worker:1"]["up"] is False and rows["worker:1"]["left"] is False
    assert rows["worker:1"]["beat_s"] == 30.0
    assert rows["bridge:b0"]["up"] is False and rows["bridge:b0"]["left"] is True


def test_kafka_lag_is_end_minus_committed_and_a_partition_never_committed_counts_whole() -> None:
    figures = lag_figures({0: 10, 1: 5, 2: 0}, {0: 7, 1: None, 2: None})
    assert figures["partitions"]["0"] == {"end": 10, "committed": 7, "lag": 3}
    assert figures["partitions"]["1"]["lag"] == 5 and figures["partitions"]["2"]["lag"] == 0
    assert figures["total"] == 8


def test_gate_events_reach_the_model_the_update_and_the_snapshot() -> None:
    model, changes = LiveModel(), Changes()
    event = {"kind": "manual", "lock_id": "LK-1", "reason": "no signed verdict within 1 s"}
    model.apply_gate(event, changes)
    assert changes and changes.to_json()["gate"] == [event]
    assert model.snapshot()["gate_events"] == [event]
