"""A declaration's lifecycle over the intake service (memory store): list with a status filter,
amend (versioned; a bound one republished), cancel before departure, and the status following
the loop as the pipeline reports it; every transition and its refusal."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smartlock.contract.models import WriteOffNotice
from smartlock.services.intake.auth import Principal
from smartlock.services.intake.lifecycle import live_status
from smartlock.services.intake.service import IntakeService, claim_inbox, take_notice
from smartlock.services.intake.store import MemoryStore
from tests.unit.test_intake_rules import rail_form, road_form

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
ACME = Principal("acme-forwarding", "declarant")
OTHER = Principal("other-forwarding", "declarant")
CUSTOMS = Principal("ningbo-officer", "customs")


class Setup:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.sent: list[tuple[str, dict[str, Any]]] = []

        async def publish(topic: str, payload: bytes) -> None:
            self.sent.append((topic, json.loads(payload)))

        self.service = IntakeService(self.store, publish, lambda: NOW)

    async def declare(self, who: Principal = ACME, **changes: Any) -> str:
        status, body = await self.service.submit(road_form(**changes), who)
        assert status == 201, body
        return str(body["reference"])

    async def bound(self, **changes: Any) -> str:
        reference = await self.declare(**changes)
        status, body = await self.service.bind(reference, "浙G01345", ACME)
        assert status == 200, body
        return reference

    def pipeline(self, reference: str, state: str, reasons: list[str] | None = None) -> None:
        record = self.store.records[reference]
        decl = record["declaration"]
        self.store.trips[decl["lock_id"]] = {
            "declaration_id": decl["declaration_id"],
            "state": state,
            "verdict_reasons": json.dumps(reasons or []),
        }

    async def written_off(self, reference: str, lock_id: str | None = None) -> str:
        """The destination's write-off notice reaches the intake (as on customs/writeoffs/...)."""
        decl = self.store.records[reference]["declaration"]
        lock = lock_id or decl["lock_id"]
        container = next(c for c in decl.get("locks") or [decl] if c["lock_id"] == lock)
        return await self.service.record_writeoff(notice(decl, lock, container["container_no"]))


def notice(decl: dict[str, Any], lock_id: str, container_no: str) -> WriteOffNotice:
    return WriteOffNotice(
        declaration_id=decl["declaration_id"],
        lock_id=lock_id,
        container_no=container_no,
        origin_site=decl["origin_site"],
        gate_id="beilun-gate",
        arrival_ts="2026-11-23T11:59:00Z",
        written_off_at="2026-11-23T12:00:00Z",
        decided_by="smartlock automatic gate verification (worker w1)",
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --------------------------------------------------------------------------- status follows the loop


def test_status_follows_the_loop_to_the_write_off() -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.declare()
        assert (await s.service.get(reference, ACME))[1]["status"] == "accepted"
        await s.service.bind(reference, "浙G01345", ACME)
        assert (await s.service.get(reference, ACME))[1]["status"] == "bound"
        for trip_state, status in [
            ("declared", "bound"),
            ("sealed", "sealed"),
            ("in_transit", "in_transit"),
            ("deviating", "in_transit"),
            ("released", "released"),
        ]:
            s.pipeline(reference, trip_state)
            assert (await s.service.get(reference, ACME))[1]["status"] == status, trip_state
        await s.written_off(reference)
        code, record = await s.service.get(reference, ACME)
        assert code == 200 and record["status"] == "written_off"
        [container] = record["containers"]
        assert container["written_off_at"] == "2026-11-23T12:00:00Z"
        assert container["gate_id"] == "beilun-gate"

    run(scenario())


def test_an_inspected_declaration_shows_the_verdicts_reasons() -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.bound()
        s.pipeline(reference, "inspect", ["unresolved red alert al-1 (route_deviation at X)"])
        record = (await s.service.get(reference, ACME))[1]
        assert record["status"] == "inspect"
        assert record["reasons"] == ["unresolved red alert al-1 (route_deviation at X)"]

    run(scenario())


def test_a_seized_container_stays_inspect_with_the_officers_reason() -> None:
    record = {
        "status": "bound",
        "reference": "R",
        "declaration": {"declaration_id": "D1", "lock_id": "L1", "container_no": "C1"},
    }
    seized = {
        "declaration_id": "D1",
        "state": "closed",
        "verdict": "inspect",
        "verdict_reasons": '["officer chen.wei seized the container by hand: x"]',
    }
    status = live_status(record, {"L1": seized}, {})
    assert (status["status"], status["reasons"]) == (
        "inspect",
        ["officer chen.wei seized the container by hand: x"],
    )
    unsealed_at_gate = {"declaration_id": "D1", "state": "closed", "verdict": "release"}
    assert live_status(record, {"L1": unsealed_at_gate}, {})["status"] == "released"


def test_a_lock_that_moved_on_to_another_declaration_does_not_change_this_status() -> None:
    record = {
        "status": "bound",
        "reference": "R",
        "declaration": {"declaration_id": "D1", "lock_id": "L1", "container_no": "C1"},
    }
    other = {"declaration_id": "D2", "state": "inspect", "verdict_reasons": "[]"}
    assert live_status(record, {"L1": other}, {})["status"] == "bound"


def test_a_train_is_as_far_as_its_slowest_container_and_inspect_if_any_is() -> None:
    record = {
        "status": "bound",
        "reference": "R",
        "declaration": {
            "declaration_id": "T1",
            "lock_id": "L1",
            "container_no": "C1",
            "locks": [
                {"lock_id": "L1", "container_no": "C1"},
                {"lock_id": "L2", "container_no": "C2"},
            ],
        },
    }
    done = {"processed_at": "t", "decided_by": "w", "gate_id": "g"}
    moving = {"declaration_id": "T1", "state": "in_transit", "verdict_reasons": "[]"}
    assert live_status(record, {"L2": moving}, {"L1": done})["status"] == "in_transit"
    assert live_status(record, {}, {"L1": done, "L2": done})["status"] == "written_off"
    held = {"declaration_id": "T1", "state": "inspect", "verdict_reasons": '["plate"]'}
    inspected = live_status(record, {"L2": held}, {"L1": done})
    assert (inspected["status"], inspected["reasons"]) == ("inspect", ["C2: plate"])


# --------------------------------------------------------------------------- list


def test_a_declarant_lists_its_own_declarations_filtered_by_status() -> None:
    async def scenario() -> None:
        s = Setup()
        accepted = await s.declare()
        bound = await s.bound(lock_id="LK-02", container_no="MSCU1234566")
        theirs = await s.declare(OTHER, lock_id="LK-03")
        s.pipeline(bound, "in_transit")
        code, body = await s.service.list(ACME)
        assert code == 200
        assert sorted(d["reference"] for d in body["declarations"]) == sorted([accepted, bound])
        assert [
            d["reference"] for d in (await s.service.list(ACME, "in_transit"))[1]["declarations"]
        ] == [bound]
        assert [
            d["reference"] for d in (await s.service.list(ACME, "accepted"))[1]["declarations"]
        ] == [accepted]
        assert (await s.service.list(ACME, "written_off"))[1]["declarations"] == []
        assert {d["reference"] for d in (await s.service.list(CUSTOMS))[1]["declarations"]} == {
            accepted,
            bound,
            theirs,
        }
        code, body = await s.service.list(ACME, "lost")
        assert code == 422 and body["errors"][0]["field"] == "status"

    run(scenario())


# --------------------------------------------------------------------------- amend


def test_amend_before_binding_checks_the_whole_form_again_and_keeps_every_version() -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.declare()
        lines = road_form()["cargo"]
        bigger = [dict(lines[0], value=9000)]  # USD 9,000 = HK$70,200: charge 6.75
        code, record = await s.service.amend(reference, {"cargo": bigger}, ACME)
        assert code == 200, record
        assert (record["version"], record["status"], record["fee"]["total"]) == (
            2,
            "accepted",
            "6.75",
        )
        assert record["declaration"]["cargo"][0]["value"] == 9000.0
        [first] = record["versions"]
        assert (first["version"], first["fee"]["total"]) == (1, "0.50")
        code, record = await s.service.amend(reference, {"vehicle_plate": "浙G01346"}, ACME)
        assert (code, record["version"], len(record["versions"])) == (200, 3, 2)
        assert record["declaration"]["vehicle_plate"] == "浙G01346"
        vague = [dict(lines[0], description="goods for sale")]
        code, body = await s.service.amend(reference, {"cargo": vague}, ACME)
        assert code == 422 and body["errors"][0]["field"] == "cargo[0].description"
        code, body = await s.service.amend(reference, {"declaration_id": "NEW-1"}, ACME)
        assert code == 422 and body["errors"][0]["field"] == "declaration_id"
        assert s.sent == []  # unbound: nothing goes to the pipeline

    run(scenario())


def test_moving_the_arrival_later_does_not_undo_a_late_filing() -> None:
    async def scenario() -> None:
        s = Setup()
        # Filed 15 days after the deadline of an arrival on 8 November: two started periods
        # of 14 days, so the fee (HK$0.50) is charged twice more.
        reference = await s.declare(
            departure="2026-11-08 06:05 +08:00", arrival="2026-11-08 10:00 +08:00"
        )
        filed = s.store.records[reference]["fee"]
        assert (filed["late_charge"], filed["total"]) == ("1.00", "1.50"), filed
        code, record = await s.service.amend(
            reference,
            {"departure": "2026-11-23 16:05 +08:00", "arrival": "2026-11-23 19:35 +08:00"},
            ACME,
        )
        assert code == 200, record
        assert (record["fee"]["late_charge"], record["fee"]["total"]) == ("1.00", "1.50")
        assert record["declaration"]["eta_ts"] == "2026-11-23T11:35:00Z"
        # A later amendment that comes after the new deadline is charged for that, if more.
        s.service.clock = lambda: datetime(2026, 12, 30, 2, 0, tzinfo=UTC)
        code, record = await s.service.amend(reference, {"vehicle_plate": "浙G01346"}, ACME)
        assert code == 200 and record["fee"]["late_charge"] == "1.50", record["fee"]

    run(scenario())


def test_amend_after_binding_changes_only_the_plate_and_republishes() -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.bound()
        s.pipeline(reference, "in_transit")
        code, body = await s.service.amend(reference, {"arrival": "2026-11-23 20:35 +08:00"}, ACME)
        assert code == 409 and "only vehicle_plate may be amended (not arrival)" in body["error"]
        code, record = await s.service.amend(reference, {"vehicle_plate": "浙G 01346"}, ACME)
        assert code == 200, record
        assert (record["vehicle_plate"], record["status"], record["version"]) == (
            "浙G01346",
            "in_transit",
            2,
        )
        topic, republished = s.sent[-1]
        assert topic == "customs/declarations" and republished["vehicle_plate"] == "浙G01346"
        assert republished["declaration_id"] == record["declaration_id"]
        assert record["versions"][0]["vehicle_plate"] == "浙G01345"
        code, body = await s.service.amend(reference, {"vehicle_plate": "XYZ"}, ACME)
        assert code == 422 and body["errors"][0]["field"] == "vehicle_plate"

    run(scenario())


def test_amend_after_arrival_is_refused() -> None:
    async def scenario() -> None:
        s = Setup()
        for state in ("released", "inspect"):
            reference = await s.bound(lock_id=f"LK-{state}")
            s.pipeline(reference, state)
            code, body = await s.service.amend(reference, {"vehicle_plate": "浙G01346"}, ACME)
            assert code == 409, body
            assert body["error"] == (
                f"declaration {reference} can no longer be amended: the container already reached "
                f"the gate (status {state})."
            )

    run(scenario())


# --------------------------------------------------------------------------- cancel


def test_cancel_before_binding_and_before_departure() -> None:
    async def scenario() -> None:
        s = Setup()
        accepted = await s.declare()
        code, record = await s.service.cancel(accepted, "order withdrawn", ACME)
        assert (code, record["status"], record["cancel_reason"]) == (
            200,
            "cancelled",
            "order withdrawn",
        )
        assert s.sent == []
        bound = await s.bound(lock_id="LK-02", container_no="MSCU1234566")
        s.pipeline(bound, "declared")  # the pipeline knows it; the lock is not sealed yet
        code, record = await s.service.cancel(bound, None, ACME)
        assert (code, record["status"]) == (200, "cancelled")
        topic, message = s.sent[-1]
        assert topic == "customs/cancellations"
        assert message == {
            "declaration_id": bound,
            "locks": ["LK-02"],
            "reason": "cancelled by the declarant",
            "ts": "2026-11-23T02:00:00Z",
        }
        for code, body in (
            await s.service.cancel(accepted, None, ACME),
            await s.service.bind(accepted, "浙G01345", ACME),
            await s.service.amend(accepted, {"vehicle_plate": "浙G01346"}, ACME),
        ):
            assert code == 409 and " cancelled" in body["error"], body

    run(scenario())


def test_cancel_after_departure_is_refused() -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.bound()
        s.pipeline(reference, "sealed")
        code, body = await s.service.cancel(reference, None, ACME)
        assert code == 409
        assert body["error"] == (
            f"declaration {reference} can no longer be cancelled: the lock was sealed and the "
            "container departed (status sealed)."
        )

    run(scenario())


# --------------------------------------------------------------------------- another declarant


def test_another_declarants_reference_is_not_found_and_customs_change_nothing() -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.declare()
        for answer in (
            await s.service.get(reference, OTHER),
            await s.service.amend(reference, {"vehicle_plate": "浙G01346"}, OTHER),
            await s.service.cancel(reference, None, OTHER),
        ):
            assert answer[0] == 404
        assert (await s.service.get(reference, CUSTOMS))[0] == 200
        assert (await s.service.amend(reference, {"vehicle_plate": "浙G01346"}, CUSTOMS))[0] == 403
        assert (await s.service.cancel(reference, None, CUSTOMS))[0] == 403
        assert s.store.records[reference]["status"] == "accepted"

    run(scenario())


# --------------------------------------------------------------------------- origin approval


def test_the_origin_office_approves_a_bound_declaration_and_the_transfer_goes_to_the_destination() -> (
    None
):
    async def scenario() -> None:
        s = Setup()
        accepted = await s.declare(lock_id="LK-09")
        assert (await s.service.approve(accepted, CUSTOMS))[0] == 409  # not bound yet
        reference = await s.bound()
        assert (await s.service.approve(reference, ACME))[0] == 403  # declarants do not approve
        code, record = await s.service.approve(reference, CUSTOMS)
        assert code == 200, record
        approval = dict(record["approval"])
        kept = approval.pop("transfer")
        assert approval == {
            "office": "ningbo-officer",
            "at": "2026-11-23T02:00:00Z",
            "transfer_topic": "customs/transfers/beilun-gate",
            "seals": [{"lock_id": "LK-01", "container_no": "CSQU3054383", "seal_no": "LK-01"}],
        }
        assert record["history"][-1] == {
            "event": "approved",
            "at": "2026-11-23T02:00:00Z",
            "by": "ningbo-officer",
            "transfer": "customs/transfers/beilun-gate",
        }
        topic, transfer = s.sent[-1]
        assert topic == "customs/transfers/beilun-gate"
        assert transfer["approving_office"] == "ningbo-officer"
        assert transfer["seals"] == [
            {"lock_id": "LK-01", "container_no": "CSQU3054383", "seal_no": "LK-01"}
        ]
        assert transfer["declaration"]["declaration_id"] == reference
        assert kept == transfer  # the intake keeps what it published, for the destination
        assert (await s.service.approve(reference, CUSTOMS))[0] == 409  # once
        sealed = await s.bound(lock_id="LK-02", container_no="MSCU1234566")
        s.pipeline(sealed, "sealed")
        code, body = await s.service.approve(sealed, CUSTOMS)
        assert code == 409 and "before its lock is sealed" in body["error"]

    run(scenario())


def test_the_destination_office_reads_its_transfers_with_their_status() -> None:
    async def scenario() -> None:
        s = Setup()
        first = await s.bound()
        second = await s.bound(lock_id="LK-02", container_no="MSCU1234566")
        unapproved = await s.bound(lock_id="LK-03", container_no="TGHU9876542")
        for reference in (first, second):
            assert (await s.service.approve(reference, CUSTOMS))[0] == 200
        s.pipeline(first, "in_transit")
        published = {
            t["reference"]: t for topic, t in s.sent if topic.startswith("customs/transfers/")
        }
        code, inbox = await s.service.transfers(CUSTOMS, "beilun-gate")
        assert code == 200 and inbox["gate"] == "beilun-gate"
        assert {row["transfer"]["reference"]: row["status"] for row in inbox["transfers"]} == {
            first: "in_transit",
            second: "bound",
        }
        assert unapproved not in {row["transfer"]["reference"] for row in inbox["transfers"]}
        for row in inbox["transfers"]:
            assert row["transfer"] == published[row["transfer"]["reference"]]
        assert await s.service.transfers(CUSTOMS, "daxie-gate") == (
            200,
            {"gate": "daxie-gate", "transfers": []},
        )
        assert (await s.service.transfers(ACME, "beilun-gate"))[0] == 403
        code, body = await s.service.transfers(CUSTOMS, None)
        assert code == 422 and body["errors"][0]["field"] == "gate"

    run(scenario())


def test_the_office_records_its_seal_numbers_on_the_transfer() -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.bound()
        for seals, field in (
            ("YW-1", "seals"),
            ({"LK-77": "YW-1"}, "seals.LK-77"),
            ({"LK-01": ""}, "seals.LK-01"),
            ({"LK-01": 7}, "seals.LK-01"),
        ):
            code, body = await s.service.approve(reference, CUSTOMS, seals)
            assert code == 422 and body["errors"][0]["field"] == field, (seals, body)
            assert body["errors"][0]["message"].endswith(".")
        assert s.sent[-1][0] == "customs/declarations"  # nothing transferred yet
        code, record = await s.service.approve(reference, CUSTOMS, {"LK-01": " YW-2611-000123 "})
        assert code == 200, record
        topic, transfer = s.sent[-1]
        assert transfer["seals"] == [
            {"lock_id": "LK-01", "container_no": "CSQU3054383", "seal_no": "YW-2611-000123"}
        ]

    run(scenario())


# --------------------------------------------------------------------------- write-off notices


def test_the_write_off_notice_writes_the_declaration_off_once_and_shows_in_its_history() -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.bound()
        s.pipeline(reference, "released")
        assert (await s.service.get(reference, ACME))[1]["status"] == "released"
        said = await s.written_off(reference)
        assert said == (
            f"declaration {reference}: container CSQU3054383 under lock LK-01 "
            "written off at beilun-gate at 2026-11-23T12:00:00Z; the notice is recorded."
        )
        record = (await s.service.get(reference, ACME))[1]
        assert record["status"] == "written_off"
        assert [e["event"] for e in record["history"]] == ["submitted", "bound", "written_off"]
        assert record["history"][-1] == {
            "event": "written_off",
            "at": "2026-11-23T12:00:00Z",
            "lock_id": "LK-01",
            "gate_id": "beilun-gate",
            "by": "smartlock automatic gate verification (worker w1)",
        }
        again = await s.written_off(reference)
        assert again.endswith("received again; it was already recorded.")
        assert len((await s.service.get(reference, ACME))[1]["history"]) == 3
        listed = (await s.service.list(ACME, "written_off"))[1]["declarations"]
        assert [(d["reference"], d["version"]) for d in listed] == [(reference, 1)]

    run(scenario())


def test_a_notice_for_a_declaration_not_filed_here_or_a_foreign_lock_changes_nothing() -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.bound()
        decl = s.store.records[reference]["declaration"]
        elsewhere = notice(decl | {"declaration_id": "DCL-ELSEWHERE"}, "LK-01", "CSQU3054383")
        said = await s.service.record_writeoff(elsewhere)
        assert said == (
            "write-off notice for declaration DCL-ELSEWHERE ignored: it was not filed at this intake."
        )
        said = await s.service.record_writeoff(notice(decl, "LK-99", "CSQU3054383"))
        assert said.endswith("lock LK-99 is not one of its locks (LK-01).")
        assert (await s.service.get(reference, ACME))[1]["status"] == "bound"

    run(scenario())


def test_a_train_is_written_off_when_every_containers_notice_arrived() -> None:
    async def scenario() -> None:
        s = Setup()
        status, body = await s.service.submit(rail_form(), ACME)
        assert status == 201, body
        reference = body["reference"]
        assert (await s.service.bind(reference, "X9011", ACME))[0] == 200
        locks = [c["lock_id"] for c in s.store.records[reference]["declaration"]["locks"]]
        for lock in locks:
            s.store.trips[lock] = {"declaration_id": reference, "state": "released"}
        for n, lock in enumerate(locks, 1):
            await s.written_off(reference, lock)
            record = (await s.service.get(reference, ACME))[1]
            done = [c["status"] for c in record["containers"]].count("written_off")
            assert done == n
            assert record["status"] == ("written_off" if n == len(locks) else "released")

    run(scenario())


def test_a_notice_is_stored_even_while_storage_is_down_and_a_bad_one_is_dropped_with_a_reason(
    caplog: Any,
) -> None:
    async def scenario() -> None:
        s = Setup()
        reference = await s.bound()
        decl = s.store.records[reference]["declaration"]
        real_add, failures = s.store.add_writeoff, [2]

        async def flaky(*args: Any) -> bool:
            if failures[0]:
                failures[0] -= 1
                raise ConnectionError("Redis is down")
            return await real_add(*args)

        s.store.add_writeoff = flaky  # type: ignore[method-assign,assignment]
        payload = json.dumps(notice(decl, "LK-01", "CSQU3054383").to_payload()).encode()
        await take_notice(s.service, Message("customs/writeoffs/yiwu-origin", payload), 0.01)
        assert failures == [0]
        assert (await s.service.get(reference, ACME))[1]["writeoffs"]["LK-01"]["gate_id"] == (
            "beilun-gate"
        )
        await take_notice(s.service, Message("customs/writeoffs/yiwu-origin", b'{"lock_id": 1}'))

    with caplog.at_level("INFO"):
        run(scenario())
    assert "not stored yet (Redis is down); retrying" in caplog.text
    assert "is not a write-off notice" in caplog.text and "dropped" in caplog.text


class Message:
    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload = topic, payload


def test_two_intakes_on_one_host_take_two_write_off_sessions(tmp_path: Path) -> None:
    host = socket.gethostname()
    first, held = claim_inbox(tmp_path, None)
    second, also_held = claim_inbox(tmp_path, None)
    assert (first, second) == (host, f"{host}-2")
    assert held is not None and also_held is not None
    held.close()  # the first intake stopped: a new one resumes its session
    again, held_again = claim_inbox(tmp_path, None)
    assert again == host
    assert claim_inbox(tmp_path, "yiwu-1") == ("yiwu-1", None)  # a name given is used as is
    for handle in (also_held, held_again):
        assert handle is not None
        handle.close()
