"""The worker's ceiling: how fast `smartlock worker` judges a preloaded inbound topic.

One run, side by side on this machine:

1. a fleet trace of ``--messages`` messages (1,000 trucks, 2 % detours) is judged by
   ``smartlock evaluate``'s code in this process: the core's rate on the same records;
2. the local stack starts (Mosquitto, Redis, Tansu in memory); the trace goes through the
   bridge's own record maker (:class:`~smartlock.stream.inbound.Forwarder`, watermark ticks
   every 1,000 messages as the bridge writes them) into the inbound topic, before any
   worker runs;
3. for each count in ``--workers`` (default 1 and 2), on a fresh stack preloaded the same
   way, that many ``smartlock worker`` processes drain the topic with every output written
   (MQTT, Redis, Kafka, table changelog). The rate counts from the first committed offset
   to the last (so start-up and group joins are left out) and is read from the group's
   committed offsets, which the worker commits only after a batch's outputs are written.

Prints one JSON line per figure, each with the date, the machine and its load average.
``--profile FILE`` records the single worker with py-spy (``pip install py-spy``), sampling
the thread that holds the GIL (a worker is bound by it: its threads share one core), and
writes its top functions (own time and total time) to FILE.

Run: ``python bench/worker_bench.py [--messages 60000] [--workers 1,2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.kafka_auth import kafka_login
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.redis_auth import redis_client
from smartlock.core.evaluate import evaluate
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.local.demo import local_stack, stack_settings
from smartlock.runtime import build_detector
from smartlock.settings import Settings, settings_env
from smartlock.simulators.fleet import Fleet, FleetConfig, trace_line
from smartlock.simulators.scenarios import parse_scenario
from smartlock.stream.bridge import ensure_topics
from smartlock.stream.inbound import Forwarder

#: Messages between two watermark ticks while preloading (the bridge ticks after each batch).
TICK_EVERY = 1000


def machine() -> dict[str, Any]:
    """Date, machine and load, stamped on every figure."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.node()} {os.cpu_count()} cores {platform.machine()}",
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def fleet_trace(messages: int, trucks: int) -> list[tuple[str, bytes]]:
    """(topic, payload bytes) of the first ``messages`` messages of a fleet, in send order."""
    geo = Geofences.load(default_geofence_dir())
    config = FleetConfig(trucks=trucks, seed=1, scenarios=(parse_scenario("detour:2%"),))
    return [
        (topic, json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
        for _, topic, payload in itertools.islice(Fleet(config, geo).messages(), messages)
    ]


def evaluate_rate(settings: Settings, trace: list[tuple[str, bytes]]) -> dict[str, Any]:
    """``smartlock evaluate``'s code over the same messages, in this process."""
    text = "".join(trace_line(topic, json.loads(payload)) for topic, payload in trace)
    start = time.perf_counter()
    summary = evaluate(build_detector(settings), io.StringIO(text), io.StringIO(), io.StringIO())
    elapsed = time.perf_counter() - start
    return {
        "bench": "evaluate",
        "messages": summary.messages,
        "outputs": summary.outputs,
        "seconds": round(elapsed, 2),
        "msg_per_s": round(summary.messages / elapsed),
    }


async def preload(settings: Settings, trace: list[tuple[str, bytes]]) -> dict[int, int]:
    """Writes the trace as the bridge would; returns the record count per partition."""
    k = settings.kafka
    await ensure_topics(
        k.bootstrap, {k.inbound_topic: k.partitions}, **kafka_login(settings, "bridge")
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=k.bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        **kafka_login(settings, "bridge"),
    )
    await producer.start()
    stream_key = CredentialStore(settings.credentials_dir).stream_keys()[0]
    forwarder = Forwarder("bench", stream_key=stream_key)  # authenticated like the bridge's
    counts: collections.Counter[int] = collections.Counter()
    try:
        partitions = sorted(await producer.partitions_for(k.inbound_topic))
        for start in range(0, len(trace), TICK_EVERY):
            now = datetime.now(UTC)
            futures = []
            for topic, payload in trace[start : start + TICK_EVERY]:
                forwarded = forwarder.forward(topic, payload, now)
                for record in forwarded.records:
                    futures.append(await producer.send(k.inbound_topic, **record.send_args()))
            tick = forwarder.tick(now)
            if tick is not None:
                for p in partitions:
                    futures.append(
                        await producer.send(k.inbound_topic, partition=p, **tick.send_args())
                    )
            for meta in await asyncio.gather(*futures):
                counts[meta.partition] += 1
    finally:
        await producer.stop()
    return dict(counts)


class Committed:
    """Reads a consumer group's committed offsets on the inbound topic (as a member would)."""

    def __init__(self, settings: Settings, group: str, partitions: list[int]) -> None:
        self.settings = settings
        self.group = group
        self.tps = [TopicPartition(settings.kafka.inbound_topic, p) for p in partitions]
        self.consumer: AIOKafkaConsumer | None = None

    async def total(self) -> int:
        """Sum of the committed offsets (0 before any commit)."""
        if self.consumer is None:
            self.consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap,
                group_id=self.group,
                enable_auto_commit=False,
                **kafka_login(self.settings, "worker"),
            )
            await self.consumer.start()
        total = 0
        for tp in self.tps:
            offset = await self.consumer.committed(tp)
            total += offset or 0
        return total

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, all threads) the processes used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def profile_top(raw: Path, out: Path, top: int = 40) -> None:
    """Own and total sample counts per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"py-spy samples: {samples}", "", "own time:"]
    lines += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "total time (with callees):"]
    lines += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    out.write_text("\n".join(lines) + "\n")


async def drain(
    base: Settings,
    run_dir: Path,
    workers: int,
    expected: int,
    messages: int,
    partitions: list[int],
    profile: Path | None,
    timeout: float,
) -> dict[str, Any]:
    """Starts ``workers`` workers under a fresh group and times them draining the topic."""
    tag = f"w{workers}"
    settings = base
    env = settings_env(settings, os.environ) | {"PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    spy: subprocess.Popen[bytes] | None = None
    client = redis_client(settings, "reader")
    try:
        for n in range(workers):
            log = open(run_dir / f"worker-{tag}-{n}.log", "ab")  # noqa: SIM115 - the child holds it
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "smartlock.cli.main", "worker", "--name", f"{tag}-{n}"],
                    env=env,
                    cwd=run_dir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        raw = run_dir / "profile.txt"
        if profile is not None:
            spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            spy = subprocess.Popen(
                [spy_bin, "record", "--pid", str(procs[0].pid), "--format", "raw",
                 "--output", str(raw), "--rate", "100", "--gil", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        reader = Committed(settings, settings.kafka.app_id, partitions)
        first: tuple[float, int] | None = None
        last = (time.monotonic(), 0)
        cpu = (0.0, 0.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited with {proc.returncode}; see {run_dir}")
            done = await reader.total()
            now = time.monotonic()
            if done > 0 and first is None:
                first = (now, done)
                cpu = (cpu_seconds([p.pid for p in procs]), 0.0)
            last = (now, done)
            cpu = (cpu[0], cpu_seconds([p.pid for p in procs]))
            if done >= expected:
                break
            await asyncio.sleep(0.25)
        await reader.close()
        ready = client.hgetall(RedisKeys(settings.redis.prefix).workers)
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if profile is not None and (run_dir / "profile.txt").exists():
        shutil.copy(run_dir / "profile.txt", profile.with_suffix(".raw"))
        profile_top(run_dir / "profile.txt", profile)
    if first is None or last[1] < expected:
        raise RuntimeError(f"{workers} worker(s) committed {last[1]} of {expected} records")
    # The workers' own account of where their time went (smartlock.stream.worker.BatchStats).
    phases = [
        line.strip()
        for n in range(workers)
        for line in (run_dir / f"worker-{tag}-{n}.log").read_text(errors="replace").splitlines()
        if " batches (" in line
    ]
    elapsed = last[0] - first[0]
    share = (last[1] - first[1]) / expected  # share of the records counted in that window
    counted = messages * share
    return {
        "bench": "worker_ceiling",
        "workers": workers,
        "partitions": {name: json.loads(p) for name, p in ready.items()},
        "messages": messages,
        "records": expected,
        "seconds": round(elapsed, 2),
        "msg_per_s": round(counted / elapsed) if elapsed > 0 else None,
        # The workers' CPU time (all their threads) per message in the same window: steadier
        # than msg/s on a shared machine, and what bounds a worker (its threads share a GIL).
        "cpu_us_per_msg": round(1e6 * (cpu[1] - cpu[0]) / counted) if counted else None,
        "cpu_share": round((cpu[1] - cpu[0]) / elapsed / workers, 2) if elapsed > 0 else None,
        "worker_phases": phases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--trucks", type=int, default=1000)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()
    trace = fleet_trace(args.messages, args.trucks)
    evaluated = False
    for workers in [int(w) for w in args.workers.split(",")]:
        # A fresh stack for each count: nothing the last run wrote (trips, alert ids) helps.
        with tempfile.TemporaryDirectory(prefix="worker-bench-") as tmp:
            run_dir = Path(tmp)
            with local_stack(run_dir, Console(file=io.StringIO())) as ports:
                settings = stack_settings(
                    ports, credentials={"dir": (run_dir / "credentials").resolve()}
                )
                if not evaluated:
                    print(json.dumps(evaluate_rate(settings, trace) | machine()), flush=True)
                    evaluated = True
                counts = asyncio.run(preload(settings, trace))
                expected = sum(counts.values())
                profile = args.profile if workers == 1 else None
                figure = asyncio.run(
                    drain(
                        settings,
                        run_dir,
                        workers,
                        expected,
                        len(trace),
                        sorted(counts),
                        profile,
                        args.timeout,
                    )  # fmt: skip
                )
                print(json.dumps(figure | machine()), flush=True)


if __name__ == "__main__":
    main()
