"""How the gate shows an outcome to the officer (one line per verdict, reasons below)."""

from __future__ import annotations

from rich.console import Console

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
    return INSPECT
