"""How the gate shows an outcome to the officer (one line per verdict, reasons below)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from smartlock.core.penalties import UNDECLARED_MAX_FINE, undeclared_consignment
from smartlock.services.gate.client import Outcome

#: Exit codes of ``smartlock gate``.
RELEASED, INSPECT, MANUAL = 0, 1, 3


_HINTS = {
    "gate_id": "an identifier (letters, digits and . _ : -), e.g. beilun-gate",
    "lock_id": "an identifier (letters, digits and . _ : -), e.g. LK-0001",
    "officer": "the officer's identity (letters, digits and . _ : -), e.g. chen.wei",
    "ts": "an RFC 3339 UTC time to the second, e.g. 2026-11-24T09:00:00Z",
    "note": "a note of 1 to 1000 characters",
    "alert_id": "the alert id as the console or the gate shows it, e.g. al-5c83e5a80efb1c5598df",
    "declaration_id": "an identifier (letters, digits and . _ : -), e.g. DCL-02",
}


def invalid_sentence(what: str, exc: ValidationError) -> str:
    """Why a message the gate was asked to send is invalid, as one sentence per field."""
    problems = []
    for e in exc.errors():
        field = ".".join(str(p) for p in e["loc"]) or what
        given = json.dumps(e.get("input"), ensure_ascii=False, default=str)
        detail = _HINTS.get(field) or str(e["msg"]).removeprefix("Value error, ")
        problems.append(
            f"{field} {given} is not valid; give {detail}"
            if field in _HINTS
            else f"{field} {given}: {detail}"
        )
    return f"The {what} was not sent: " + "; ".join(problems) + "."


def as_sentence(text: str) -> str:
    """A reason or note as a sentence: first letter upper case, a full stop at the end."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def show_outcome(console: Console, outcome: Outcome, timeout: float) -> int:
    """Prints the verdict, every reason, or the manual-inspection notice; returns the exit code."""
    a = outcome.arrival
    seen = f"lock {a['lock_id']}, container {a['container_no']}, plate {a['vehicle_plate']}"
    for forged in outcome.forged:
        console.print(
            f"[bold magenta]FORGED VERDICT IGNORED[/]: a {str(forged.get('verdict')).upper()} "
            f"verdict for this arrival came without a valid signature of gate {a['gate_id']} "
            f"({'no signature' if 'sig' not in forged else 'wrong signature'}); report it to "
            "security."
        )
    if outcome.verdict is None:
        console.print(
            f"[bold yellow]NO VERDICT FROM THE PIPELINE WITHIN {timeout:g} s — MANUAL INSPECTION MODE[/]: "
            f"send the truck to manual inspection ({seen}). The arrival is queued and will be reconciled"
            f"{'' if outcome.published else ' (not yet delivered to the broker)'}."
        )
        return MANUAL
    v = outcome.verdict
    took = f"{outcome.elapsed_s * 1000:.0f} ms"
    if v["verdict"] == "release":
        console.print(
            f"[bold green]RELEASE[/] → fast lane: declaration {v['declaration_id']} written off "
            f"({seen}; {took})."
        )
        return RELEASED
    count = len(v["reasons"])
    console.print(
        f"[bold red]INSPECT[/] → inspection lane ({seen}; {took}). "
        f"{'The reason' if count == 1 else f'The {count} reasons'}:"
    )
    for reason in v["reasons"]:
        console.print(f"  • {as_sentence(reason)}", markup=False)
    if v.get("declaration_id") is None:
        console.print(f"  [bold red]{undeclared_sentence(a['lock_id'], a['gate_id'])}[/]")
    return INSPECT


def undeclared_sentence(lock_id: str, gate_id: str) -> str:
    """What the officer reads about an arrival that no open declaration covers."""
    return str(undeclared_consignment(lock_id, gate_id)["message"])


def writeoff_sentence(record: dict[str, Any]) -> str:
    """A write-off record (``<p>:writeoff:<declaration>``) as the sentence a person reads."""
    seal = record["evidence"].get("seal") or {}
    sealed = (
        "the seal stayed intact from sealing to arrival"
        if seal.get("intact")
        else "the seal did not stay intact"
    )
    text = (
        f"Declaration {record['declaration_id']} written off: container {record['container_no']} "
        f"(lock {record['lock_id']}) released at {record['gate_id']}, decided by "
        f"{record['decided_by']} at {record['processed_at']}; {sealed}"
    )
    for alert in record["evidence"].get("alerts", []):
        res = alert.get("resolution")
        if res:
            text += (
                f"; alert {alert['alert_id']} ({alert['type'].replace('_', ' ')}) was resolved by "
                f"{res['operator']} at {res['ts']}: {res['note']}"
            )
    return text + "."


def reconciled_sentence(entry: dict[str, Any]) -> str:
    """A reconciled fallback-queue entry as a sentence: what the gate did, what the pipeline said."""
    v = entry["verdict"]
    if "outcome" in entry:
        o = entry["outcome"]
        return (
            f"Reconciled: the outcome of the hand inspection at {o['ts']}, queued while the "
            f"pipeline did not answer, is recorded: {outcome_clause(v, o)}"
        )
    a = entry["arrival"]
    said = f"the pipeline's verdict is {v['verdict']}"
    if v["reasons"]:
        said += ": " + "; ".join(v["reasons"])
    return (
        f"Reconciled: lock {a['lock_id']} (container {a['container_no']}, plate "
        f"{a['vehicle_plate']}) arrived at {a['ts']} and was sent to {entry['manual_decision']}; "
        f"{said}."
    )


def outcome_sentence(verdict: dict[str, Any], outcome: dict[str, Any]) -> str:
    """What the officer reads once the pipeline recorded a hand inspection's outcome."""
    return f"Recorded: {outcome_clause(verdict, outcome)}"


def outcome_clause(verdict: dict[str, Any], outcome: dict[str, Any]) -> str:
    """The recorded outcome, from "officer ..." to the full stop."""
    who = f"officer {outcome['officer']}"
    if verdict.get("declaration_id") is None:
        return (
            f"{who} {outcome['outcome']} the container under lock {outcome['lock_id']} "
            f"at {outcome['gate_id']}, which no open declaration covers. It is an undeclared "
            "consignment: detain the goods; the consignor faces a fine of up to "
            f"HK${UNDECLARED_MAX_FINE:,.0f}."
        )
    if verdict["verdict"] == "release":
        return (
            f"{who} cleared container {outcome['container_no']} (lock {outcome['lock_id']}); "
            f"declaration {verdict['declaration_id']} is written off."
        )
    return (
        f"{who} seized container {outcome['container_no']} (lock {outcome['lock_id']}); "
        f"declaration {verdict['declaration_id']} is closed: the container is seized, not "
        "released, and the seizure is in the audit trail."
    )
