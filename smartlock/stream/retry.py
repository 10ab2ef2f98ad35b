"""Retrying an output write until the server is back, loudly, and giving up by exiting.

A batch's outputs (MQTT, Redis, Kafka) must all be written before its offsets are
committed; an outage therefore holds the batch, and this module retries each write with
exponential backoff, logging every failure with what is held. Every write it retries is
idempotent where it lands (Redis adds each alert, verdict, audit entry and dead letter once;
MQTT and Kafka consumers see the same ids again at most). After ``give_up_s`` without success
the process exits non-zero (:data:`EXIT_OUTAGE`), so a supervisor restarts it and the
uncommitted batch is processed again: never a silent stall.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from smartlock.errors import InfrastructureError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Exit status of a worker or bridge that could not reach a server for ``give_up_s``.
EXIT_OUTAGE = 75  # EX_TEMPFAIL

#: Failures that mean "a server is away"; anything else is a bug and is raised at once.
OUTAGES: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    KafkaError,
    InfrastructureError,
    OSError,
    TimeoutError,
)


class Outage(InfrastructureError):
    """A server stayed unreachable for longer than the give-up time."""


async def retrying(
    what: str,
    op: Callable[[], Awaitable[T]],
    *,
    give_up_s: float = 300.0,
    first_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
) -> T:
    """Runs ``op`` until it succeeds, backing off between tries and logging each failure.

    Raises:
        Outage: still failing after ``give_up_s`` seconds.
    """
    started = time.monotonic()
    delay = first_delay_s
    failures = 0
    while True:
        try:
            result = await op()
        except OUTAGES as exc:
            failures += 1
            waited = time.monotonic() - started
            if waited + delay > give_up_s:
                raise Outage(f"{what}: still failing after {waited:.0f} s ({exc})") from exc
            log.warning(
                "%s failed (%s: %s); output held, batch not committed; retry %d in %.1f s",
                what, type(exc).__name__, exc, failures, delay,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
            continue
        if failures:
            log.warning("%s succeeded again after %d failed tries", what, failures)
        return result


def exit_on_outage(role: str, exc: BaseException) -> None:
    """Logs the outage and ends the process with :data:`EXIT_OUTAGE` (no clean-up can reach the server)."""
    log.critical("%s gives up: %s; exiting with status %d for a restart", role, exc, EXIT_OUTAGE)
    logging.shutdown()
    os._exit(EXIT_OUTAGE)
