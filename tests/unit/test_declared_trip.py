"""`smartlock form` moves an example's times to now; `smartlock simulate --declaration` drives
the trip of a given declaration (its locks, corridor, origin, gate, departure; detour or not)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from smartlock.cli.commands.form import shifted
from smartlock.cli.commands.simulate import declared_trip
from smartlock.contract.models import TransitDeclaration
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.services.intake.rules import Accepted, validate_submission
from smartlock.simulators.trip import DeclaredTrip, declaration_trip
from tests.builders import run

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
GEO = Geofences.load(default_geofence_dir())
NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def test_every_shipped_form_is_accepted_once_its_times_are_moved_to_now() -> None:
    for name in ("road-form.json", "road-form-special-goods.json", "rail-form.json"):
        form = shifted(example(name), 45, NOW)
        assert form["arrival"].endswith("+08:00")
        result = validate_submission(form, NOW)
        assert isinstance(result, Accepted), (name, result)
        assert result.declaration.eta_ts == datetime(2026, 11, 24, 3, 45, tzinfo=UTC)
        duration = TransitDeclaration.model_validate(result.declaration.to_payload())
        assert duration.eta_ts > duration.departure_ts


def test_the_train_file_lists_the_rail_forms_containers() -> None:
    train, rail = example("train.json"), example("rail-form.json")
    assert train["vehicle_plate"] == rail["train_id"]
    assert train["containers"] == rail["locks"]


def _outputs(messages: list, declaration: dict) -> list[dict]:
    result = run([("customs/declarations", declaration), *messages], geofences=GEO)
    assert result.reasons() == []
    return [o.line() for o in result.outputs]


def test_the_trip_of_a_declaration_ends_in_its_gate_zone_and_a_detour_deviates(
    tmp_path: Path,
) -> None:
    form_file = tmp_path / "form.json"
    form_file.write_text(json.dumps(shifted(example("road-form.json"), 45, NOW)), encoding="utf-8")
    trip = declared_trip(form_file)
    assert (trip.lock_ids, trip.plate, trip.destination_gate) == (
        ("LK-0001",),
        "浙G01345",
        "beilun-gate",
    )
    accepted = validate_submission(json.loads(form_file.read_text()), NOW)
    assert isinstance(accepted, Accepted)
    declaration = accepted.with_reference("DCL-EX").declaration.to_payload()
    declaration["declaration_id"] = "DCL-EX"
    clean = declaration_trip(trip, GEO)
    assert clean[0][1]["type"] == "sealed" and clean[0][1]["ts"] == declaration["departure_ts"]
    alerts = [o for o in _outputs(clean, declaration) if o["topic"].startswith("monitoring/alerts")]
    assert alerts == []
    detour = _outputs(declaration_trip(trip, GEO, detour=True), declaration)
    types = [o["payload"]["type"] for o in detour if o["topic"].startswith("monitoring/alerts")]
    assert types == ["route_deviation", "route_rejoined"]
    states = [
        o["payload"]["state"] for o in _outputs(clean, declaration) if "state" in o["payload"]
    ]
    assert states[-1] == "arrived"


def test_a_train_drives_every_container_together() -> None:
    accepted = validate_submission(shifted(example("rail-form.json"), 45, NOW), NOW)
    assert isinstance(accepted, Accepted)
    trip = DeclaredTrip.from_declaration(accepted.declaration.to_payload())
    messages = declaration_trip(trip, GEO)
    assert {p["lock_id"] for _, p in messages} == {"RL-0001", "RL-0002", "RL-0003"}
    assert [p["ts"] for _, p in messages] == sorted(p["ts"] for _, p in messages)


def test_a_lock_driven_again_counts_on_so_its_second_trip_is_judged_too() -> None:
    """The README's loop drives LK-0001 again (a detour after a clean trip): a lock's seq never
    goes back (CONTRACT section 6), so the second drive starts above the first; started at 1
    again, its every message would be refused as a duplicate and the detour never seen."""
    declarations = []
    for n in (1, 2):
        accepted = validate_submission(shifted(example("road-form.json"), 45, NOW), NOW)
        assert isinstance(accepted, Accepted)
        declaration = accepted.with_reference(f"DCL-{n}").declaration.to_payload()
        declaration["declaration_id"] = f"DCL-{n}"
        declarations.append(declaration)
    trip = DeclaredTrip.from_declaration(declarations[0])
    first = declaration_trip(trip, GEO)
    arrival = {
        "gate_id": "beilun-gate",
        "ts": first[-1][1]["ts"],
        "vehicle_plate": "浙G01345",
        "lock_id": "LK-0001",
        "container_no": "CSQU3054383",
    }
    gate = ("gates/beilun-gate/arrivals", arrival)
    released = run([("customs/declarations", declarations[0]), *first, gate], geofences=GEO)
    assert [v["verdict"] for v in released.verdicts()] == ["release"]
    last_seq = first[-1][1]["seq"]

    def second_trip(first_seq: int) -> list[str]:
        again = run([("customs/declarations", declarations[0]), *first, gate], geofences=GEO)
        messages = declaration_trip(trip, GEO, detour=True, first_seq=first_seq)
        assert messages[0][1]["seq"] == first_seq
        result = run([("customs/declarations", declarations[1]), *messages], engine=again.engine)
        return sorted(set(result.alert_types())) + sorted(set(result.reasons()))

    assert {"route_deviation", "route_rejoined"} <= set(second_trip(last_seq + 1))
    assert second_trip(1) == ["duplicate"]
