"""The gate's fallback queue: what the pipeline did not answer in time, kept on disk.

One JSON file per arrival (``{"arrival": ...}``) or officer's outcome of a hand inspection
(``{"outcome": ...}``) under ``pending/`` (written to a temporary name, fsync'd, then renamed,
so a crash never leaves half an entry); once the pipeline's verdict for it is known it moves to
``done/`` with the verdict. Nothing leaves ``pending/`` without a verdict.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def arrival_key(arrival: dict[str, Any]) -> str:
    """Stable name of an arrival (gate, lock, time)."""
    raw = f"{arrival['gate_id']}|{arrival['lock_id']}|{arrival['ts']}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def outcome_key(outcome: dict[str, Any]) -> str:
    """Stable name of an officer's outcome (gate, lock, officer, time)."""
    raw = f"outcome|{outcome['gate_id']}|{outcome['lock_id']}|{outcome['officer']}|{outcome['ts']}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def entry_message(entry: dict[str, Any]) -> dict[str, Any]:
    """The message a queue entry holds: its arrival, or its officer's outcome."""
    return entry["arrival"] if "arrival" in entry else entry["outcome"]


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class FallbackQueue:
    """Pending and reconciled arrivals of one gate, under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.pending_dir = directory / "pending"
        self.done_dir = directory / "done"
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.done_dir.mkdir(parents=True, exist_ok=True)

    def add(self, arrival: dict[str, Any], published: bool, queued_at: str, decision: str) -> str:
        """Queues an arrival seen while the pipeline did not answer; returns its key."""
        key = arrival_key(arrival)
        _write_atomic(
            self.pending_dir / f"{key}.json",
            {
                "arrival": arrival,
                "published": published,
                "queued_at": queued_at,
                "manual_decision": decision,
            },
        )
        return key

    def add_outcome(self, outcome: dict[str, Any], published: bool, queued_at: str) -> str:
        """Queues an officer's outcome the pipeline did not confirm in time; returns its key."""
        key = outcome_key(outcome)
        _write_atomic(
            self.pending_dir / f"{key}.json",
            {"outcome": outcome, "published": published, "queued_at": queued_at},
        )
        return key

    def pending(self) -> list[dict[str, Any]]:
        """Every pending entry (with its ``key``), oldest first (an arrival before the outcome
        of its hand inspection)."""
        entries = []
        for path in sorted(self.pending_dir.glob("*.json")):
            entry = json.loads(path.read_text(encoding="utf-8"))
            entry["key"] = path.stem
            entries.append(entry)
        return sorted(entries, key=lambda e: (entry_message(e)["ts"], "outcome" in e, e["key"]))

    def mark_published(self, key: str) -> None:
        path = self.pending_dir / f"{key}.json"
        entry = json.loads(path.read_text(encoding="utf-8"))
        entry["published"] = True
        _write_atomic(path, entry)

    def reconcile(self, key: str, verdict: dict[str, Any], reconciled_at: str) -> None:
        """Records the pipeline's verdict for a queued entry and takes it off the pending list."""
        source = self.pending_dir / f"{key}.json"
        entry = json.loads(source.read_text(encoding="utf-8"))
        entry.update(verdict=verdict, reconciled_at=reconciled_at)
        _write_atomic(self.done_dir / f"{key}.json", entry)
        source.unlink()

    def done(self) -> list[dict[str, Any]]:
        return [
            json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.done_dir.glob("*.json"))
        ]
