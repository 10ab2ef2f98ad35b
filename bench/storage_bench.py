"""The cost of the durable broker: Tansu on SeaweedFS S3 against Tansu in memory.

Starts both (free ports, a temporary directory), produces 5,000 records with 500 in flight and
300 records one at a time to each, and prints records per second and milliseconds per record.
Run once: ``python bench/storage_bench.py``; the figures are in the README ("Durability").
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from smartlock.local import stack

VALUE = b'{"pad":"' + b"x" * 150 + b'"}'


async def produce(bootstrap: str, topic: str, count: int, in_flight: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        started = time.perf_counter()
        for first in range(0, count, in_flight):
            batch = range(first, min(count, first + in_flight))
            futures = [await producer.send(topic, VALUE, key=str(i % 50).encode()) for i in batch]
            await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="storage-bench-") as tmp:
        for storage in ("memory", "s3"):
            run_dir = Path(tmp) / storage
            ports = stack.Ports(*stack.free_ports(3))
            servers = stack.stack_servers(run_dir, ports, storage=storage)
            kafka = [s for s in servers if s.name in ("seaweedfs", "tansu")]
            try:
                for server in kafka:
                    stack.start_servers(run_dir, [server], timeout=60)
                bootstrap = f"127.0.0.1:{ports.kafka}"
                batched = asyncio.run(produce(bootstrap, "bench-batched", 5000, 500))
                single = asyncio.run(produce(bootstrap, "bench-single", 300, 1))
                print(
                    f"{storage:<7} {5000 / batched:>9,.0f} records/s (500 in flight)   "
                    f"{single / 300 * 1000:>6.1f} ms/record (one at a time)"
                )
            finally:
                stack.stop_servers(run_dir)


if __name__ == "__main__":
    main()
