"""The closed loop, end to end on local servers, narrated: declaration to write-off.

Brings up Mosquitto, Redis and the Kafka-compatible broker, a bridge, a worker and the
intake service; then, for two trucks: the declarant submits the declaration over HTTP, the
driver binds reference and plate, the lock is sealed at the Yiwu origin site and reports
along the G1512 (the second truck takes a twenty-minute detour off the expressway), and the
Beilun gate asks for its verdict. The first is released and written off; the second goes to
inspection with its reason, an operator resolves the alert, and its next arrival is released.
Times are taken from the wall clock (declarations must be submitted ahead of time); the
trucks' event times are then simulated as fast as the broker takes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from smartlock.adapters.credentials import CredentialStore
from smartlock.adapters.keys import RedisKeys
from smartlock.adapters.mqtt import login_for
from smartlock.adapters.redis_auth import redis_client
from smartlock.contract.models import format_epoch
from smartlock.contract.timestamps import parse_rfc3339
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.errors import InfrastructureError
from smartlock.local.demo import DemoProcesses, _wait_worker, local_stack, stack_settings
from smartlock.local.stack import apply_credentials, free_ports
from smartlock.services.gate.client import GateClient, Outcome, make_arrival
from smartlock.services.gate.queue import FallbackQueue
from smartlock.services.gate.report import show_outcome, writeoff_sentence
from smartlock.services.gate.resolution import confirm_resolution, publish_resolution
from smartlock.settings import Settings, settings_env
from smartlock.simulators.publisher import publish_paced
from smartlock.simulators.routes import CorridorRoute
from smartlock.simulators.trip import drive

SHANGHAI = "+08:00"
OPERATOR = "wang-li"
TRUCKS = [
    ("LK-0001", "CSQU3054383", "浙G01345", None),
    ("LK-0002", "MSCU1234566", "浙G02468", (60.0, 20)),
]


def _local(ts: datetime) -> str:
    return (ts + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M") + f" {SHANGHAI}"


def _form(lock: str, container: str, plate: str, depart: datetime) -> dict[str, Any]:
    address = {
        "street": "Chouzhou North Road",
        "number": "1088",
        "district": "Futian",
        "city": "Yiwu",
        "postal_code": "322000",
        "country": "CN",
    }
    return {
        "consignor": {"name": "Yiwu Scarf Co.", "address": address},
        "consignee": {
            "name": "Harbour Trading Ltd",
            "address": {
                "street": "Canton Road",
                "number": "3",
                "district": "Tsim Sha Tsui",
                "city": "Hong Kong",
                "country": "HK",
            },
        },
        "cargo": [
            {
                "description": "polyester knitted scarves, 180x70 cm",
                "packaging": "corrugated carton",
                "packages": 120,
                "quantity": 1200,
                "unit": "pcs",
                "value": 5400,
                "currency": "USD",
                "origin": "CN",
            }
        ],
        "mode": "road",
        "lock_id": lock,
        "container_no": container,
        "vehicle_plate": plate,
        "corridor_id": "g1512-yiwu-beilun",
        "origin_site": "yiwu-origin",
        "destination_gate": "beilun-gate",
        "departure": _local(depart),
        "arrival": _local(depart + timedelta(hours=4)),
    }


def _http(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def run_loop(run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    """Runs the loop; returns what happened (verdicts, write-offs) for tests and the caller."""
    console = console or Console(soft_wrap=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    geo = Geofences.load(default_geofence_dir())
    route = CorridorRoute(geo, "g1512-yiwu-beilun", "yiwu-origin", "beilun-gate")
    result: dict[str, Any] = {}
    with local_stack(run_dir, console) as ports:
        [intake_port] = free_ports(1)
        settings = stack_settings(
            ports,
            intake={"port": intake_port},
            credentials={"dir": (run_dir / "credentials").resolve()},
        )
        env = settings_env(settings, os.environ) | {"PYTHONUNBUFFERED": "1"}
        procs = DemoProcesses(run_dir, env)
        try:
            for role in ("worker", "bridge", "intake"):
                procs.start(role)
            _wait_worker(settings, procs, console, threading.Event())
            base = f"http://127.0.0.1:{intake_port}"
            _wait_http(f"{base}/healthz", procs)
            result = _narrate(console, base, settings, route, run_dir)
        finally:
            procs.stop()
    return result


def _wait_http(url: str, procs: DemoProcesses, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            procs.check()
            if time.monotonic() > deadline:
                raise InfrastructureError(f"intake service did not answer at {url}") from None
            time.sleep(0.2)


def _narrate(
    console: Console, base: str, settings: Settings, route: CorridorRoute, run_dir: Path
) -> dict[str, Any]:
    # The trucks left three hours ago (declared to arrive in an hour, so on time): every lock
    # message is stamped in the past, as a live lock's are; a stamp ahead of the clock would
    # be refused as future_ts (CONTRACT section 7).
    depart = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    r = redis_client(settings, "reader")
    keys = RedisKeys(settings.redis.prefix)
    store = CredentialStore(settings.credentials_dir)
    declarant = store.ensure("declarant", "loop-forwarder")
    office = store.ensure("customs", "yiwu-office")  # the origin office
    for role, name in (("gate", "beilun-gate"), ("operator", OPERATOR)):
        # Issued while the broker runs: admitted at once, no restart.
        apply_credentials(run_dir, store, store.ensure(role, name))
    token = declarant.secret.get_secret_value()
    declarations, references = {}, {}
    for lock, container, plate, _ in TRUCKS:
        status, body = _http(f"{base}/declarations", token, _form(lock, container, plate, depart))
        if status != 201:
            raise InfrastructureError(f"declaration refused: {body}")
        console.print(
            f"1. The declaration for {lock} ({plate}) is accepted: reference "
            f"{body['reference']}, fee HK${body['fee']['total']}."
        )
        status, bound = _http(
            f"{base}/declarations/{body['reference']}/bind", token, {"vehicle_plate": plate}
        )
        if status != 200:
            raise InfrastructureError(f"binding refused: {bound}")
        console.print(
            f"2. The driver bound {body['reference']} to {plate}; the declaration is now on "
            "customs/declarations."
        )
        status, approved = _http(
            f"{base}/declarations/{body['reference']}/approve",
            office.secret.get_secret_value(),
            {},
        )
        if status != 200:
            raise InfrastructureError(f"approval refused: {approved}")
        console.print(
            f"   The Yiwu office approved and sealed {body['reference']}; the transfer record "
            f"went to {approved['approval']['transfer_topic']}."
        )
        declarations[lock] = body["declaration_id"]
        references[lock] = body["reference"]
    messages = [m for lock, _, _, detour in TRUCKS for m in drive(route, lock, depart, detour)]
    messages.sort(key=lambda m: m[1]["ts"])
    report = asyncio.run(
        publish_paced(
            messages,
            "127.0.0.1",
            settings.mqtt.port,
            speed=None,
            client_id="loop-demo",
            login=login_for(settings, "simulator"),
            resend_s=settings.mqtt.resend_s,
            reconnect_wait_s=settings.mqtt.reconnect_wait_s,
        )
    )
    console.print(
        f"3. The {len(TRUCKS)} trucks were sealed at yiwu-origin; their locks sent "
        f"{report.acked} messages along the G1512."
    )
    for lock, *_ in TRUCKS:
        last = next(p["ts"] for _, p in reversed(messages) if p["lock_id"] == lock)
        _wait_until(lambda lock=lock, last=last: r.hget(keys.trip(lock), "last_ts") == last)
    gate = GateClient("beilun-gate", settings, FallbackQueue(run_dir / "gate-queue"), timeout=1.0)
    gate.connect()
    arrive_at = parse_rfc3339(messages[-1][1]["ts"]) + timedelta(minutes=2)
    verdicts = {}
    try:
        for n, (lock, container, plate, _) in enumerate(TRUCKS):
            outcome = gate.arrive(
                make_arrival(
                    "beilun-gate",
                    plate,
                    lock,
                    container,
                    format_epoch(arrive_at.timestamp() + 60 * n),
                )
            )
            verdicts[lock] = _show(console, outcome, "4.")
        bad_lock, container, plate, _ = TRUCKS[1]
        if verdicts[bad_lock]["verdict"] == "inspect":
            alert_id = verdicts[bad_lock]["reasons"][0].split()[3]
            resolution = publish_resolution(
                settings,
                alert_id,
                declarations[bad_lock],
                bad_lock,
                OPERATOR,
                "police check at the Fenghua exit, confirmed by phone",
            )
            confirmed = confirm_resolution(settings, resolution, OPERATOR)
            if not confirmed.accepted:
                raise InfrastructureError(
                    f"the pipeline did not take the resolution: {confirmed.detail}"
                )
            console.print(
                f"5. Operator {OPERATOR} resolved {alert_id} (police check at the exit, confirmed)."
            )
            for k in range(20):
                outcome = gate.arrive(
                    make_arrival(
                        "beilun-gate",
                        plate,
                        bad_lock,
                        container,
                        format_epoch(arrive_at.timestamp() + 600 + 60 * k),
                    )
                )
                if outcome.verdict and outcome.verdict["verdict"] == "release":
                    break
            verdicts[bad_lock] = _show(console, outcome, "6.")
    finally:
        gate.close()
    released = [declarations[lock] for lock, v in verdicts.items() if v.get("verdict") == "release"]
    # The worker writes the write-off while the gate already shows the release: wait for it.
    _wait_until(lambda: all(r.exists(keys.writeoff(d)) for d in released), 15.0)
    writeoffs = {
        d: {lock: json.loads(v) for lock, v in r.hgetall(keys.writeoff(d)).items()}
        for d in declarations.values()
    }
    for records in writeoffs.values():
        for record in records.values():
            console.print(f"7. {writeoff_sentence(record)}", markup=False)
    seen = {}
    for lock, reference in references.items():  # the write-off notice reaches the intake
        deadline = time.monotonic() + 15
        while True:
            _, record = _http(f"{base}/declarations/{reference}", token)
            seen[lock] = record.get("status")
            if seen[lock] == "written_off" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        heard = " ".join(
            f"The write-off notice for {c} reached the Yiwu office on {c_topic};"
            for c, c_topic in [
                (n["container_no"], f"customs/writeoffs/{n['origin_site']}")
                for n in (record.get("writeoffs") or {}).values()
            ]
        )
        console.print(
            f"8. {heard + ' t' if heard else 'T'}he declarant looks up {reference} and reads: "
            f"{str(seen[lock]).replace('_', ' ')}."
        )
    return {"verdicts": verdicts, "writeoffs": writeoffs, "declarant_sees": seen}


def _wait_until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise InfrastructureError("the worker did not process the trucks' messages in time")
        time.sleep(0.2)


def _show(console: Console, outcome: Outcome, step: str) -> dict[str, Any]:
    console.print(f"{step} Gate beilun-gate:", end=" ")
    show_outcome(console, outcome, timeout=1.0)
    return outcome.verdict or {"verdict": None, "reasons": []}
