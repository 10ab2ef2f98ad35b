"""Focused tests of the detection core: one per alert type and per gate-verdict reason."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from smartlock.core.limits import DetectionSettings
from tests.builders import CONTAINER, Trip, decode, merge, run


def test_normal_trip_raises_nothing_and_is_released() -> None:
    r = run(Trip().normal().arrive().messages)
    assert r.alerts() == []
    assert r.verdicts()[-1]["verdict"] == "release"
    assert r.verdicts()[-1]["reasons"] == []
    assert r.statuses()[-1]["state"] == "released"
    assert [s["state"] for s in r.statuses()] == [
        "declared",
        "sealed",
        "in_transit",
        "arrived",
        "released",
    ]


def test_unsealing_inside_gate_after_release_closes_the_trip_without_breach() -> None:
    r = run(Trip().normal().arrive().event("unsealed", at=(50, 0)).messages)
    assert r.alerts() == []
    assert r.statuses()[-1]["state"] == "closed"


# ------------------------------------------------------------------ route deviation


def test_detour_raises_one_deviation_within_two_fixes_and_rejoined_on_return() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    # Off-ramp: leaves the expressway and drives 2-3 km away for twenty minutes.
    offsets = [150, 450, 900, 1500, 2000, 2500, 2800, 3000] + [2800] * 24 + [2000, 1200, 600, 200]
    x = 10.0
    for i, y in enumerate(offsets):
        x += 0.2
        trip.fix(x, y, dt=30)
        if i == 2:
            second_outside_seq = trip.seq
    trip.drive(x, 50)
    r = run(trip.messages)
    deviations = r.alerts("route_deviation")
    assert len(deviations) == 1
    assert deviations[0]["severity"] == "red"
    # 150 m is inside the 300 m buffer; 450 m is the first fix outside, 900 m the second.
    assert deviations[0]["detail"]["fixes_outside"] == 2
    seq_of_alert = next(
        p["seq"] for t, p in trip.messages if p.get("ts") == deviations[0]["ts"] and "seq" in p
    )
    assert seq_of_alert == second_outside_seq
    assert r.alert_types() == ["route_deviation", "route_rejoined"]
    rejoined = r.alerts("route_rejoined")[0]
    assert rejoined["severity"] == "info"
    assert rejoined["detail"]["deviation_alert_id"] == deviations[0]["alert_id"]
    assert r.statuses()[-1]["colour"] == "red"  # red until an operator resolves it


def test_single_multipath_fix_raises_nothing() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 20)
    trip.fix(20.75, 420).drive(21.5, 50)
    assert run(trip.messages).alerts() == []


@pytest.mark.parametrize("seed", range(5))
def test_gaussian_gps_noise_raises_nothing(seed: int) -> None:
    rng = random.Random(seed)
    trip = Trip().declare().event("sealed", at=(0, 0))
    for i in range(68):
        sigma = rng.uniform(10, 20)
        trip.fix(i * 0.75 + rng.gauss(0, sigma) / 1000, rng.gauss(0, sigma), hdop=1.2)
    assert run(trip.messages).alerts() == []


def test_rest_area_beside_the_corridor_is_not_a_deviation_nor_a_stop() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 20)
    for _ in range(50):  # 25 minutes parked 450 m off the centre line, inside the rest area
        trip.fix(20.3, 450)
    trip.drive(20.75, 50)
    assert run(trip.messages).alerts() == []


def test_no_deviation_before_sealing() -> None:
    trip = Trip().declare().fix(5, 3000, seal="unsealed").fix(5.5, 3000, seal="unsealed")
    assert run(trip.messages).alerts() == []


def test_imprecise_fixes_are_not_judged() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 5)
    trip.fix(5.5, 2000, hdop=25).fix(6, 2000, hdop=25).drive(6.5, 10)
    assert run(trip.messages).alerts() == []


# ------------------------------------------------------------------ seal


@pytest.mark.parametrize(
    "how", ["telemetry_tampered", "telemetry_unsealed", "event_tamper", "event_unsealed"]
)
def test_seal_breach_in_transit(how: str) -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    if how.startswith("telemetry"):
        trip.fix(10.5, seal=how.split("_")[1])
    else:
        trip.event(how.split("_")[1], at=(10.5, 0))
    trip.drive(11, 50).arrive()
    r = run(trip.messages)
    assert r.alert_types() == ["seal_breach"]
    assert r.alerts()[0]["severity"] == "red"
    verdict = r.verdicts()[0]
    assert verdict["verdict"] == "inspect"
    assert "seal was opened or tampered with after sealing" in verdict["reasons"]


def test_repeated_breach_readings_raise_one_alert_per_episode() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 5)
    trip.fix(5.5, seal="tampered").fix(6, seal="tampered").fix(6.5, seal="sealed").fix(
        7, seal="unsealed"
    )
    assert run(trip.messages).alert_types() == ["seal_breach", "seal_breach"]


def test_unsealing_outside_gate_after_release_is_a_breach() -> None:
    trip = Trip().normal().arrive().fix(48, 0).event("unsealed", at=(48, 0))
    assert run(trip.messages).alert_types() == ["seal_breach"]


# ------------------------------------------------------------------ stops


def test_unauthorized_stop_outside_allowed_zones() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    for _ in range(32):  # 16 minutes at the same spot
        trip.fix(10.02, 20)
    trip.drive(10.75, 50)
    r = run(trip.messages)
    assert r.alert_types() == ["unauthorized_stop"]
    stop = r.alerts()[0]
    assert stop["severity"] == "amber"
    assert stop["detail"]["stopped_s"] > 900
    # Moving again ends the condition: the amber alert is no longer open.
    assert r.statuses()[-1]["open_alerts"] == []


def test_short_stop_is_not_reported() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    for _ in range(20):  # 10 minutes: congestion or a toll booth
        trip.fix(10.02, 20)
    trip.drive(10.75, 50)
    assert run(trip.messages).alerts() == []


# ------------------------------------------------------------------ silence / overdue


def test_signal_lost_fires_from_the_watermark_of_other_locks() -> None:
    silent = (
        Trip(lock_id="L1", declaration_id="D1").declare().event("sealed", at=(0, 0)).drive(0, 3)
    )
    other = (
        Trip(lock_id="L2", declaration_id="D2", container="MSCU1234566")
        .declare()
        .event("sealed", at=(0, 0))
        .drive(0, 30)
    )
    r = run(merge(silent, other))
    lost = r.alerts("signal_lost")
    assert [a["lock_id"] for a in lost] == ["L1"]
    assert lost[0]["severity"] == "amber"
    # Stamped at the deadline: last message + 600 s.
    assert lost[0]["detail"]["last_heard_ts"] == silent.messages[-1][1]["ts"]


def test_signal_lost_has_the_same_id_whether_the_watermark_or_the_lock_reveals_it() -> None:
    alone = Trip().declare().event("sealed", at=(0, 0)).drive(0, 3)
    alone.fix(3.5, dt=900)  # heard again after 15 minutes, no other lock in the stream
    by_gap = run(alone.messages).alerts("signal_lost")
    other = Trip(lock_id="L2", declaration_id="D2", container="MSCU1234566").declare().drive(0, 30)
    by_watermark = run(merge(alone, other)).alerts("signal_lost")
    assert len(by_gap) == 1
    assert [a["alert_id"] for a in by_watermark] == [by_gap[0]["alert_id"]]


def test_signal_lost_clears_when_the_lock_is_heard_again() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 3).fix(3.5, dt=900).drive(4, 10)
    r = run(trip.messages)
    assert r.alert_types() == ["signal_lost"]
    assert r.statuses()[-1]["open_alerts"] == []


def test_overdue_fires_in_event_time() -> None:
    trip = (
        Trip().declare(eta_h=1.0).event("sealed", at=(0, 0)).drive(0, 30, dt=240)
    )  # 41 fixes x 4 min
    r = run(trip.messages)
    overdue = r.alerts("overdue")
    assert len(overdue) == 1
    assert overdue[0]["ts"] == "2026-11-22T10:00:00Z"  # eta 09:00 + 1 h grace


def test_no_overdue_when_arrived_in_time() -> None:
    r = run(
        Trip()
        .declare(eta_h=1.0)
        .event("sealed", at=(0, 0))
        .drive(0, 50, dt=50)
        .arrive(dt=7200)
        .messages
    )
    assert "overdue" not in r.alert_types()


# ------------------------------------------------------------------ jump, battery, unknown


def test_spoofed_jump_raises_one_implausible_jump_and_no_deviation() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    trip.fix(10.5, 40_000).drive(11.25, 50)
    r = run(trip.messages)
    assert r.alert_types() == ["implausible_jump"]
    assert r.alerts()[0]["detail"]["speed_kmh"] > 250


def test_persistent_jump_is_reanchored_and_judged_as_deviation() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    for i in range(6):
        trip.fix(10.5 + i * 0.5, 40_000)
    assert run(trip.messages).alert_types() == ["implausible_jump", "route_deviation"]


@pytest.mark.parametrize("how", ["reading", "event"])
def test_low_battery_once_per_trip(how: str) -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 3)
    if how == "reading":
        trip.fix(3.5, battery_pct=18).fix(4, battery_pct=17)
    else:
        trip.event("low_battery").event("low_battery")
    r = run(trip.messages)
    assert r.alert_types() == ["low_battery"]
    assert r.alerts()[0]["severity"] == "info"


def test_unknown_lock_once_until_declared() -> None:
    trip = Trip(lock_id="L9").fix(1).fix(1.5).fix(2)
    r = run(trip.messages)
    assert r.alert_types() == ["unknown_lock"]
    alert = r.alerts()[0]
    assert alert["declaration_id"] == "UNDECLARED"
    assert alert["severity"] == "amber"


# ------------------------------------------------------------------ gate verdicts


def _verdict(trip: Trip) -> dict:
    return run(trip.messages).verdicts()[-1]


def test_verdict_release() -> None:
    v = _verdict(Trip().normal().arrive())
    assert (v["verdict"], v["reasons"], v["declaration_id"]) == ("release", [], "D1")


def test_verdict_unknown_lock() -> None:
    v = _verdict(Trip().arrive())
    assert v["verdict"] == "inspect"
    assert v["declaration_id"] is None
    assert v["reasons"] == ["no open declaration binds lock L1"]


def test_verdict_unknown_lock_at_an_unknown_gate_with_a_misread_container_lists_every_reason() -> (
    None
):
    v = _verdict(Trip().arrive(gate="nowhere-gate", container="CSQU3054384"))
    assert (v["verdict"], v["declaration_id"]) == ("inspect", None)
    assert v["reasons"] == [
        "gate nowhere-gate is not a known destination gate",
        "no open declaration binds lock L1",
        "container number CSQU3054384 read at the gate has check digit 4, expected 3",
    ]
    garbled = _verdict(Trip().arrive(container="CSQU30543"))
    assert garbled["reasons"][-1] == (
        "container number CSQU30543 read at the gate is not an ISO 6346 number"
    )


def test_verdict_wrong_gate() -> None:
    v = _verdict(Trip().normal().arrive(gate="other-gate"))
    assert "declaration D1 is for gate test-gate, not other-gate" in v["reasons"]


def test_verdict_container_mismatch() -> None:
    v = _verdict(Trip().normal().arrive(container="MSCU1234566"))
    assert v["reasons"] == [
        f"container read at gate MSCU1234566 does not match declared {CONTAINER}"
    ]


def test_verdict_plate_mismatch_and_plate_normalisation() -> None:
    assert _verdict(Trip().normal().arrive(plate="浙G 123-45"))["verdict"] == "release"
    v = _verdict(Trip().normal().arrive(plate="浙G99999"))
    assert v["reasons"] == ["vehicle plate 浙G99999 does not match declared 浙G12345"]


def test_verdict_never_sealed() -> None:
    trip = Trip().declare().drive(0, 50, seal="unsealed").arrive()
    assert _verdict(trip)["reasons"] == ["lock was never sealed"]


def test_verdict_unresolved_red_alert_then_resolved_releases() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    trip.fix(10.5, 2000).fix(11, 2500).drive(11.5, 50).arrive()
    r = run(trip.messages)
    v = r.verdicts()[-1]
    deviation = r.alerts("route_deviation")[0]
    assert v["verdict"] == "inspect"
    assert v["reasons"] == [
        f"unresolved red alert {deviation['alert_id']} (route_deviation at {deviation['ts']})"
    ]
    resolution = {
        "alert_id": deviation["alert_id"],
        "declaration_id": "D1",
        "lock_id": "L1",
        "operator": "wang.li",
        "note": "detour for road works, confirmed by police",
        "ts": "2026-11-22T12:00:00Z",
    }
    trip.messages.append(("monitoring/resolutions/wang.li", resolution))
    trip.arrive(dt=60)
    r = run(trip.messages)
    assert r.verdicts()[-1]["verdict"] == "release"
    assert r.statuses()[-1]["state"] == "released"


def test_verdict_not_in_gate_zone() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 45).arrive()
    assert _verdict(trip)["reasons"] == [
        "last fix (" + trip.messages[-2][1]["ts"] + ") is not inside gate zone test-gate"
    ]


def test_verdict_no_position() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).arrive()
    assert _verdict(trip)["reasons"] == [
        "no position received; arrival inside gate zone test-gate not shown"
    ]


def test_verdict_lists_every_reason() -> None:
    trip = (
        Trip()
        .declare()
        .event("sealed", at=(0, 0))
        .drive(0, 10)
        .fix(10.5, seal="tampered")
        .drive(11, 40)
    )
    v = _verdict(trip.arrive(plate="浙A00000", container="MSCU1234566"))
    assert len(v["reasons"]) == 5  # container, plate, seal, unresolved breach, not in gate zone


def test_release_closes_the_declaration() -> None:
    trip = Trip().normal().arrive().arrive(dt=60)
    r = run(trip.messages)
    assert [v["verdict"] for v in r.verdicts()] == ["release", "inspect"]
    assert r.verdicts()[-1]["reasons"] == ["no open declaration binds lock L1"]


# ------------------------------------------------------------------ admission


def test_duplicate_and_stale_seq_are_rejected_and_change_nothing() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 3)
    dup = trip.messages[-1]
    stale = trip.messages[-3]  # two below the highest: outside a window of 2
    r = run([*trip.messages, dup, stale], limits=DetectionSettings(seq_window=2))
    assert r.reasons() == ["duplicate", "stale_seq"]
    assert r.alerts() == []


def test_duplicate_declaration_is_rejected_and_amendment_before_sealing_allowed() -> None:
    trip = Trip().declare()
    trip.declare()
    trip.declare(vehicle_plate="浙G54321")
    r = run(trip.messages)
    assert r.reasons() == ["duplicate"]
    trip.event("sealed").declare(vehicle_plate="浙G00001")
    assert run(trip.messages).reasons() == ["duplicate", "declaration_locked"]


def test_second_declaration_for_a_busy_lock_is_refused() -> None:
    trip = Trip().declare()
    trip.messages.append(("customs/declarations", dict(trip.messages[0][1], declaration_id="D2")))
    assert run(trip.messages).reasons() == ["lock_busy"]


def test_declaration_naming_unknown_geofences_is_refused() -> None:
    assert run(Trip().declare(corridor_id="nowhere").messages).reasons() == ["unknown_corridor"]
    assert run(Trip().declare(destination_gate="test-rest").messages).reasons() == [
        "unknown_destination_gate"
    ]
    assert run(Trip().declare(mode="rail").messages).reasons() == ["mode_mismatch"]


def test_a_vague_declaration_published_on_mqtt_is_refused_with_the_intake_rules() -> None:
    vague = [
        {
            "description": "electronics",
            "quantity": 10,
            "unit": "pcs",
            "value": 100.0,
            "currency": "USD",
        }
    ]
    r = run(Trip().declare(cargo=vague).event("sealed", at=(0, 0)).drive(0, 2).messages)
    assert r.reasons()[0] == "declaration_rules"
    assert "electronics" in r.rejections[0][1].detail and "too vague" in r.rejections[0][1].detail
    assert [a["type"] for a in r.alerts()] == [
        "unknown_lock"
    ]  # never bound: the lock is undeclared


@pytest.mark.parametrize(
    "description", ["goods for sale", "FAK freight all kinds", "plastic toys and related items"]
)
def test_the_issues_vague_examples_on_mqtt_are_refused(description: str) -> None:
    line = {"description": description, "quantity": 10, "unit": "pcs", "value": 100.0}
    r = run(Trip().declare(cargo=[line | {"currency": "USD"}]).messages)
    assert r.reasons() == ["declaration_rules"]
    assert f'"{description}" is too vague' in r.rejections[0][1].detail


@pytest.mark.parametrize("case", ["missing", "wrong", "unknown_key"])
def test_signing_rejections_change_nothing(case: str) -> None:
    keys = {"L1": "k1-secret"}
    trip = Trip(key="k1-secret").declare().event("sealed", at=(0, 0)).drive(0, 3)
    forged = Trip(
        lock_id="L1",
        seq=100,
        t=trip.t,
        key={"wrong": "other", "missing": None, "unknown_key": None}[case],
    )
    if case == "unknown_key":
        forged.lock_id = "L7"
    forged.fix(3.5, 5000).fix(4, 6000).fix(4.5, 7000, seal="tampered")
    r = run(trip.messages + forged.messages, keys=keys)
    expected = {
        "missing": "missing_signature",
        "wrong": "bad_signature",
        "unknown_key": "unknown_lock_key",
    }[case]
    assert r.reasons() == [expected] * 3
    assert r.alerts() == []
    # The forged high seq did not advance the counter: the genuine next message is accepted.
    r2 = run(Trip(key="k1-secret", seq=trip.seq, t=forged.t).fix(5).messages, engine=r.engine)
    assert r2.reasons() == []


def test_signed_messages_are_accepted() -> None:
    r = run(Trip(key="k1-secret").normal().arrive().messages, keys={"L1": "k1-secret"})
    assert r.reasons() == []
    assert r.verdicts()[-1]["verdict"] == "release"


# ------------------------------------------------------------------ late and buffered fixes


def test_store_and_forward_detour_still_raises_deviation_stamped_in_the_gap() -> None:
    silent = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    other = Trip(lock_id="L2", declaration_id="D2", container="MSCU1234566").declare().drive(0, 40)
    gap_start = silent.t
    buffered = Trip(lock_id="L1", seq=silent.seq, t=silent.t)
    buffered.fix(10.75).fix(11.2, 1500).fix(11.4, 2500).fix(11.6, 2500).fix(11.8, 1200).fix(
        12.0
    ).drive(12.75, 16)
    # The lock uploads its 15 minutes of stored fixes after the other lock has moved on.
    r = run(merge(silent, other) + buffered.messages)
    deviation = r.alerts("route_deviation")
    assert len(deviation) == 1
    assert deviation[0]["ts"] == buffered.messages[2][1]["ts"]  # its own event time, inside the gap
    assert gap_start.isoformat() < deviation[0]["ts"].replace("Z", "+00:00")
    assert "route_rejoined" in r.alert_types()
    assert "signal_lost" in r.alert_types()  # the watermark moved on while it was silent


def test_late_fix_with_older_time_does_not_move_the_position_back() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    last_ts = trip.messages[-1][1]["ts"]
    late = Trip(seq=trip.seq, t=trip.t).fix(5, dt=-600)
    r = run(trip.messages + late.messages)
    assert r.reasons() == []
    state = r.engine.store["L1"]
    assert state.trip is not None and state.trip.position is not None
    assert state.trip.position.ts > late.t.timestamp()
    assert state.trip.last_heard_ts == datetime.fromisoformat(last_ts).timestamp()


def test_limits_are_settings() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10)
    trip.fix(10.5, 2000).drive(11, 50)  # one fix outside
    assert run(trip.messages).alerts() == []
    strict = DetectionSettings(deviation_confirm_fixes=1)
    assert run(trip.messages, limits=strict).alert_types() == ["route_deviation", "route_rejoined"]


# --------------------------------------------------------------------------- amendments, cancellations


def _republish(trip: Trip, **changes: object) -> Trip:
    declaration = next(p for t, p in trip.messages if t == "customs/declarations")
    trip.messages.append(("customs/declarations", dict(declaration, **changes)))
    return trip


def test_a_plate_only_amendment_after_sealing_keeps_the_trip_with_the_new_plate() -> None:
    trip = Trip().declare().event("sealed", at=(0, 0)).drive(0, 20)
    _republish(trip, vehicle_plate="浙G00001").drive(20, 50)
    r = run(trip.arrive(plate="浙G00001").messages)
    assert r.reasons() == []
    assert (r.verdicts()[-1]["verdict"], r.verdicts()[-1]["reasons"]) == ("release", [])
    old_plate = Trip().declare().event("sealed", at=(0, 0)).drive(0, 20)
    _republish(old_plate, vehicle_plate="浙G00001").drive(20, 50).arrive()
    assert run(old_plate.messages).verdicts()[-1]["reasons"] == [
        f"vehicle plate {Trip().plate} does not match declared 浙G00001"
    ]


def test_an_amendment_of_anything_else_after_sealing_or_of_the_plate_after_the_verdict_is_refused() -> (
    None
):
    trip = Trip().declare().event("sealed", at=(0, 0))
    _republish(trip, eta_ts="2026-11-22T23:00:00Z")
    assert run(trip.messages).reasons() == ["declaration_locked"]
    judged = Trip().declare().event("sealed", at=(0, 0)).drive(0, 10).arrive()
    _republish(judged, vehicle_plate="浙G00001")
    assert run(judged.messages).reasons() == ["declaration_locked"]


def _cancel(trip: Trip, declaration_id: str = "D1") -> Trip:
    trip.messages.append(
        (
            "customs/cancellations",
            {
                "declaration_id": declaration_id,
                "locks": [trip.lock_id],
                "reason": "order withdrawn",
                "ts": "2026-11-22T07:00:00Z",
            },
        )
    )
    return trip


def test_a_cancellation_before_sealing_closes_the_trip_and_frees_the_lock() -> None:
    trip = _cancel(Trip().declare())
    r = run(trip.messages)
    assert r.reasons() == []
    assert r.statuses()[-1]["state"] == "closed"
    trip.arrive()
    assert run(trip.messages).verdicts()[-1]["reasons"] == ["no open declaration binds lock L1"]
    again = _cancel(Trip().declare())
    again.messages.append(("customs/declarations", dict(again.messages[0][1], declaration_id="D2")))
    assert run(again.messages).reasons() == []  # the lock is free for another declaration
    _republish(again)  # the cancelled declaration cannot come back
    assert run(again.messages).reasons() == ["declaration_closed"]


def test_a_cancellation_after_sealing_or_of_an_unknown_declaration_is_refused() -> None:
    sealed = _cancel(Trip().declare().event("sealed", at=(0, 0)))
    assert run(sealed.messages).reasons() == ["declaration_departed"]
    assert run(_cancel(Trip().declare(), "D9").messages).reasons() == ["unknown_declaration"]


# --------------------------------------------------------------------------- officer's manual outcome


def _outcome(trip: Trip, outcome: str, officer: str = "chen.wei", lock: str | None = None) -> Trip:
    trip.messages.append(
        (
            f"customs/outcomes/{officer}",
            {
                "gate_id": "test-gate",
                "lock_id": lock or trip.lock_id,
                "container_no": trip.container,
                "vehicle_plate": trip.plate,
                "outcome": outcome,
                "officer": officer,
                "note": "opened and checked against the declaration",
                "ts": "2026-11-22T12:00:00Z",
            },
        )
    )
    return trip


def test_an_officer_clears_a_container_that_was_never_sealed_and_it_is_released() -> None:
    trip = Trip().declare().arrive()  # never sealed: inspect
    r = run(_outcome(trip, "cleared").messages)
    first, manual = r.verdicts()
    assert (first["verdict"], manual["verdict"], manual["declaration_id"]) == (
        "inspect",
        "release",
        "D1",
    )
    assert r.statuses()[-1]["state"] == "released"
    [out] = [o for o in r.outputs if o.kind == "verdict" and o.manual is not None]
    assert out.manual == {
        "outcome": "cleared",
        "officer": "chen.wei",
        "note": "opened and checked against the declaration",
    }


def test_an_officer_seizes_a_container_and_the_trip_closes_without_release() -> None:
    trip = Trip().declare().arrive(plate="浙B88888")  # plate swap: inspect
    r = run(_outcome(trip, "seized").messages)
    seized = r.verdicts()[-1]
    assert (seized["verdict"], seized["declaration_id"]) == ("inspect", "D1")
    assert seized["reasons"] == [
        "officer chen.wei seized the container by hand: opened and checked against the declaration"
    ]
    assert r.statuses()[-1]["state"] == "closed"


def _records(trip: Trip) -> list[tuple[str, dict]]:
    """Every audit entry and write-off the core makes for the trip's messages, in order."""
    engine = run([]).engine
    out = []
    for topic, payload in trip.messages:
        out += [(r.kind, r.payload) for r in engine.feed(decode(topic, payload)).records]
    return out


def test_fallback_an_outcome_after_the_pipelines_own_release_belongs_to_that_declaration() -> None:
    # The gate fell back to manual inspection; the pipeline, back, judged the queued arrival
    # (release, written off) before it read the officer's outcome for the same container.
    cleared = _records(_outcome(Trip().normal().arrive(), "cleared"))
    assert [(k, p["kind"]) for k, p in cleared] == [
        ("audit", "verdict"),
        ("writeoff", "writeoff"),
        ("audit", "manual_outcome"),  # confirmed: no second write-off
    ]
    confirmed = cleared[-1][1]
    assert (confirmed["declaration_id"], confirmed["verdict"]) == ("D1", "release")
    assert confirmed["manual_outcome"]["after_release"] is True and "penalty" not in confirmed

    r = run(_outcome(Trip().normal().arrive(), "seized").messages)
    seized = r.verdicts()[-1]
    assert (seized["verdict"], seized["declaration_id"]) == ("inspect", "D1")
    assert seized["reasons"][0].startswith("officer chen.wei seized the container by hand")
    assert r.statuses()[-1]["state"] == "closed"  # the officer's seizure overrules the release
    trail = _records(_outcome(Trip().normal().arrive(), "seized"))
    assert [p["kind"] for _, p in trail][-1] == "manual_outcome"
    assert "penalty" not in trail[-1][1]  # not an undeclared consignment


def test_a_seizure_recorded_again_or_reversed_stays_with_its_declaration() -> None:
    trip = _outcome(Trip().declare().arrive(plate="浙B88888"), "seized")
    trip.messages.append(
        (trip.messages[-1][0], trip.messages[-1][1] | {"ts": "2026-11-22T12:05:00Z"})
    )
    again = _records(trip)[-1][1]  # the officer records the seizure a second time
    assert (again["declaration_id"], again["verdict"], "penalty" in again) == (
        "D1",
        "inspect",
        False,
    )
    assert "after_release" not in again["manual_outcome"]
    trip.messages.append(
        (
            trip.messages[-1][0],
            trip.messages[-1][1] | {"outcome": "cleared", "ts": "2026-11-22T12:09:00Z"},
        )
    )
    records = _records(trip)
    assert [(k, p["kind"]) for k, p in records[-2:]] == [
        ("audit", "manual_outcome"),
        ("writeoff", "writeoff"),  # the officer reversed the seizure: released and written off
    ]
    assert run(trip.messages).statuses()[-1]["state"] == "released"


def test_an_outcome_for_an_undeclared_lock_is_recorded_as_undeclared_and_duplicates_are_refused() -> (
    None
):
    trip = _outcome(Trip(), "seized")
    r = run(trip.messages)
    [v] = r.verdicts()
    assert (v["verdict"], v["declaration_id"]) == ("inspect", None)
    assert v["reasons"][0] == "no open declaration binds lock L1"
    trip.messages.append(trip.messages[-1])
    assert run(trip.messages).reasons() == ["duplicate"]


def test_an_outcome_published_under_another_officers_topic_is_refused() -> None:
    trip = Trip().declare()
    trip.messages.append(
        (
            "customs/outcomes/someone-else",
            {
                "gate_id": "test-gate",
                "lock_id": "L1",
                "container_no": trip.container,
                "vehicle_plate": trip.plate,
                "outcome": "cleared",
                "officer": "chen.wei",
                "note": "x",
                "ts": "2026-11-22T12:00:00Z",
            },
        )
    )
    with pytest.raises(Exception, match="topic names officer"):
        run(trip.messages)
