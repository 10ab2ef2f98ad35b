"""Offline evaluation of a trace (CONTRACT section 5): no broker, deterministic output."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from smartlock.contract.codec import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    Envelope,
    decode,
    fast_trace_line,
    load_json,
    refused_arrival,
)
from smartlock.core.detector import Detector, Output
from smartlock.core.engine import Engine, Outcome
from smartlock.core.writeoff import VerdictRecord
from smartlock.errors import MessageError

#: Lines decoded ahead at a time (their fixes projected in one call). Small on purpose: the
#: decoded lines of a batch (about five container objects each) stay alive until judged, and
#: more than the collector's threshold (700 net new objects) of them start a garbage
#: collection every few hundred lines: 1,024 lines cost ~9% of evaluate's time in the collector
#: (388 collections over 60,000 lines), 64 lines ~0.2% (14 collections). PROJ's per-call cost
#: is still shared by 64 fixes.
BATCH_LINES = 64
#: Longest trace line read: a payload at the size limit, recorded as escaped text, fits.
MAX_LINE_BYTES = 8 * MAX_PAYLOAD_BYTES


@dataclass
class EvaluationSummary:
    lines: int = 0
    messages: int = 0
    malformed: int = 0
    rejected: int = 0
    outputs: int = 0
    records: int = 0


def iter_trace(lines: Iterable[str]) -> Iterator[tuple[int, str, Any]]:
    """Yields (line number, topic, payload) for each non-blank trace line.

    Raises:
        MessageError: for a line that is not ``{"topic": str, "payload": ...}`` JSON, with
            the line number in its detail.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = load_json(line, "-", max_bytes=MAX_LINE_BYTES, max_depth=MAX_DEPTH + 1)
        except MessageError as exc:
            raise MessageError("-", exc.reason, f"line {number}: {exc.detail}") from None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("topic"), str)
            or "payload" not in record
        ):
            raise MessageError(
                "-",
                "invalid_line",
                f'line {number}: expected {{"topic": "...", "payload": {{...}}}}',
            )
        yield number, record["topic"], record["payload"]


def _one(engine: Engine, topic: str, payload: Any) -> Outcome:
    # A string payload is the raw text as published (CONTRACT section 5 traces of
    # malformed messages); any other JSON value is what the payload parsed to.
    data = payload if isinstance(payload, dict | str) else json.dumps(payload)
    return engine.feed(decode(topic, data))


def dumps_line(output: Output | VerdictRecord) -> str:
    """The byte-stable JSON Lines form of an output message (or of a record)."""
    return json.dumps(output.line(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def evaluate(
    detector: Detector, trace: IO[str], out: IO[str], err: IO[str], records: bool = False
) -> EvaluationSummary:
    """Runs the detector over a trace, writing outputs to ``out`` and problems to ``err``.

    Malformed lines and rejected messages are reported on ``err`` with their line numbers
    and counted; processing goes on. With ``records``, each input's audit entries and
    write-offs follow its outputs, as ``{"record": "audit"|"writeoff", "payload": {...}}``
    lines: what the worker persists, less its :data:`~smartlock.core.writeoff.WORKER_FIELDS`.
    """
    engine = Engine(detector)
    summary = EvaluationSummary()
    numbered = enumerate(trace, start=1)
    while batch := list(itertools.islice(numbered, BATCH_LINES)):
        # Well-formed lock messages (most lines) are decoded ahead, and their fixes
        # projected in one call; the rest go through the ordinary door in their turn.
        decoded = [fast_trace_line(line, MAX_LINE_BYTES) for _, line in batch]
        detector.prepare([env for env in decoded if env is not None])
        for (number, line), fast in zip(batch, decoded, strict=True):
            _line(engine, number, line, fast, out, err, summary, records)
            if engine.timer_failures:  # as the worker dead-letters them
                for failure in engine.take_timer_failures():
                    err.write(f"line {number}: internal error: {failure.describe()}\n")
    return summary


def _line(
    engine: Engine,
    number: int,
    line: str,
    fast: Envelope | None,
    out: IO[str],
    err: IO[str],
    summary: EvaluationSummary,
    records: bool,
) -> None:
    """One line of the trace: decoded (or ``fast`` decoded ahead), judged, reported."""
    if fast is None and not line.strip():  # a decoded line is never blank
        return
    summary.lines += 1
    if fast is not None:
        topic, payload = fast.topic, fast.raw
    else:
        try:
            [(_, topic, payload)] = list(iter_trace([line]))
        except MessageError as exc:
            summary.malformed += 1
            detail = exc.detail.removeprefix("line 1: ")
            err.write(f"line {number}: malformed: {exc.topic}: {exc.reason}: {detail}\n")
            return
    try:
        outcome = engine.feed(fast) if fast is not None else _one(engine, topic, payload)
    except MessageError as exc:
        summary.malformed += 1
        err.write(f"line {number}: malformed: {exc.topic}: {exc.reason}: {exc.detail}\n")
        refused = refused_arrival(topic, payload, exc)
        if refused is None:
            return
        outcome = engine.refuse_arrival(refused)
    except Exception as exc:  # noqa: BLE001 - one bad line must not end the evaluation
        summary.malformed += 1
        err.write(f"line {number}: internal error: {type(exc).__name__}: {exc}\n")
        return
    else:
        if outcome.error is None:
            summary.messages += 1
        else:  # a rule raised: no trip changed (the worker dead-letters it)
            summary.malformed += 1
            err.write(f"line {number}: internal error: {outcome.error}\n")
    for lock_id, rejection in outcome.rejections:
        summary.rejected += 1
        err.write(f"line {number}: rejected ({lock_id}): {rejection.reason}: {rejection.detail}\n")
    if outcome.outputs:
        for output in outcome.outputs:
            out.write(dumps_line(output) + "\n")
        summary.outputs += len(outcome.outputs)
    if records:
        for record in outcome.records:
            out.write(dumps_line(record) + "\n")
        summary.records += len(outcome.records)
