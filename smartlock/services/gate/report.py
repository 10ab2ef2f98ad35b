"""How the gate shows an outcome to the officer (one line per verdict, reasons below)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from smartlock.core.penalties import undeclared_consignment
from smartlock.services.gate.client import Outcome

#: Exit codes of ``smartlock gate``.
RELEASED, INSPECT, MANUAL = 0, 1, 3


def show_outcome(console: Console, outcome: Outcome, timeout: float) -> int:
    """Prints the verdict, every reason, or the manual-inspection notice; returns the exit code."""
    a = outcome.arrival
    seen = f"lock {a['lock_id']}  container {a['container_no']}  plate {a['vehicle_plate']}"
    for forged in outcome.forged:
        console.print(
            f"[bold magenta]FORGED VERDICT IGNORED[/]: a {str(forged.get('verdict')).upper()!r} for "
            f"this arrival without a valid signature of gate {a['gate_id']} "
            f"({'no signature' if 'sig' not in forged else 'wrong signature'}); report it to security"
        )
    if outcome.verdict is None:
        console.print(
            f"[bold yellow]NO VERDICT FROM THE PIPELINE WITHIN {timeout:g} s — MANUAL INSPECTION MODE[/]: "
            f"send the truck to manual inspection ({seen}). The arrival is queued and will be reconciled"
            f"{'' if outcome.published else ' (not yet delivered to the broker)'}."
        )
        return MANUAL
    v = outcome.verdict
    if v["verdict"] == "release":
        console.print(
            f"[bold green]RELEASE[/] → fast lane, declaration {v['declaration_id']} written off  "
            f"({seen}, {outcome.elapsed_s * 1000:.0f} ms)"
        )
        return RELEASED
    console.print(
        f"[bold red]INSPECT[/] → inspection lane  ({seen}, {outcome.elapsed_s * 1000:.0f} ms)"
    )
    for reason in v["reasons"]:
        console.print(f"  • {reason}")
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
    a, v = entry["arrival"], entry["verdict"]
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
    who = f"officer {outcome['officer']}"
    if verdict.get("declaration_id") is None:
        return (
            f"Recorded: {who} {outcome['outcome']} the container under lock {outcome['lock_id']} "
            f"at {outcome['gate_id']}, which no open declaration covers; "
            f"{undeclared_sentence(outcome['lock_id'], outcome['gate_id'])}"
        )
    if verdict["verdict"] == "release":
        return (
            f"Recorded: {who} cleared container {outcome['container_no']} (lock "
            f"{outcome['lock_id']}); declaration {verdict['declaration_id']} is written off in "
            f"the officer's name."
        )
    return (
        f"Recorded: {who} seized container {outcome['container_no']} (lock {outcome['lock_id']}); "
        f"declaration {verdict['declaration_id']} is closed without a write-off and the seizure "
        "is in the audit trail."
    )
