"""Geofence loading (CONTRACT section 1), the shipped data, and the metric point checks."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.errors import GeofenceError

GEOD = pyproj.Geod(ellps="WGS84")
LINE = [[120.0, 29.5], [120.05, 29.5], [120.1, 29.5]]
BOX = [[[119.99, 29.49], [120.01, 29.49], [120.01, 29.51], [119.99, 29.51], [119.99, 29.49]]]


def corridor(
    fid: str = "c1", coords: Any = None, geometry: Any = None, **props: Any
) -> dict[str, Any]:
    geom = (
        geometry if geometry is not None else {"type": "LineString", "coordinates": coords or LINE}
    )
    return {
        "type": "Feature",
        "geometry": geom,
        "properties": {"kind": "corridor", "id": fid, "mode": "road", "buffer_m": 300} | props,
    }


def zone(
    fid: str = "z1",
    role: str = "origin_site",
    coords: Any = None,
    geometry: Any = None,
    **props: Any,
) -> dict[str, Any]:
    geom = geometry if geometry is not None else {"type": "Polygon", "coordinates": coords or BOX}
    return {
        "type": "Feature",
        "geometry": geom,
        "properties": {"kind": "zone", "id": fid, "role": role} | props,
    }


def fc(*features: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def refusal(*features: Any, file: str = "test.geojson") -> GeofenceError:
    """The error raised for one file holding a valid corridor followed by ``features``."""
    with pytest.raises(GeofenceError) as info:
        Geofences.from_feature_collections({file: fc(corridor("ok-road"), *features)})
    return info.value


def without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


# ----------------------------------------------------------------------------- refusals, one per rule

BOWTIE = [[[120.0, 29.5], [120.01, 29.51], [120.01, 29.5], [120.0, 29.51], [120.0, 29.5]]]
REFUSALS = [
    # (rule, bad feature at index 1, feature label in the error, text the message must contain)
    ("not_a_feature", {"type": "Point", "coordinates": [120.0, 29.5]}, "#1", '"type": "Feature"'),
    (
        "missing_kind",
        {"type": "Feature", "geometry": None, "properties": {"id": "z9"}},
        "z9",
        "properties.kind is missing",
    ),
    (
        "missing_kind",
        {"type": "Feature", "geometry": None, "properties": None},
        "#1",
        "properties.kind is missing",
    ),
    ("unknown_kind", zone("z9", kind="parking_lot"), "z9", "properties.kind is 'parking_lot'"),
    (
        "invalid_id",
        without(zone(), "properties") | {"properties": {"kind": "zone", "role": "rest_area"}},
        "#1",
        "properties.id is None",
    ),
    ("invalid_id", zone(7), "#1", "properties.id is 7"),  # type: ignore[arg-type]
    ("invalid_id", zone("  "), "#1", "non-empty string id"),
    (
        "corridor_geometry",
        corridor("c9", geometry={"type": "Polygon", "coordinates": BOX}),
        "c9",
        "geometry is 'Polygon'; it must be LineString or MultiLineString",
    ),
    ("corridor_geometry", without(corridor("c9"), "geometry"), "c9", "geometry is 'missing'"),
    (
        "corridor_buffer",
        without(corridor("c9"), "properties")
        | {"properties": {"kind": "corridor", "id": "c9", "mode": "road"}},
        "c9",
        "properties.buffer_m is None",
    ),
    ("corridor_buffer", corridor("c9", buffer_m="300"), "c9", "properties.buffer_m is '300'"),
    ("corridor_buffer", corridor("c9", buffer_m=0), "c9", "above 0 and at most 5000"),
    ("corridor_buffer", corridor("c9", buffer_m=-10), "c9", "above 0"),
    ("corridor_buffer", corridor("c9", buffer_m=5000.5), "c9", "at most 5000"),
    ("corridor_buffer", corridor("c9", buffer_m=True), "c9", "properties.buffer_m is True"),
    ("corridor_buffer", corridor("c9", buffer_m=math.nan), "c9", "properties.buffer_m is nan"),
    (
        "corridor_mode",
        corridor("c9", mode="air"),
        "c9",
        "properties.mode is 'air'; it must be one of road, rail",
    ),
    (
        "zone_geometry",
        zone("z9", geometry={"type": "LineString", "coordinates": LINE}),
        "z9",
        "geometry is 'LineString'; it must be Polygon or MultiPolygon",
    ),
    (
        "zone_role",
        zone("z9", role="parking"),
        "z9",
        "properties.role is 'parking'; it must be one of origin_site, destination_gate, rest_area, supervised_site",
    ),
    ("invalid_geometry", zone("z9", coords=BOWTIE), "z9", "Self-intersection"),
    ("invalid_geometry", zone("z9", coords=[BOX[0][:-1]]), "z9", "closed ring"),
    (
        "invalid_geometry",
        corridor("c9", coords=[[120.0, 29.5]]),
        "c9",
        "at least 2 distinct positions, got 1",
    ),
    (
        "invalid_geometry",
        corridor("c9", coords=[[120.0, 29.5], [120.0, 29.5]]),
        "c9",
        "2 distinct positions",
    ),
    (
        "invalid_geometry",
        corridor("c9", coords=[[120.0, 29.5], ["120.1", 29.5]]),
        "c9",
        "is not an array of 2 or 3 numbers",
    ),
    (
        "invalid_geometry",
        corridor("c9", coords=[[120.0, 29.5], [120.1, math.inf]]),
        "c9",
        "is not finite",
    ),
    (
        "invalid_geometry",
        corridor("c9", geometry={"type": "LineString"}),
        "c9",
        "has no 'coordinates' array",
    ),
    (
        "coordinate_range",
        corridor("c9", coords=[[120.0, 29.5], [200.0, 29.5]]),
        "c9",
        "outside WGS84 (lon -180..180, lat -90..90)",
    ),
    (
        "coordinate_range",
        zone("z9", coords=[[[120.0, 95.0], [120.1, 95.0], [120.1, 96.0], [120.0, 95.0]]]),
        "z9",
        "outside WGS84",
    ),
    (
        "swapped_coordinates",
        corridor("c9", coords=[[29.5, 120.0], [29.5, 120.1]]),
        "c9",
        "GeoJSON wants [longitude, latitude], swap the two numbers",
    ),
]


@pytest.mark.parametrize(
    ("rule", "bad", "label", "text"), REFUSALS, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSALS)]
)
def test_feature_breaking_a_rule_is_refused_naming_file_feature_and_rule(
    rule: str, bad: dict[str, Any], label: str, text: str
) -> None:
    err = refusal(bad)
    assert (err.file, err.feature, err.rule) == ("test.geojson", label, rule)
    assert text in str(err)
    assert str(err).startswith(f"test.geojson, feature {label}: rule '{rule}' broken: ")


FILE_RULES = {
    "invalid_json",
    "not_feature_collection",
    "duplicate_id",
    "empty_directory",
    "missing_directory",
    "no_corridor",
}  # each has its own test below


def test_every_rule_the_loader_raises_is_tested() -> None:
    source = "\n".join(
        p.read_text(encoding="utf-8")
        for p in sorted(
            (Path(__file__).parents[2] / "smartlock" / "core" / "geofence").glob("*.py")
        )
    )
    raised = set(re.findall(r'fail\(\s*"([a-z_]+)"', source))
    raised |= set(re.findall(r'GeofenceError\(\s*[^,]+,\s*[^,]+,\s*"([a-z_]+)"', source))
    raised |= set(re.findall(r'"([a-z_]+)",\s*fail\s*\)', source))
    assert raised == {r[0] for r in REFUSALS} | FILE_RULES


def test_invalid_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.geojson").write_text(json.dumps(fc(corridor())))
    bad = tmp_path / "b.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(GeofenceError) as info:
        Geofences.load(tmp_path)
    assert (info.value.file, info.value.feature, info.value.rule) == (
        str(bad),
        None,
        "invalid_json",
    )
    assert "not valid UTF-8 JSON" in str(info.value)


def test_top_level_that_is_not_a_feature_collection_is_refused() -> None:
    with pytest.raises(GeofenceError) as info:
        Geofences.from_feature_collections({"one.geojson": corridor()})
    assert (info.value.file, info.value.feature, info.value.rule) == (
        "one.geojson",
        None,
        "not_feature_collection",
    )
    assert "top level is 'Feature'; a geofence file must be a GeoJSON FeatureCollection" in str(
        info.value
    )
    with pytest.raises(GeofenceError) as info:
        Geofences.from_feature_collections(
            {"two.geojson": {"type": "FeatureCollection", "features": {}}}
        )
    assert info.value.rule == "not_feature_collection"
    assert "'features' must be a list" in str(info.value)


def test_duplicate_id_across_files_is_refused_naming_both_files() -> None:
    with pytest.raises(GeofenceError) as info:
        Geofences.from_feature_collections(
            {"a.geojson": fc(corridor("same")), "b.geojson": fc(zone("same"))}
        )
    assert (info.value.file, info.value.feature, info.value.rule) == (
        "b.geojson",
        "same",
        "duplicate_id",
    )
    assert "id 'same' is already used in a.geojson" in str(info.value)


def test_directory_without_geojson_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text(json.dumps(fc(corridor())))
    with pytest.raises(GeofenceError) as info:
        Geofences.load(tmp_path)
    assert (info.value.file, info.value.feature, info.value.rule) == (
        str(tmp_path),
        None,
        "empty_directory",
    )
    assert "no *.geojson file" in str(info.value)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GeofenceError) as info:
        Geofences.load(tmp_path / "nowhere")
    assert (info.value.file, info.value.feature, info.value.rule) == (
        str(tmp_path / "nowhere"),
        None,
        "missing_directory",
    )


def test_set_without_a_corridor_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zones.geojson").write_text(json.dumps(fc(zone())))
    with pytest.raises(GeofenceError) as info:
        Geofences.load(tmp_path)
    assert (info.value.file, info.value.feature, info.value.rule) == (
        str(tmp_path),
        None,
        "no_corridor",
    )
    assert "no feature of kind 'corridor'" in str(info.value)


def test_multi_geometries_and_foreign_members_are_accepted() -> None:
    multi_line = {"type": "MultiLineString", "coordinates": [LINE, [[120.2, 29.6], [120.3, 29.6]]]}
    multi_poly = {
        "type": "MultiPolygon",
        "coordinates": [BOX, [[[120.2, 29.6], [120.21, 29.6], [120.21, 29.61], [120.2, 29.6]]]],
    }
    doc = fc(corridor("c", geometry=multi_line, name="x"), zone("z", geometry=multi_poly)) | {
        "description": "d"
    }
    geo = Geofences.from_feature_collections({"m.geojson": doc})
    assert geo.in_corridor("c", 120.25, 29.6) and geo.in_corridor("c", 120.05, 29.5)
    assert not geo.in_corridor("c", 120.15, 29.55)
    assert [z.id for z in geo.zones_at(120.207, 29.602)] == ["z"]


# ----------------------------------------------------------------------------- the shipped data


@pytest.fixture(scope="module")
def shipped() -> Geofences:
    return Geofences.load(default_geofence_dir())


ENDS = {
    "g1512-yiwu-beilun": ("road", 300, "yiwu-origin", "beilun-gate"),
    "g1512-yiwu-daxie": ("road", 300, "yiwu-origin", "daxie-gate"),
    "rail-yiwu-beilun": ("rail", 200, "yiwu-rail-origin", "beilun-rail-gate"),
}


def test_shipped_geofences_load_and_say_they_are_approximate(shipped: Geofences) -> None:
    assert set(shipped.corridors) == set(ENDS)
    roles = {z.id: z.role for z in shipped.zones.values()}
    assert {k: roles[k] for k in ("yiwu-origin", "yiwu-rail-origin")} == dict.fromkeys(
        ("yiwu-origin", "yiwu-rail-origin"), "origin_site"
    )
    assert {roles[k] for k in ("beilun-gate", "daxie-gate", "beilun-rail-gate")} == {
        "destination_gate"
    }
    assert sum(r == "rest_area" for r in roles.values()) >= 4
    for path in sorted(default_geofence_dir().glob("*.geojson")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert (
            "approximate" in doc["description"].lower() or "estimate" in doc["description"].lower()
        ), path


@pytest.mark.parametrize("corridor_id", sorted(ENDS))
def test_corridor_starts_in_its_origin_and_ends_in_its_gate(
    shipped: Geofences, corridor_id: str
) -> None:
    mode, buffer_m, origin, gate = ENDS[corridor_id]
    c = shipped.corridors[corridor_id]
    assert (c.mode, c.buffer_m) == (mode, buffer_m)
    start, end = shipped.to_lonlat(*c.line.coords[0]), shipped.to_lonlat(*c.line.coords[-1])
    assert [(z.id, z.role) for z in shipped.zones_at(*start)] == [(origin, "origin_site")]
    assert [(z.id, z.role) for z in shipped.zones_at(*end)] == [(gate, "destination_gate")]
    assert 180_000 < c.line.length < 260_000
    steps = [math.dist(a, b) for a, b in zip(c.line.coords, c.line.coords[1:], strict=False)]
    assert max(steps) <= 5_000  # a vertex every few kilometres


def test_rest_areas_lie_beside_the_road_and_are_found(shipped: Geofences) -> None:
    road = shipped.corridors["g1512-yiwu-beilun"]
    band = road.line.buffer(road.buffer_m)
    rests = [z for z in shipped.zones.values() if z.role == "rest_area"]
    for rest in rests:
        assert rest.polygon.intersects(band) and not rest.polygon.within(band), (
            rest.id
        )  # overlaps the edge
        assert 300 <= math.sqrt(rest.polygon.area) <= 500, rest.id  # about 400 m
        lon, lat = shipped.to_lonlat(*rest.polygon.representative_point().coords[0])
        assert rest in shipped.zones_at(lon, lat)
        assert shipped.in_zone(rest.id, lon, lat)


def test_point_on_the_line_is_in_the_corridor_and_one_km_off_is_not(shipped: Geofences) -> None:
    c = shipped.corridors["g1512-yiwu-beilun"]
    coords = list(c.line.coords)
    for (ax, ay), (bx, by) in zip(coords[10:60:7], coords[11:61:7], strict=True):
        mx, my = (ax + bx) / 2, (ay + by) / 2
        ux, uy = (
            (bx - ax) / math.dist((ax, ay), (bx, by)),
            (by - ay) / math.dist((ax, ay), (bx, by)),
        )
        on = shipped.to_lonlat(mx, my)
        assert shipped.in_corridor(c.id, *on)
        assert shipped.corridor_distance_m(c.id, *on) < 0.01
        off = shipped.to_lonlat(mx - uy * 1000, my + ux * 1000)  # 1 km to the left of the segment
        assert not shipped.in_corridor(c.id, *off)
        assert c.buffer_m < shipped.corridor_distance_m(c.id, *off) <= 1000.01


def test_default_geofence_dir_is_the_repository_directory() -> None:
    assert default_geofence_dir() == Path(__file__).resolve().parents[2] / "geofences"
    assert {p.name for p in default_geofence_dir().glob("*.geojson")} >= {
        "road_yiwu_ningbo.geojson",
        "zones.geojson",
        "rail_yiwu_beilun.geojson",
    }


# ----------------------------------------------------------------------------- metric answers


def test_distances_are_metres_matching_the_geodesic(shipped: Geofences) -> None:
    pairs = [
        ((120.0925, 29.3505), (121.867, 29.931)),  # Yiwu Port to Beilun, ~180 km
        ((120.0, 29.5), (120.01, 29.5)),  # about 1 km east-west
        ((121.5, 29.8), (121.5, 29.809)),  # about 1 km north-south
        ((120.26, 29.31), (121.43, 29.81)),
    ]
    for (lon1, lat1), (lon2, lat2) in pairs:
        geodesic = GEOD.inv(lon1, lat1, lon2, lat2)[2]
        assert shipped.distance_m(lon1, lat1, lon2, lat2) == pytest.approx(
            geodesic, rel=1e-3
        )  # brief: 0.5 %


def test_corridor_distance_is_in_metres() -> None:
    geo = Geofences.from_feature_collections({"t.geojson": fc(corridor())})
    for metres in (10.0, 250.0, 299.0, 301.0, 2000.0):
        lon, lat, _ = GEOD.fwd(120.03, 29.5, 0.0, metres)  # due north of an east-west line
        assert geo.corridor_distance_m("c1", lon, lat) == pytest.approx(metres, abs=0.5)
        assert geo.in_corridor("c1", lon, lat) is (metres <= 300)


def test_to_metric_matches_pyproj_and_round_trips(shipped: Geofences) -> None:
    reference = pyproj.Transformer.from_crs("EPSG:4326", shipped.metric_crs, always_xy=True)
    for lon, lat in [
        (119.99, 29.30),
        (120.0925, 29.3505),
        (120.9, 29.6),
        (121.984, 29.952),
        (121.5, 29.0),
    ]:
        x, y = shipped.to_metric(lon, lat)
        rx, ry = reference.transform(lon, lat)
        assert math.hypot(x - rx, y - ry) < 1e-3  # well under the 1 m the brief allows
        back = shipped.to_lonlat(x, y)
        assert back == pytest.approx((lon, lat), abs=1e-9)
    # a step of 1 km east or north is 1000 m in the local CRS (no degrees mixed with metres)
    x0, y0 = shipped.to_metric(120.9, 29.6)
    lon_e, lat_e, _ = GEOD.fwd(120.9, 29.6, 90.0, 1000.0)
    lon_n, lat_n, _ = GEOD.fwd(120.9, 29.6, 0.0, 1000.0)
    assert math.dist((x0, y0), shipped.to_metric(lon_e, lat_e)) == pytest.approx(1000.0, abs=0.2)
    assert math.dist((x0, y0), shipped.to_metric(lon_n, lat_n)) == pytest.approx(1000.0, abs=0.2)


@settings(max_examples=300, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(-700.0, 700.0), st.floats(-700.0, 700.0))
def test_in_corridor_is_exactly_distance_within_buffer(
    fraction: float, dx: float, dy: float
) -> None:
    geo = _shipped_once()
    for c in geo.corridors.values():
        p = c.line.interpolate(fraction, normalized=True)
        lon, lat = geo.to_lonlat(p.x + dx, p.y + dy)
        x, y = geo.to_metric(lon, lat)
        exact = c.line.distance(shapely.Point(x, y))
        assert geo.corridor_distance_m(c.id, lon, lat) == pytest.approx(exact, abs=1e-6)
        assert geo.in_corridor(c.id, lon, lat) is (exact <= c.buffer_m)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        (
            "yiwu-origin",
            "beilun-gate",
            "daxie-gate",
            "rest-shengzhou",
            "rest-ningbo",
            "yiwu-rail-origin",
            "beilun-rail-gate",
        )
    ),
    st.floats(-0.7, 0.7),
    st.floats(-0.7, 0.7),
)
def test_zones_at_is_every_containing_zone_sorted_by_id(zone_id: str, fx: float, fy: float) -> None:
    geo = _shipped_once()
    minx, miny, maxx, maxy = geo.zones[zone_id].polygon.bounds
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    lon, lat = geo.to_lonlat(cx + fx * (maxx - minx) * 1.5, cy + fy * (maxy - miny) * 1.5)
    x, y = geo.to_metric(lon, lat)
    expected = sorted(z.id for z in geo.zones.values() if z.polygon.contains(shapely.Point(x, y)))
    assert [z.id for z in geo.zones_at(lon, lat)] == expected
    assert all(geo.in_zone(z, lon, lat) is (z in expected) for z in geo.zones)


_SHIPPED: list[Geofences] = []


def _shipped_once() -> Geofences:
    # hypothesis tests cannot take a module fixture; load once per session
    if not _SHIPPED:
        _SHIPPED.append(Geofences.load(default_geofence_dir()))
    return _SHIPPED[0]


def test_unknown_ids_raise_key_error(shipped: Geofences) -> None:
    with pytest.raises(KeyError):
        shipped.in_corridor("no-such-corridor", 120.0, 29.5)
    with pytest.raises(KeyError):
        shipped.in_zone("no-such-zone", 120.0, 29.5)


# ----------------------------------------------------------------------------- provenance


def test_fingerprint_follows_content_not_layout() -> None:
    one = Geofences.from_feature_collections({"all.geojson": fc(corridor(), zone())})
    split = Geofences.from_feature_collections(
        {"b.geojson": fc(zone()) | {"description": "x"}, "a.geojson": fc(corridor())}
    )
    moved = Geofences.from_feature_collections(
        {"all.geojson": fc(corridor(coords=[[120.0, 29.5], [120.1, 29.6]]), zone())}
    )
    assert re.fullmatch(r"[0-9a-f]{64}", one.fingerprint())
    assert one.fingerprint() == split.fingerprint()
    assert one.fingerprint() != moved.fingerprint()
