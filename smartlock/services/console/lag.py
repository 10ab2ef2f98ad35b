"""How far the worker is behind the bridge: Kafka consumer lag of the workers' group.

The bridge appends to the inbound topic; the workers (one Faust consumer group, whose id is
``kafka.app_id``) commit the offset up to which they have judged and stored everything.
Per partition, lag = the topic's end offset - the group's committed offset: the messages the
bridge has written that no worker has finished yet.

Measured from the broker. With Tansu 0.6 the admin client's ``list_consumer_group_offsets``
fails (aiokafka cannot decode Tansu's OffsetFetch answer to the admin request), whereas a
plain consumer's ``committed()`` and ``end_offsets()`` work: so the probe is a consumer that
names the group but never subscribes, hence never joins it (the workers' assignment is not
disturbed) and commits nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


def lag_figures(ends: dict[int, int], committed: dict[int, int | None]) -> dict[str, Any]:
    """Per-partition and total lag (pure). A partition the group never committed counts from
    offset 0: a new group starts at the beginning of the topic."""
    partitions = {}
    for partition, end in sorted(ends.items()):
        done = committed.get(partition) or 0
        partitions[str(partition)] = {"end": end, "committed": done, "lag": max(0, end - done)}
    return {
        "partitions": partitions,
        "total": sum(p["lag"] for p in partitions.values()),
    }


class KafkaLag:
    """Measures the lag of ``group`` on ``topic``; one connection, reopened after a failure."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        timeout_s: float = 3.0,
        login: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap, self.group, self.topic, self.timeout_s = bootstrap, group, topic, timeout_s
        self.login = login or {}  # SASL kwargs (smartlock.adapters.kafka_auth.kafka_login)
        self._consumer: AIOKafkaConsumer | None = None

    async def _open(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=self.group,
                enable_auto_commit=False,
                client_id="smartlock-console-lag",
                request_timeout_ms=int(self.timeout_s * 1000),
                **self.login,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def measure(self) -> dict[str, Any]:
        """``{"topic", "group", "partitions": {p: {end, committed, lag}}, "total"}``, or
        ``{"error": ...}`` when the broker does not answer."""
        try:
            figures = await asyncio.wait_for(self._measure(), self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - the health view shows it, the console goes on
            await self.close()
            return {
                "topic": self.topic,
                "group": self.group,
                "error": str(exc) or type(exc).__name__,
            }
        return {"topic": self.topic, "group": self.group} | figures

    async def _measure(self) -> dict[str, Any]:
        consumer = await self._open()
        await consumer.topics()  # fresh metadata: partitions of a topic created since
        partitions = sorted(consumer.partitions_for_topic(self.topic) or ())
        tps = [TopicPartition(self.topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps) if tps else {}
        committed = {tp.partition: await consumer.committed(tp) for tp in tps}
        return lag_figures({tp.partition: end for tp, end in ends.items()}, committed)

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
