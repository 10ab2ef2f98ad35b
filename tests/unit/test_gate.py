"""Write-off records and the gate's fallback queue, without brokers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from smartlock.adapters.credentials import CredentialError, CredentialStore
from smartlock.cli.commands.gate import watched_arrival
from smartlock.contract.models import AlertType, Severity, TripState
from smartlock.core.state import AlertRecord, Fix, Trip
from smartlock.core.writeoff import audit_entry, stamped, writeoff_record
from smartlock.services.gate.client import (
    MANUAL,
    GateClient,
    Outcome,
    gate_event,
    make_arrival,
    make_outcome,
    manual_reason,
)
from smartlock.services.gate.queue import FallbackQueue, arrival_key
from smartlock.services.gate.report import (
    outcome_sentence,
    reconciled_sentence,
    show_outcome,
    writeoff_sentence,
)
from smartlock.settings import load_settings


def trip(**changes: object) -> Trip:
    base = Trip(
        declaration_id="D1",
        declaration_digest="x",
        container_no="CSQU3054383",
        vehicle_plate="浙G01345",
        mode="road",
        corridor_id="c",
        origin_site="o",
        destination_gate="beilun-gate",
        departure_ts=1_795_000_000,
        eta_ts=1_795_010_000,
        state=TripState.RELEASED,
        sealed_ts=1_795_000_100,
        position=Fix(seq=9, ts=1_795_009_000, lat=29.9, lon=121.8),
        in_destination=True,
    )
    return base.model_copy(update=changes)


VERDICT = {
    "gate_id": "beilun-gate",
    "declaration_id": "D1",
    "lock_id": "L1",
    "ts": "2026-11-19T10:00:00Z",
    "verdict": "release",
    "reasons": [],
}


def test_a_release_writes_off_with_who_when_and_the_evidence() -> None:
    resolved = AlertRecord(
        alert_id="al-1",
        type=AlertType.ROUTE_DEVIATION,
        severity=Severity.RED,
        ts=1_795_005_000,
        open=False,
        resolved_by="Wang Li",
        resolved_note="police check",
        resolved_ts=1_795_008_000,
    )
    record = stamped(
        writeoff_record(trip(alerts=[resolved]), VERDICT), "worker 1", "2026-11-23T03:00:00Z"
    )
    assert record["kind"] == "writeoff" and record["container_no"] == "CSQU3054383"
    assert record["decided_by"] == "smartlock automatic gate verification (worker 1)"
    assert (record["arrival_ts"], record["processed_at"]) == (
        "2026-11-19T10:00:00Z",
        "2026-11-23T03:00:00Z",
    )
    assert record["evidence"]["seal"] == {"sealed_ts": "2026-11-18T11:08:20Z", "intact": True}
    assert record["evidence"]["last_fix"]["inside_gate_zone"] is True
    [alert] = record["evidence"]["alerts"]
    assert alert["resolution"] == {
        "operator": "Wang Li",
        "note": "police check",
        "ts": "2026-11-18T13:20:00Z",
    }
    json.dumps(record)  # persisted as JSON


def test_no_write_off_without_a_release_of_this_declaration() -> None:
    with pytest.raises(ValueError, match="no write-off"):
        writeoff_record(trip(), VERDICT | {"verdict": "inspect", "reasons": ["x"]})
    with pytest.raises(ValueError, match="no write-off"):
        writeoff_record(trip(), VERDICT | {"declaration_id": "D2"})


def test_an_inspect_of_an_unknown_lock_is_audited_too() -> None:
    entry = audit_entry(
        None,
        VERDICT
        | {"declaration_id": None, "verdict": "inspect", "reasons": ["no open declaration"]},
    )
    assert entry["verdict"] == "inspect" and entry["evidence"] == {"declaration": None}


def test_an_undeclared_consignment_is_flagged_for_detention_in_the_audit_trail() -> None:
    entry = audit_entry(
        None,
        VERDICT
        | {"declaration_id": None, "verdict": "inspect", "reasons": ["no open declaration"]},
    )
    assert entry["penalty"]["kind"] == "undeclared_consignment"
    assert entry["penalty"]["action"] == "detain"
    assert entry["penalty"]["max_fine_hkd"] == "50000.00"
    assert entry["penalty"]["message"].startswith(
        "The container under lock L1 arrived at beilun-gate with no open declaration"
    )


def test_a_declared_consignment_carries_no_penalty_flag() -> None:
    release = audit_entry(trip(), VERDICT)
    inspect = audit_entry(trip(), VERDICT | {"verdict": "inspect", "reasons": ["x"]})
    assert "penalty" not in release and "penalty" not in inspect


def test_the_fallback_queue_keeps_arrivals_until_their_verdict_is_known(tmp_path: Path) -> None:
    arrival = make_arrival("beilun-gate", "浙G01345", "L1", "CSQU3054383", "2026-11-23T03:00:00Z")
    queue = FallbackQueue(tmp_path)
    key = queue.add(
        arrival, published=False, queued_at="2026-11-23T03:00:01Z", decision="manual inspection"
    )
    assert key == arrival_key(arrival)
    again = FallbackQueue(tmp_path)  # a restarted gate client sees the same queue
    [entry] = again.pending()
    assert entry["arrival"] == arrival and entry["published"] is False
    again.mark_published(key)
    assert again.pending()[0]["published"] is True
    again.reconcile(key, VERDICT | {"lock_id": "L1"}, "2026-11-23T03:10:00Z")
    assert again.pending() == []
    [done] = again.done()
    assert (
        done["verdict"]["verdict"] == "release" and done["manual_decision"] == "manual inspection"
    )
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_gate_arrival_is_validated_before_it_is_sent() -> None:
    with pytest.raises(ValueError):
        make_arrival("beilun-gate", "浙G01345", "L1", "CSQU3054383", "yesterday")
    assert (
        make_arrival("beilun-gate", "浙G01345", "L1", "csqu 3054383", "2026-11-23T03:00:00Z")[
            "container_no"
        ]
        == "CSQU3054383"
    )


def test_a_write_off_is_told_in_a_sentence() -> None:
    resolved = AlertRecord(
        alert_id="al-1",
        type=AlertType.ROUTE_DEVIATION,
        severity=Severity.RED,
        ts=1_795_005_000,
        open=False,
        resolved_by="Wang Li",
        resolved_note="police check",
        resolved_ts=1_795_008_000,
    )
    record = writeoff_record(trip(alerts=[resolved]), VERDICT) | {
        "decided_by": "the pipeline",
        "processed_at": "2026-11-23T03:00:00Z",
    }
    assert writeoff_sentence(record) == (
        "Declaration D1 written off: container CSQU3054383 (lock L1) released at beilun-gate, decided "
        "by the pipeline at 2026-11-23T03:00:00Z; the seal stayed intact from sealing to arrival; "
        "alert al-1 (route deviation) was resolved by Wang Li at 2026-11-18T13:20:00Z: police check."
    )


def test_a_reconciled_arrival_is_told_in_a_sentence_without_manual_twice() -> None:
    arrival = make_arrival("beilun-gate", "浙G01345", "L1", "CSQU3054383", "2026-11-23T03:00:00Z")
    verdict = VERDICT | {"verdict": "inspect", "reasons": ["lock was never sealed", "x"]}
    text = reconciled_sentence({"arrival": arrival, "verdict": verdict, "manual_decision": MANUAL})
    assert text == (
        "Reconciled: lock L1 (container CSQU3054383, plate 浙G01345) arrived at 2026-11-23T03:00:00Z "
        "and was sent to manual inspection; the pipeline's verdict is inspect: lock was never "
        "sealed; x."
    )
    assert "manual manual" not in text


def test_a_manual_outcome_is_audited_and_written_off_in_the_officers_name() -> None:
    manual = {"outcome": "cleared", "officer": "chen.wei", "note": "checked by hand"}
    record = stamped(writeoff_record(trip(), VERDICT, manual), "worker w1", "2026-11-23T03:00:00Z")
    assert record["kind"] == "writeoff"
    assert record["decided_by"] == "officer chen.wei (manual inspection, cleared)"
    assert record["manual_outcome"] == manual
    seized = audit_entry(
        trip(),
        VERDICT | {"verdict": "inspect", "reasons": ["seized"]},
        {"outcome": "seized", "officer": "chen.wei", "note": "n"},
    )
    assert (seized["kind"], seized["manual_outcome"]["outcome"]) == ("manual_outcome", "seized")


def test_a_write_off_notice_goes_back_to_the_origin_office() -> None:
    from smartlock.contract.models import WriteOffNotice
    from smartlock.core.writeoff import writeoff_notice

    record = stamped(writeoff_record(trip(), VERDICT), "worker w1", "2026-11-23T03:00:00Z")
    notice = writeoff_notice(record, trip().origin_site)
    assert notice["origin_site"] == "o" and notice["gate_id"] == "beilun-gate"
    assert WriteOffNotice.model_validate(notice).to_payload() == notice


def test_a_gate_event_says_what_the_gate_saw_and_why_it_fell_back() -> None:
    arrival = make_arrival("beilun-gate", "浙G12345", "LK-1", "CSQU3054383", "2026-11-22T08:00:00Z")
    verdict = {"verdict": "release", "declaration_id": "D-1", "reasons": []}
    seen = gate_event(
        "verdict", arrival, "2026-11-22T08:00:01Z", verdict=verdict, round_trip_s=0.0423
    )
    assert seen["round_trip_ms"] == 42.3 and seen["verdict"] == "release"
    assert seen["lock_id"] == "LK-1" and seen["arrival_ts"] == "2026-11-22T08:00:00Z"
    manual = gate_event(
        "manual", arrival, "2026-11-22T08:00:01Z", reason=manual_reason(True, 1.0), published=True
    )
    assert manual["reason"] == "no signed verdict within 1 s" and "round_trip_ms" not in manual
    assert manual_reason(False, 1.0) == "the broker did not take the arrival"


def _shown(outcome: Outcome) -> str:
    console = Console(record=True, width=400)
    show_outcome(console, outcome, 1.0)
    return console.export_text()


def test_what_the_officer_reads_at_the_gate_is_sentences() -> None:
    arrival = make_arrival(
        "nowhere-gate", "浙B99999", "LK-9", "CSQU3054384", "2026-11-23T03:00:00Z"
    )
    reasons = [
        "gate nowhere-gate is not a known destination gate",
        "no open declaration binds lock LK-9",
        "container number CSQU3054384 read at the gate has check digit 4, expected 3",
    ]
    verdict = VERDICT | {"verdict": "inspect", "declaration_id": None, "reasons": reasons}
    lines = _shown(Outcome(arrival, verdict, 0.013, True)).splitlines()
    assert lines[0] == (
        "INSPECT → inspection lane (lock LK-9, container CSQU3054384, plate 浙B99999; 13 ms). "
        "The 3 reasons:"
    )
    assert lines[1:4] == [
        "  • Gate nowhere-gate is not a known destination gate.",
        "  • No open declaration binds lock LK-9.",
        "  • Container number CSQU3054384 read at the gate has check digit 4, expected 3.",
    ]
    assert lines[4].strip().startswith("The container under lock LK-9 arrived at nowhere-gate")
    released = _shown(Outcome(arrival, VERDICT, 0.18, True))
    assert released.strip() == (
        "RELEASE → fast lane: declaration D1 written off (lock LK-9, container CSQU3054384, "
        "plate 浙B99999; 180 ms)."
    )
    forged = _shown(Outcome(arrival, VERDICT, 0.2, True, forged=[{"verdict": "release"}]))
    assert forged.splitlines()[0].endswith("(no signature); report it to security.")
    for text in (released, forged, "\n".join(lines)):
        assert "{" not in text and "True" not in text and "'" not in text


def _an_outcome(result: str) -> dict:
    return make_outcome(
        "beilun-gate", "浙G01345", "L1", "CSQU3054383", result, "chen.wei", "opened",
        "2026-11-23T03:10:00Z",
    )  # fmt: skip


def test_a_recorded_outcome_is_told_in_a_sentence() -> None:
    assert outcome_sentence(VERDICT, _an_outcome("cleared")) == (
        "Recorded: officer chen.wei cleared container CSQU3054383 (lock L1); declaration D1 is "
        "written off."
    )
    seized = VERDICT | {"verdict": "inspect", "reasons": ["officer chen.wei seized ..."]}
    assert outcome_sentence(seized, _an_outcome("seized")).endswith(
        "declaration D1 is closed: the container is seized, not released, and the seizure is in "
        "the audit trail."
    )
    undeclared = outcome_sentence(seized | {"declaration_id": None}, _an_outcome("seized"))
    assert undeclared == (
        "Recorded: officer chen.wei seized the container under lock L1 at beilun-gate, which no "
        "open declaration covers. It is an undeclared consignment: detain the goods; the "
        "consignor faces a fine of up to HK$50,000."
    )
    assert undeclared.endswith("up to HK$50,000.")


def test_an_officers_outcome_waits_in_the_queue_until_the_pipeline_records_it(
    tmp_path: Path,
) -> None:
    arrival = make_arrival("beilun-gate", "浙G01345", "L1", "CSQU3054383", "2026-11-23T03:00:00Z")
    outcome = _an_outcome("seized")
    queue = FallbackQueue(tmp_path)
    queue.add_outcome(outcome, published=False, queued_at="2026-11-23T03:10:11Z")
    queue.add(arrival, published=True, queued_at="2026-11-23T03:00:01Z", decision=MANUAL)
    again = FallbackQueue(tmp_path)  # a restarted gate client sees both, the arrival first
    first, second = again.pending()
    assert first["arrival"] == arrival and second["outcome"] == outcome
    assert second["published"] is False
    again.mark_published(second["key"])
    verdict = VERDICT | {"verdict": "inspect", "ts": outcome["ts"], "reasons": ["seized"]}
    again.reconcile(second["key"], verdict, "2026-11-23T03:20:00Z")
    assert [e["arrival"] for e in again.pending()] == [arrival]
    [done] = again.done()
    assert done["outcome"] == outcome and done["verdict"] == verdict and done["published"]
    text = reconciled_sentence(second | {"verdict": verdict})
    assert text.startswith(
        "Reconciled: the outcome of the hand inspection at 2026-11-23T03:10:00Z, queued while the "
        "pipeline did not answer, is recorded: officer chen.wei seized container CSQU3054383"
    )
    assert text.endswith("the seizure is in the audit trail.")


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("nonsense line", 'The line "nonsense line" has 2 words, not 3 (PLATE LOCK CONTAINER).'),
        ('{"vehicle_plate": "X"}', 'lacks "lock_id" and "container_no".'),
        ("{bad", 'The line "{bad" is not a JSON object.'),
        ("浙G01345 LK 1 CSQU3054383", "has 4 words, not 3 (PLATE LOCK CONTAINER)."),
        (
            "浙G01345 LK/1 CSQU3054383",
            'The arrival was not sent: lock_id "LK/1" is not valid; give an identifier',
        ),
    ],
)
def test_an_unreadable_camera_line_is_told_in_a_sentence(line: str, said: str) -> None:
    with pytest.raises(ValueError) as refused:
        watched_arrival("beilun-gate", line)
    assert said in str(refused.value) and str(refused.value).endswith(".")
    assert "zip()" not in str(refused.value) and "KeyError" not in str(refused.value)


def test_only_an_officers_own_identity_records_an_outcome(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials")
    store.issue("gate", "beilun-gate")
    settings = load_settings(credentials={"dir": store.directory})
    with pytest.raises(CredentialError, match="Gate daxie-gate has no credentials") as no_gate:
        GateClient("daxie-gate", settings, FallbackQueue(tmp_path / "q"))
    assert "`smartlock credentials issue gate daxie-gate`." in str(no_gate.value)
    client = GateClient("beilun-gate", settings, FallbackQueue(tmp_path / "q"))
    with pytest.raises(CredentialError) as unknown:
        client.check_officer("chen.wei")
    assert str(unknown.value).startswith("Officer chen.wei has no credentials in ")
    assert str(unknown.value).endswith("`smartlock credentials issue officer chen.wei`.")
    with pytest.raises(CredentialError, match="beilun-gate is a gate, not an officer"):
        client.check_officer("beilun-gate")
    store.issue("operator", "wang-li")
    with pytest.raises(CredentialError, match="wang-li is an operator, not an officer"):
        client.check_officer("wang-li")
    store.issue("officer", "chen.wei")
    client.check_officer("chen.wei")
    client.close()
