"""The core's audit entries and write-offs: made with the verdict, the same offline and live."""

from __future__ import annotations

import io
import json
from typing import Any

from smartlock.contract.codec import decode
from smartlock.core.detector import Detector
from smartlock.core.engine import Engine
from smartlock.core.evaluate import evaluate
from smartlock.core.limits import DetectionSettings
from smartlock.core.writeoff import WORKER_FIELDS, VerdictRecord, stamped
from tests.builders import Trip, synthetic_geofences
from tests.unit.test_detector import _outcome
from tests.unit.test_evaluate import GOLDEN, evaluate_cli


def records_of(messages: list[tuple[str, Any]]) -> list[VerdictRecord]:
    engine = Engine(Detector(DetectionSettings(), synthetic_geofences()))
    return [r for t, p in messages for r in engine.feed(decode(t, p)).records]


def test_every_verdict_is_audited_and_a_release_written_off_without_worker_fields() -> None:
    released = Trip("L1", "D1").normal().arrive()
    inspected = Trip("L2", "D2").normal().arrive(plate="浙A99999")
    records = records_of(released.messages + inspected.messages)
    assert [(r.kind, r.payload["lock_id"], r.payload["verdict"]) for r in records] == [
        ("audit", "L1", "release"),
        ("writeoff", "L1", "release"),
        ("audit", "L2", "inspect"),
    ]
    writeoff = records[1]
    assert writeoff.origin_site == "test-origin" and writeoff.payload["container_no"]
    assert writeoff.payload["evidence"]["seal"]["intact"] is True
    assert all(field not in r.payload for r in records for field in WORKER_FIELDS)
    assert records[0].origin_site is None


def test_the_evidence_is_the_trip_as_the_verdict_left_it() -> None:
    # After the release the lock is opened at the gate, which closes the trip; the
    # write-off still shows the seal intact and the last fix inside the gate zone.
    trip = Trip().normal().arrive()
    trip.event("unsealed", at=(50, 0))
    [_, writeoff] = records_of(trip.messages)
    assert writeoff.payload["evidence"]["seal"]["intact"] is True
    assert writeoff.payload["evidence"]["last_fix"]["inside_gate_zone"] is True


def test_an_officers_outcome_is_audited_and_written_off_in_the_officers_name() -> None:
    trip = Trip().declare().arrive()  # never sealed: inspect
    records = records_of(_outcome(trip, "cleared").messages)
    assert [(r.kind, r.payload["kind"]) for r in records] == [
        ("audit", "verdict"),
        ("audit", "manual_outcome"),
        ("writeoff", "writeoff"),
    ]
    persisted = stamped(records[-1].payload, "worker 2", "2026-11-23T03:00:00Z")
    assert persisted["decided_by"] == "officer chen.wei (manual inspection, cleared)"
    automatic = stamped(records[0].payload, "worker 2", "2026-11-23T03:00:00Z")
    assert automatic["decided_by"] == "smartlock automatic gate verification (worker 2)"
    assert automatic["processed_at"] == "2026-11-23T03:00:00Z"


def test_a_refused_arrival_is_audited_as_an_undeclared_consignment() -> None:
    trace = '{"topic": "gates/test-gate/arrivals", "payload": "{not json"}\n'
    out = io.StringIO()
    evaluate(
        Detector(DetectionSettings(), synthetic_geofences()),
        io.StringIO(trace),
        out,
        io.StringIO(),
        records=True,
    )
    verdict, audit = (json.loads(line) for line in out.getvalue().splitlines())
    assert verdict["payload"]["verdict"] == "inspect"
    assert audit["record"] == "audit"
    assert audit["payload"]["evidence"] == {"declaration": None}
    assert audit["payload"]["penalty"]["kind"] == "undeclared_consignment"


def test_evaluate_records_adds_record_lines_to_the_golden_output() -> None:
    plain = evaluate_cli(str(GOLDEN / "acceptance.jsonl"))
    shown = evaluate_cli(str(GOLDEN / "acceptance.jsonl"), "--records")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines(keepends=True)
    assert "".join(x for x in lines if '"record":' not in x) == plain.stdout
    parsed = [json.loads(x) for x in lines]
    verdicts = [x["payload"] for x in parsed if x.get("topic", "").endswith("/verdicts")]
    records = [x for x in parsed if "record" in x]
    audits = [r["payload"] for r in records if r["record"] == "audit"]
    writeoffs = [r["payload"] for r in records if r["record"] == "writeoff"]
    assert [(a["lock_id"], a["verdict"]) for a in audits] == [
        (v["lock_id"], v["verdict"]) for v in verdicts
    ]
    assert sorted(w["lock_id"] for w in writeoffs) == sorted(
        v["lock_id"] for v in verdicts if v["verdict"] == "release"
    )
    for i, x in enumerate(parsed):  # a verdict's records follow the outputs of its arrival
        if x.get("record") == "audit":
            verdict = next(
                y for y in reversed(parsed[:i]) if y.get("topic", "").endswith("/verdicts")
            )
            assert verdict["payload"]["ts"] == x["payload"]["arrival_ts"]
    assert f"{len(records)} records" in shown.stderr
