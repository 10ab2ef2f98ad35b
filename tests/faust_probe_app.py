"""A tiny Faust app that probes Faust on the Kafka-compatible test broker (Tansu).

Two agents read ``{"key": str, "seq": int}`` records from the source topic:

- ``count`` batches with ``stream.take_events(n, within=s)`` and keeps, per key, the
  sorted list of sequence numbers seen in the ``seen`` table (changelog-backed, in-memory
  store), writing each change to the changelog partition of the event that caused it,
  the pattern ``smartlock/stream/worker.py`` uses. After each batch it reports every touched
  key's count. Counting distinct ``seq`` makes re-processing after a crash harmless, as
  the detection core's per-lock sequence rule does.
- ``sizes`` batches with ``stream.take(n, within=s)`` and reports only the batch size:
  ``take`` yields values without their events, so a table cannot be written from it
  (Faust raises "Cannot modify table key from outside of stream iteration").

Results go to the results topic as ``{"agent": "count", "key", "count", "batch"}`` and
``{"agent": "sizes", "batch"}``. Run as a worker process::

    python -m tests.faust_probe_app --bootstrap HOST:PORT --app-id ID \
        --source TOPIC --results TOPIC [--partitions N] [--datadir DIR]
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import faust

from smartlock.stream.faust_settings import faust_app_kwargs

BATCH_MAX = 100
BATCH_WITHIN_S = 0.2


def create_app(
    bootstrap: str,
    app_id: str,
    source: str,
    results: str,
    partitions: int,
    datadir: str | None = None,
) -> faust.App:
    """The probe app: source topic, ``seen`` table, results topic, two agents."""
    app = faust.App(app_id, **faust_app_kwargs(bootstrap, local=True, datadir=datadir))
    inbound = app.topic(
        source, key_type=str, value_type=None, value_serializer="json", partitions=partitions
    )
    outbound = app.topic(results, value_serializer="json", partitions=1)
    seen = app.Table("seen", default=list, partitions=partitions, key_type=str)

    @app.agent(inbound)
    async def count(stream: faust.StreamT[Any]) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            touched: dict[str, int] = {}
            for event in events:
                key, seq = event.value["key"], event.value["seq"]
                seqs = sorted(set(seen.data.get(key, [])) | {seq})
                seen.data[key] = seqs
                seen.send_changelog(event.message.partition, key, seqs)
                touched[key] = len(seqs)
            for key, n in sorted(touched.items()):
                await outbound.send(
                    value={"agent": "count", "key": key, "count": n, "batch": len(events)}
                )

    @app.agent(inbound)
    async def sizes(stream: faust.StreamT[Any]) -> None:
        async for values in stream.take(BATCH_MAX, within=BATCH_WITHIN_S):
            await outbound.send(value={"agent": "sizes", "batch": len(values)})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Faust-on-Tansu probe worker")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument(
        "--datadir", default=None, help="Faust data directory (default: ./<app-id>-data)"
    )
    parser.add_argument("--loglevel", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper())
    app = create_app(
        args.bootstrap, args.app_id, args.source, args.results, args.partitions, args.datadir
    )
    faust.Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
