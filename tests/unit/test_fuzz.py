"""Fuzzing the two doors that parse untrusted bytes: ``decode`` (bridge, worker, evaluate) and
the intake's HTTP API. Thousands of generated inputs: arbitrary bytes, arbitrary JSON,
valid messages with one field mutated, deep nesting. Not one may crash (decode raises only
``MessageError``) or give a server error (the intake answers below 500)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smartlock.adapters.credentials import CredentialStore
from smartlock.contract.codec import decode
from smartlock.errors import MessageError
from smartlock.services.intake.auth import store_authenticator
from smartlock.services.intake.service import memory_app
from tests.unit.test_intake_rules import NOW, road_form

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "acceptance.jsonl"


def _samples() -> dict[str, dict[str, Any]]:
    """One valid payload per inbound topic kind, from the golden trace."""
    found: dict[str, dict[str, Any]] = {}
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        message = json.loads(line)
        kind = message["topic"].split("/")[-1] if "/" in message["topic"] else message["topic"]
        found.setdefault(kind, message)
    return found


SAMPLES = _samples()
TOPICS = [m["topic"] for m in SAMPLES.values()] + [
    "locks/X/telemetry",
    "gates/g/arrivals",
    "no/such",
]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid message with one field replaced, removed or added."""
    message = draw(st.sampled_from(sorted(SAMPLES.values(), key=lambda m: m["topic"])))
    payload = dict(message["payload"])
    key = draw(st.sampled_from(sorted(payload)))
    action = draw(st.sampled_from(("replace", "remove", "add")))
    if action == "replace":
        payload[key] = draw(json_values)
    elif action == "remove":
        del payload[key]
    else:
        payload[draw(st.text(max_size=12))] = draw(json_values)
    return message["topic"], json.dumps(payload).encode()


def _decodes_or_refuses(topic: str, data: bytes) -> None:
    with contextlib.suppress(MessageError):  # a clear refusal is fine; anything else is a crash
        decode(topic, data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), data=st.binary(max_size=300))
def test_decode_of_arbitrary_bytes_never_crashes(topic: str, data: bytes) -> None:
    _decodes_or_refuses(topic, data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), value=json_values)
def test_decode_of_arbitrary_json_never_crashes(topic: str, value: Any) -> None:
    _decodes_or_refuses(topic, json.dumps(value).encode())


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=mutated())
def test_decode_of_a_mutated_valid_message_never_crashes(message: tuple[str, bytes]) -> None:
    _decodes_or_refuses(*message)


@settings(max_examples=200, deadline=None)
@given(topic=st.sampled_from(TOPICS), depth=st.integers(1, 5000), opener=st.sampled_from("[{"))
def test_decode_of_deep_nesting_never_crashes(topic: str, depth: int, opener: str) -> None:
    text = "[" * depth + "1" + "]" * depth if opener == "[" else '{"a":' * depth + "1" + "}" * depth
    _decodes_or_refuses(topic, text.encode())


# ------------------------------------------------------------------------------ the intake


@st.composite
def intake_bodies(draw: st.DrawFn) -> Any:
    """Arbitrary JSON, or the valid road form with one field replaced or removed."""
    if draw(st.booleans()):
        return draw(json_values)
    form = road_form()
    key = draw(st.sampled_from(sorted(form)))
    if draw(st.booleans()):
        form[key] = draw(json_values)
    else:
        del form[key]
    return form


class IntakeThread:
    """The intake app (in-memory store) served from its own event loop in a thread, so a
    hypothesis test can send it requests one by one."""

    def __init__(self, directory: Path) -> None:
        store = CredentialStore(directory)
        self.token = store.issue("declarant", "fuzzer").secret.get_secret_value()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def publish(topic: str, payload: bytes) -> None:
            return None

        async def start() -> TestClient[Any, Any]:
            app = memory_app(publish, store_authenticator(store), lambda: NOW)
            client: TestClient[Any, Any] = TestClient(TestServer(app))
            await client.start_server()
            return client

        self.client = self._run(start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def post(self, path: str, body: bytes) -> tuple[int, str]:
        async def call() -> tuple[int, str]:
            headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
            resp = await self.client.post(path, data=body, headers=headers)
            return resp.status, await resp.text()

        return self._run(call())  # type: ignore[no-any-return]

    def close(self) -> None:
        self._run(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IntakeThread]:
    served = IntakeThread(tmp_path_factory.mktemp("fuzz-credentials"))
    yield served
    served.close()


PATHS = ["/declarations", "/fees", "/declarations/CCRN-2611-0000-0000-0/bind"]


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=intake_bodies(), path=st.sampled_from(PATHS))
def test_the_intake_never_answers_a_generated_request_with_a_server_error(
    intake: IntakeThread, body: Any, path: str
) -> None:
    status, text = intake.post(path, json.dumps(body).encode())
    assert status < 500, (status, text)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), path=st.sampled_from(PATHS))
def test_the_intake_never_answers_arbitrary_bytes_with_a_server_error(
    intake: IntakeThread, data: bytes, path: str
) -> None:
    status, text = intake.post(path, data)
    assert status < 500, (status, text)
