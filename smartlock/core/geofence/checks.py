"""Every rule a geofence file must keep; a broken one names the file, the feature and the rule."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from smartlock.core.geofence.features import KINDS, MAX_BUFFER_M, MODES, ROLES
from smartlock.errors import GeofenceError


@dataclass(frozen=True)
class _Checked:
    """A feature that passed every rule, still in lon/lat."""

    file: str
    id: str
    kind: str
    properties: Mapping[str, Any]
    geometry: BaseGeometry
    source: Mapping[str, Any]


def _read_collection(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GeofenceError(
            str(path), None, "invalid_json", f"not valid UTF-8 JSON ({exc}); fix the syntax"
        ) from exc


def _features_of(file: str, collection: Any) -> list[Any]:
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        kind = collection.get("type") if isinstance(collection, dict) else type(collection).__name__
        raise GeofenceError(
            file,
            None,
            "not_feature_collection",
            f"top level is {kind!r}; a geofence file must be a GeoJSON FeatureCollection",
        )
    features = collection.get("features")
    if not isinstance(features, list):
        raise GeofenceError(
            file, None, "not_feature_collection", "'features' must be a list of Feature objects"
        )
    return features


def _label(index: int, feature: Any) -> str:
    props = feature.get("properties") if isinstance(feature, dict) else None
    fid = props.get("id") if isinstance(props, dict) else None
    return fid if isinstance(fid, str) and fid.strip() else f"#{index}"


def _check_feature(file: str, index: int, feature: Any) -> _Checked:
    label = _label(index, feature)

    def fail(rule: str, detail: str) -> GeofenceError:
        return GeofenceError(file, label, rule, detail)

    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise fail(
            "not_a_feature", 'every member of \'features\' must be an object with "type": "Feature"'
        )
    props = feature.get("properties")
    if not isinstance(props, dict) or "kind" not in props:
        raise fail(
            "missing_kind", f"properties.kind is missing; set it to one of {', '.join(KINDS)}"
        )
    kind = props["kind"]
    if kind not in KINDS:
        raise fail(
            "unknown_kind", f"properties.kind is {kind!r}; it must be one of {', '.join(KINDS)}"
        )
    fid = props.get("id")
    if not isinstance(fid, str) or not fid.strip():
        raise fail(
            "invalid_id",
            f"properties.id is {fid!r}; every feature needs a unique non-empty string id",
        )
    if kind == "corridor":
        _check_corridor_properties(props, fail)
        geometry = _corridor_geometry(feature.get("geometry"), fail)
    else:
        role = props.get("role")
        if role not in ROLES:
            raise fail(
                "zone_role", f"properties.role is {role!r}; it must be one of {', '.join(ROLES)}"
            )
        geometry = _zone_geometry(feature.get("geometry"), fail)
    source = {"geometry": feature["geometry"], "properties": props}
    return _Checked(file, fid, kind, props, geometry, source)


def _check_corridor_properties(props: Mapping[str, Any], fail: Any) -> None:
    mode = props.get("mode")
    if mode not in MODES:
        raise fail(
            "corridor_mode", f"properties.mode is {mode!r}; it must be one of {', '.join(MODES)}"
        )
    buffer_m = props.get("buffer_m")
    if (
        not isinstance(buffer_m, int | float)
        or isinstance(buffer_m, bool)
        or not math.isfinite(buffer_m)
        or not 0 < buffer_m <= MAX_BUFFER_M
    ):
        raise fail(
            "corridor_buffer",
            f"properties.buffer_m is {buffer_m!r}; it must be a number of metres "
            f"above 0 and at most {MAX_BUFFER_M:g} (e.g. 300 for a road)",
        )


def _geometry_parts(
    geometry: Any, allowed: tuple[str, ...], rule: str, fail: Any
) -> tuple[str, Any]:
    gtype = geometry.get("type") if isinstance(geometry, dict) else None
    if gtype not in allowed:
        shown = gtype if geometry is not None else "missing"
        raise fail(rule, f"geometry is {shown!r}; it must be {' or '.join(allowed)}")
    coords = geometry.get("coordinates")
    if not isinstance(coords, list):
        raise fail("invalid_geometry", f"{gtype} has no 'coordinates' array")
    return gtype, coords


def _corridor_geometry(geometry: Any, fail: Any) -> BaseGeometry:
    gtype, coords = _geometry_parts(
        geometry, ("LineString", "MultiLineString"), "corridor_geometry", fail
    )
    parts = [coords] if gtype == "LineString" else coords
    if not parts:
        raise fail("invalid_geometry", "MultiLineString has no lines")
    lines = []
    for part in parts:
        points = _positions(part, fail)
        if len(set(points)) < 2:
            raise fail(
                "invalid_geometry", f"a line needs at least 2 distinct positions, got {len(points)}"
            )
        lines.append(points)
    return LineString(lines[0]) if gtype == "LineString" else MultiLineString(lines)


def _zone_geometry(geometry: Any, fail: Any) -> BaseGeometry:
    gtype, coords = _geometry_parts(geometry, ("Polygon", "MultiPolygon"), "zone_geometry", fail)
    polygons = [coords] if gtype == "Polygon" else coords
    if not polygons:
        raise fail("invalid_geometry", "MultiPolygon has no polygons")
    built = []
    for rings in polygons:
        if not isinstance(rings, list) or not rings:
            raise fail("invalid_geometry", "a polygon needs at least an outer ring")
        checked = [_positions(ring, fail) for ring in rings]
        for ring in checked:
            if len(ring) < 4 or ring[0] != ring[-1]:
                raise fail(
                    "invalid_geometry",
                    "a polygon ring needs at least 4 positions and must end where "
                    "it starts (closed ring)",
                )
        built.append(Polygon(checked[0], checked[1:]))
    shape: BaseGeometry = built[0] if gtype == "Polygon" else MultiPolygon(built)
    if not shape.is_valid:
        raise fail(
            "invalid_geometry",
            f"invalid polygon: {shapely.is_valid_reason(shape)}; fix the outline "
            "(e.g. a self-intersecting ring)",
        )
    return shape


def _positions(points: Any, fail: Any) -> list[tuple[float, float]]:
    if not isinstance(points, list):
        raise fail(
            "invalid_geometry", f"expected an array of positions, got {type(points).__name__}"
        )
    return [_position(p, fail) for p in points]


def _position(pos: Any, fail: Any) -> tuple[float, float]:
    if (
        not isinstance(pos, list)
        or len(pos) < 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos)
    ):
        raise fail(
            "invalid_geometry", f"position {pos!r} is not an array of 2 or 3 numbers [lon, lat]"
        )
    try:
        lon, lat = float(pos[0]), float(pos[1])
    except OverflowError:
        lon = lat = math.inf
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise fail("invalid_geometry", f"position {pos!r} is not finite")
    if -180 <= lon <= 180 and -90 <= lat <= 90:
        return lon, lat
    # Only flag a swap when it is the one reading that makes the position valid: a pair that is in
    # range either way cannot be told apart without knowing where the data should be.
    if -180 <= lat <= 180 and -90 <= lon <= 90:
        raise fail(
            "swapped_coordinates",
            f"position {pos!r} has latitude {lat:g} outside -90..90 but is valid "
            "when read the other way round: GeoJSON wants [longitude, latitude], "
            "swap the two numbers",
        )
    raise fail(
        "coordinate_range", f"position {pos!r} is outside WGS84 (lon -180..180, lat -90..90)"
    )


def _check_all(named: list[tuple[str, Any]], where: str) -> list[_Checked]:
    """Checks every feature of every collection; ids are unique across all of them."""
    checked: list[_Checked] = []
    seen: dict[str, _Checked] = {}
    for file, collection in named:
        for index, feature in enumerate(_features_of(file, collection)):
            item = _check_feature(file, index, feature)
            first = seen.get(item.id)
            if first is not None:
                raise GeofenceError(
                    file,
                    item.id,
                    "duplicate_id",
                    f"id {item.id!r} is already used in "
                    f"{first.file}; every feature id must be unique across all files",
                )
            seen[item.id] = item
            checked.append(item)
    if not any(item.kind == "corridor" for item in checked):
        raise GeofenceError(
            where,
            None,
            "no_corridor",
            "no feature of kind 'corridor'; at least one approved route is needed",
        )
    return checked
