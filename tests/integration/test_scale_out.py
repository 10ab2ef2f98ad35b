"""Scale-out as operators do it: 2 bridges and 3 workers started without names.

Each copy takes a name of its own (the host name, then ``<host>-2``, ...), so they do not
share an MQTT client id, and the write-offs name the worker that really decided. ``stack
status`` reads their heartbeats. One bridge holds the inbound session, the other stands by;
the active one is SIGKILLed mid-stream and the standby takes over. What Redis recorded equals
``smartlock evaluate`` on the published stream: 0 lost, 0 duplicated, 0 extra.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from smartlock.adapters import membership
from smartlock.adapters.keys import RedisKeys
from tests.builders import synthetic_collections
from tests.integration.procs import Pipeline
from tests.integration.test_faults import (
    expected_outputs,
    fleet_trace,
    wait_for_log,
    wait_settled,
)
from tests.integration.test_pipeline_live import evaluate_lines, publish, write_trace

pytestmark = pytest.mark.integration


def test_two_bridges_and_three_workers_without_names_equal_evaluate(
    mqtt_server: Any, redis_server: Any, kafka_server: Any, tmp_path: Path
) -> None:
    geofences = tmp_path / "geofences"
    geofences.mkdir()
    for name, fc in synthetic_collections().items():
        (geofences / name).write_text(json.dumps(fc))
    # Declarations first, as in life (the intake binds them long before the trucks drive).
    trace = fleet_trace()
    declarations = [m for m in trace if m[0] == "customs/declarations"]
    rest = [m for m in trace if m[0] != "customs/declarations"]
    p = Pipeline.on(
        mqtt_server, kafka_server.bootstrap, redis_server.url, tmp_path, geofences=geofences
    )
    try:
        for i in range(3):
            p.start("worker", None, key=f"worker-{i}")
        for i in range(2):
            p.start("bridge", None, key=f"bridge-{i}")
        r = p.redis()
        deadline = time.monotonic() + 120
        while True:  # all three joined and the partitions are split among them
            owned = [json.loads(v) for v in r.hgetall(f"{p.prefix}:workers").values()]
            if len(owned) == 3 and sorted(sum(owned, [])) == [0, 1, 2, 3]:
                break
            assert time.monotonic() < deadline, [p.log(f"worker-{i}") for i in range(3)]
            time.sleep(0.5)
        host = socket.gethostname()
        found = {(m.member.role, m.member.name) for m in membership.members(p.settings())}
        workers = {n for role, n in found if role == "worker"}
        bridges = {n for role, n in found if role == "bridge"}
        assert workers == {host, f"{host}-2", f"{host}-3"}
        assert bridges == {host, f"{host}-2"}
        for key in ("bridge-0", "bridge-1", "worker-0"):
            assert " ready: " in p.log(key), p.log(key)
        publish(mqtt_server, declarations)
        deadline = time.monotonic() + 60
        declared = {p["declaration_id"] for _, p in declarations}
        while {
            r.hget(f"{p.prefix}:trip:{d['lock_id']}", "declaration_id") for _, d in declarations
        } != declared:
            assert time.monotonic() < deadline, [p.log(k) for k in list(p.procs)]
            time.sleep(0.3)
        active = r.get(RedisKeys(p.prefix).lease("bridge"))
        [killed] = [k for k in ("bridge-0", "bridge-1") if f"bridge {active} active: " in p.log(k)]
        [standby] = {"bridge-0", "bridge-1"} - {killed}
        assert " active: " not in p.log(standby), p.log(standby)
        statuses = membership.members(p.settings())
        assert len(statuses) == 5 and all(s.alive for s in statuses)
        half = len(rest) // 2
        publish(mqtt_server, rest[:half])
        p.stop(killed, signal.SIGKILL)  # the standby takes the session over when the lease ends
        publish(mqtt_server, rest[half:])
        wait_for_log(p, standby, " active: ")
        expected = expected_outputs(
            evaluate_lines(write_trace(declarations + rest, tmp_path / "t.jsonl"), geofences)
        )
        got = wait_settled(p, expected, timeout=120)
        for output, want in expected.items():
            have = got[output]
            lost, extra = want - set(have), set(have) - want
            duplicated = len(have) - len(set(have))
            assert (sorted(lost), duplicated, sorted(extra)) == ([], 0, []), (
                output, [p.log(k) for k in p.procs],
            )  # fmt: skip
        deciders = set()
        for key in r.scan_iter(f"{p.prefix}:writeoff:*"):
            deciders |= {json.loads(v)["decided_by"] for v in r.hvals(key)}
        assert deciders and all(any(f"(worker {w})" in d for w in workers) for d in deciders), (
            deciders
        )
    finally:
        p.stop_all()
