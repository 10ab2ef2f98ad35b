"""Faust on the Kafka-compatible test broker: batching, a changelog table, crash recovery.

Runs ``tests/faust_probe_app.py`` as a worker process with the settings of
``smartlock.stream.faust_settings``: records produced to a topic are counted in a table; the
worker is killed with SIGKILL once its offsets are committed; a new worker must then
recover the table from its changelog (the source is not replayed) and count on.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Endpoint

REPO = Path(__file__).resolve().parents[2]
KEYS = ("a", "b", "c", "d")
PER_KEY = 200
PARTITIONS = 2  # not Tansu's auto-create default (4): a wrong partition count shows up


@dataclass
class Probe:
    """Names of one probe run and the worker processes it started."""

    bootstrap: str
    unique: str
    log_dir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def app_id(self) -> str:
        return f"probe-{self.unique}"

    @property
    def source(self) -> str:
        return f"probe-source-{self.unique}"

    @property
    def results(self) -> str:
        return f"probe-results-{self.unique}"

    def spawn_worker(self) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"worker-{len(self.workers) + 1}.log", "wb")  # noqa: SIM115
        argv = [
            sys.executable,
            "-m",
            "tests.faust_probe_app",
            "--bootstrap",
            self.bootstrap,
            "--app-id",
            self.app_id,
            "--source",
            self.source,
            "--results",
            self.results,
            "--partitions",
            str(PARTITIONS),
            "--datadir",
            str(self.log_dir / "faust-data"),
            "--loglevel",
            "info",
        ]
        worker = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.workers.append(worker)
        return worker

    def worker_logs(self) -> str:
        return "\n".join(
            f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
            for p in sorted(self.log_dir.glob("worker-*.log"))
        )


@pytest.fixture
def probe(kafka_server: Endpoint, unique: str, tmp_path: Path) -> Iterator[Probe]:
    probe = Probe(kafka_server.bootstrap, unique, tmp_path)
    try:
        yield probe
    finally:
        for worker in probe.workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(10)


class Client:
    """Test-side Kafka client: creates topics, produces records, reads the results."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.counts: dict[str, int] = {}
        self.count_batches: list[int] = []
        self.take_batches: list[int] = []

    async def __aenter__(self) -> Client:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.probe.bootstrap)
        await admin.start()
        try:
            # Tansu would auto-create the topics with 4 partitions on the first produce.
            await admin.create_topics(
                [NewTopic(self.probe.source, PARTITIONS, 1), NewTopic(self.probe.results, 1, 1)]
            )
        finally:
            await admin.close()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.probe.bootstrap)
        self.consumer = AIOKafkaConsumer(
            self.probe.results, bootstrap_servers=self.probe.bootstrap, auto_offset_reset="earliest"
        )
        await self.producer.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def produce(self, seqs: range) -> None:
        for seq in seqs:
            for key in KEYS:
                value = json.dumps({"key": key, "seq": seq}).encode()
                await self.producer.send(self.probe.source, value, key=key.encode())
        await self.producer.flush()

    async def wait_counts(self, expected: int, timeout: float) -> None:
        """Reads results until every key's count is ``expected``."""
        await self._read_until(
            lambda: all(self.counts.get(k) == expected for k in KEYS),
            timeout,
            lambda: f"counts {self.counts} did not reach {expected}",
        )

    async def wait_taken(self, expected: int, timeout: float) -> None:
        """Reads results until the ``sizes`` agent's batches add up to ``expected`` records.

        The two agents run side by side: ``sizes`` may still be behind when ``count`` is done.
        """
        await self._read_until(
            lambda: sum(self.take_batches) >= expected,
            timeout,
            lambda: f"sizes batches {self.take_batches} did not add up to {expected}",
        )

    async def _read_until(
        self, done: Callable[[], bool], timeout: float, failure: Callable[[], str]
    ) -> None:
        started = time.monotonic()
        while not done():
            assert time.monotonic() - started < timeout, (
                f"{failure()} in {timeout} s\n{self.probe.worker_logs()}"
            )
            for messages in (await self.consumer.getmany(timeout_ms=200)).values():
                for message in messages:
                    self._record(json.loads(message.value))

    def _record(self, result: dict[str, Any]) -> None:
        if result["agent"] == "count":
            self.counts[result["key"]] = result["count"]
            self.count_batches.append(result["batch"])
        else:
            self.take_batches.append(result["batch"])

    async def committed_total(self) -> int:
        """Sum of the probe group's committed source offsets (records fully processed)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        # Not end_offsets(): Tansu answers those wrongly for multi-record batches.
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.probe.bootstrap,
            group_id=self.probe.app_id,
            enable_auto_commit=False,
        )
        await reader.start()
        try:
            offsets = [
                await reader.committed(TopicPartition(self.probe.source, p))
                for p in range(PARTITIONS)
            ]
        finally:
            await reader.stop()
        return sum(o or 0 for o in offsets)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_table_survives_worker_kill(probe: Probe) -> None:
    asyncio.run(_kill_and_recover(probe))


async def _kill_and_recover(probe: Probe) -> None:
    async with Client(probe) as client:
        first = probe.spawn_worker()
        spawned = time.monotonic()
        await client.produce(range(1, PER_KEY + 1))
        await client.wait_counts(PER_KEY, timeout=60)
        print(
            f"first worker counted {len(KEYS) * PER_KEY} records {time.monotonic() - spawned:.1f} s after spawn"
        )

        # Batching: take_events (count agent) and take (sizes agent) both group records.
        assert max(client.count_batches) > 1
        await client.wait_taken(len(KEYS) * PER_KEY, timeout=30)
        assert sum(client.take_batches) == len(KEYS) * PER_KEY and max(client.take_batches) > 1

        # Wait for the offsets commit, so the new worker cannot rebuild counts by replay.
        deadline = time.monotonic() + 15
        while await client.committed_total() < len(KEYS) * PER_KEY:
            assert time.monotonic() < deadline, f"offsets not committed\n{probe.worker_logs()}"
            await asyncio.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        second = probe.spawn_worker()
        respawned = time.monotonic()
        await client.produce(range(PER_KEY + 1, PER_KEY + 2))
        await client.wait_counts(PER_KEY + 1, timeout=60)
        print(
            f"restarted worker recovered the table and counted on {time.monotonic() - respawned:.1f} s after spawn"
        )

        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, probe.worker_logs()
