"""Health probes (each makes a real request and raises unless the server answers) and port checks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import time
import urllib.error
import urllib.request
import uuid

from smartlock.errors import InfrastructureError
from smartlock.local.stack.model import DEFAULT_HOST


def free_ports(count: int = 1, host: str = DEFAULT_HOST) -> list[int]:
    """``count`` distinct TCP ports free on ``host`` right now (the OS picks them)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def check_mqtt(host: str, port: int, timeout: float) -> None:
    """Connects with paho (MQTT 5), anonymously, and waits for a CONNACK (success or refusal)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"smartlock-health-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    acked: list[bool] = []
    # Refusing an anonymous client (135 not authorized) is an answer: the broker is up.
    client.on_connect = lambda c, u, f, rc, p=None: acked.append(rc.value in (0, 134, 135))
    deadline = time.monotonic() + timeout
    try:
        client.connect(host, port, keepalive=5)
        while not acked and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
        sock = client.socket()
        if sock is not None:
            sock.close()
    if acked != [True]:
        raise InfrastructureError(f"MQTT broker on {host}:{port} sent no CONNACK")


def check_redis(host: str, port: int, timeout: float) -> None:
    """Sends PING, anonymously: PONG, or the refusal of an anonymous client, is an answer."""
    import redis

    client = redis.Redis(
        host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        if not client.ping():
            raise InfrastructureError(f"Redis on {host}:{port} did not answer PING")
    except redis.AuthenticationError:
        return  # NOAUTH: Redis is up and admits no anonymous client
    finally:
        client.close()


def check_kafka(host: str, port: int, timeout: float) -> None:
    """Fetches cluster metadata with aiokafka (a producer start does a metadata request)."""
    if not port_in_use(host, port):  # spares aiokafka's "Unable connect" log while booting
        raise InfrastructureError(f"nothing listens on {host}:{port}")

    async def probe() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=f"{host}:{port}", request_timeout_ms=max(int(timeout * 1000), 1000)
        )
        try:
            await asyncio.wait_for(producer.start(), timeout)
        finally:
            await producer.stop()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(probe())
        return
    # Called from a coroutine (e.g. a Faust task): asyncio.run needs a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, probe()).result()


def check_s3(host: str, port: int, timeout: float) -> None:
    """Expects an HTTP answer from the S3 endpoint (403 to an anonymous request is fine)."""
    try:
        urllib.request.urlopen(f"http://{host}:{port}/", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered (anonymous access is refused)
    except OSError as exc:
        raise InfrastructureError(f"S3 on {host}:{port} did not answer: {exc}") from exc
