"""Geofences of CONTRACT section 1: corridors and zones, checked at load and indexed for fast point checks.

A directory of GeoJSON FeatureCollections (RFC 7946, WGS84, ``[lon, lat]``) is read once, every feature
is checked against the contract, and the geometries are projected to one local Transverse Mercator CRS
centred on the data, so that every distance is in metres.

Point checks run once per position fix, so they must be cheap. A point is projected with pyproj (about
2 µs on a scalar; a hand-written Krüger series in pure Python measured slower) and then looked up in a
square grid built at load time:

* corridor cells keep the few line segments that can be nearest to a point in the cell, and a flag saying
  the whole cell lies inside the corridor, so ``in_corridor`` needs at most a couple of segment distances;
* zone cells keep the zones that cover the whole cell and the zones whose edge crosses it; only near an
  edge does a point need an exact (prepared, GEOS) containment test.

The grid answers are exact, not approximations of a buffered polygon: ``in_corridor`` is true exactly when
``corridor_distance_m <= buffer_m``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pyproj
import shapely
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Point, Polygon
from shapely.geometry.base import BaseGeometry

from smartlock.errors import GeofenceError

KINDS = ("corridor", "zone")
MODES = ("road", "rail")
ROLES = ("origin_site", "destination_gate", "rest_area", "supervised_site")
MAX_BUFFER_M = 5000.0
_WGS84 = "+proj=longlat +ellps=WGS84 +no_defs"


@dataclass(frozen=True)
class Corridor:
    """An approved route: a centre line (metric coordinates) and the allowed lateral distance."""

    id: str
    mode: str
    buffer_m: float
    line: LineString | MultiLineString


@dataclass(frozen=True)
class Zone:
    """A place with rules (origin site, gate, rest area, supervised site); polygon in metric coordinates."""

    id: str
    role: str
    polygon: BaseGeometry


def default_geofence_dir() -> Path:
    """The ``geofences/`` directory shipped with the repository (source checkout or editable install)."""
    return Path(__file__).resolve().parents[2] / "geofences"


# ----------------------------------------------------------------------------- checking


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


# ----------------------------------------------------------------------------- projection


class _LocalMetric:
    """A Transverse Mercator CRS (WGS84 ellipsoid, scale 1) centred on the data: metres, tiny scale error."""

    def __init__(self, lon0: float, lat0: float) -> None:
        self.proj = (
            f"+proj=tmerc +lat_0={lat0:.6f} +lon_0={lon0:.6f} +k=1 +x_0=0 +y_0=0 "
            "+ellps=WGS84 +units=m +no_defs"
        )
        self.forward = pyproj.Transformer.from_crs(_WGS84, self.proj, always_xy=True)
        self.inverse = pyproj.Transformer.from_crs(self.proj, _WGS84, always_xy=True)

    @classmethod
    def centred_on(cls, geometries: list[BaseGeometry]) -> _LocalMetric:
        minx, miny, maxx, maxy = shapely.total_bounds(geometries)
        return cls(round((minx + maxx) / 2, 6), round((miny + maxy) / 2, 6))

    def project(self, geometry: BaseGeometry) -> BaseGeometry:
        def to_xy(coords: np.ndarray) -> np.ndarray:
            x, y = self.forward.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([x, y])

        return shapely.transform(geometry, to_xy)


# ----------------------------------------------------------------------------- grid indexes


_Segment = tuple[float, float, float, float, float]


def _segments(line: BaseGeometry) -> list[_Segment]:
    """Segments as (ax, ay, dx, dy, 1/length²); zero-length ones are dropped (their point is on a neighbour)."""
    parts = line.geoms if isinstance(line, MultiLineString) else [line]
    segs = []
    for part in parts:
        xy = list(part.coords)
        for (ax, ay), (bx, by) in zip(xy, xy[1:], strict=False):
            dx, dy = bx - ax, by - ay
            if dx or dy:
                segs.append((ax, ay, dx, dy, 1.0 / (dx * dx + dy * dy)))
    return segs


def _nearest_d2(segs: tuple[_Segment, ...], x: float, y: float) -> float:
    best = math.inf
    for ax, ay, dx, dy, inv in segs:
        t = ((x - ax) * dx + (y - ay) * dy) * inv
        t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
        ex, ey = ax + t * dx - x, ay + t * dy - y
        d2 = ex * ex + ey * ey
        if d2 < best:
            best = d2
    return best


class _CorridorIndex:
    """Exact distance to a corridor line for points within ``reach`` metres of it.

    A cell keeps every segment whose distance to the cell centre is at most ``reach`` plus half the cell
    diagonal. For a point in the cell whose nearest segment is within ``reach``, that segment is therefore
    in the list (triangle inequality), so the minimum over the list is the exact distance.
    """

    def __init__(self, corridor: Corridor) -> None:
        self.line = corridor.line
        self.buffer_m = corridor.buffer_m
        self.cell = min(max(corridor.buffer_m / 2, 25.0), 500.0)
        self.reach = corridor.buffer_m + self.cell
        half_diag = self.cell * math.sqrt(0.5)
        segs = _segments(corridor.line)
        radius = (
            self.reach + half_diag + 1e-6
        )  # the epsilon absorbs rounding of a point's cell index
        parts = [self._cells_near(seg, radius) for seg in segs]
        i, j, d = (np.concatenate([p[n] for p in parts]) for n in range(3))
        k = np.concatenate([np.full(len(p[0]), n) for n, p in enumerate(parts)])
        order = np.lexsort((k, j, i))
        i, j, k, d = i[order], j[order], k[order], d[order]
        starts = np.flatnonzero(np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])])
        ends = np.r_[starts[1:], len(i)]
        # every point of a cell is within (centre distance + half diagonal) of the line
        covered = np.minimum.reduceat(d, starts) + half_diag <= corridor.buffer_m - 1e-6
        ks = k.tolist()
        shared: dict[tuple[int, ...], tuple[_Segment, ...]] = {}
        self.cells: dict[tuple[int, int], tuple[bool, tuple[_Segment, ...]]] = {}
        for a, b, ci, cj, full in zip(
            starts.tolist(),
            ends.tolist(),
            i[starts].tolist(),
            j[starts].tolist(),
            covered.tolist(),
            strict=True,
        ):
            group = tuple(ks[a:b])
            near = shared.get(group)
            if near is None:
                near = shared[group] = tuple(segs[n] for n in group)
            self.cells[(ci, cj)] = (full, near)

    def _cells_near(
        self, seg: _Segment, radius: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices (i, j) and centre distance of the cells whose centre is within ``radius`` of the segment."""
        ax, ay, dx, dy, inv = seg
        c = self.cell
        i = np.arange(
            math.floor((min(ax, ax + dx) - radius) / c),
            math.floor((max(ax, ax + dx) + radius) / c) + 1,
        )
        j = np.arange(
            math.floor((min(ay, ay + dy) - radius) / c),
            math.floor((max(ay, ay + dy) + radius) / c) + 1,
        )
        ii, jj = (a.ravel() for a in np.meshgrid(i, j))
        px, py = (ii + 0.5) * c, (jj + 0.5) * c
        t = np.clip(((px - ax) * dx + (py - ay) * dy) * inv, 0.0, 1.0)
        dist = np.hypot(ax + t * dx - px, ay + t * dy - py)
        near = dist <= radius
        return ii[near], jj[near], dist[near]

    def contains(self, x: float, y: float) -> bool:
        cell = self.cells.get((int(x // self.cell), int(y // self.cell)))
        if cell is None:
            return False
        return cell[0] or math.sqrt(_nearest_d2(cell[1], x, y)) <= self.buffer_m

    def distance(self, x: float, y: float) -> float:
        cell = self.cells.get((int(x // self.cell), int(y // self.cell)))
        if cell is not None:
            d = math.sqrt(_nearest_d2(cell[1], x, y))
            if d <= self.reach:
                return d
        return float(self.line.distance(Point(x, y)))  # far away: exact but slower, and rare


class _ZoneIndex:
    """Zones per grid cell: those covering the whole cell, and those whose edge crosses it."""

    CELL_M = 50.0

    def __init__(self, zones: list[Zone]) -> None:
        inside: dict[tuple[int, int], list[Zone]] = {}
        edge: dict[tuple[int, int], list[Zone]] = {}
        c = self.CELL_M
        for zone in zones:  # sorted by id, so every cell list is too
            shapely.prepare(zone.polygon)
            minx, miny, maxx, maxy = zone.polygon.bounds
            i = np.arange(math.floor(minx / c), math.floor(maxx / c) + 1)
            j = np.arange(math.floor(miny / c), math.floor(maxy / c) + 1)
            ii, jj = (a.ravel() for a in np.meshgrid(i, j))
            boxes = shapely.box(ii * c, jj * c, (ii + 1) * c, (jj + 1) * c)
            covered = shapely.contains_properly(zone.polygon, boxes)
            touched = shapely.intersects(zone.polygon, boxes)
            for a, b, full, hit in zip(ii.tolist(), jj.tolist(), covered, touched, strict=True):
                if full:
                    inside.setdefault((a, b), []).append(zone)
                elif hit:
                    edge.setdefault((a, b), []).append(zone)
        self.cells = {
            key: (tuple(inside.get(key, ())), tuple(edge.get(key, ())))
            for key in inside.keys() | edge.keys()
        }

    def at(self, x: float, y: float) -> list[Zone]:
        cell = self.cells.get((int(x // self.CELL_M), int(y // self.CELL_M)))
        if cell is None:
            return []
        full, edge = cell
        if not edge:
            return list(full)
        found = [*full, *(z for z in edge if shapely.contains_xy(z.polygon, x, y))]
        return sorted(found, key=lambda z: z.id) if full else found

    def contains(self, zone: Zone, x: float, y: float) -> bool:
        cell = self.cells.get((int(x // self.CELL_M), int(y // self.CELL_M)))
        if cell is None:
            return False
        full, edge = cell
        # identity, not ==: dataclass equality would compare the geometries
        if any(z is zone for z in full):
            return True
        return any(z is zone for z in edge) and bool(shapely.contains_xy(zone.polygon, x, y))


# ----------------------------------------------------------------------------- the geofence set


class Geofences:
    """The loaded corridors and zones, with metric point checks.

    Build with :meth:`load` (a directory) or :meth:`from_feature_collections` (parsed JSON, for tests).
    Longitudes and latitudes are WGS84 degrees; every distance is in metres.
    """

    def __init__(self, checked: list[_Checked]) -> None:
        self._metric = _LocalMetric.centred_on([item.geometry for item in checked])
        corridors: dict[str, Corridor] = {}
        zones: dict[str, Zone] = {}
        for item in sorted(checked, key=lambda c: c.id):
            shape = self._metric.project(item.geometry)
            if item.kind == "corridor":
                corridors[item.id] = Corridor(
                    item.id, item.properties["mode"], float(item.properties["buffer_m"]), shape
                )
            else:
                zones[item.id] = Zone(item.id, item.properties["role"], shape)
        self.corridors: Mapping[str, Corridor] = MappingProxyType(corridors)
        self.zones: Mapping[str, Zone] = MappingProxyType(zones)
        self._corridor_index = {cid: _CorridorIndex(c) for cid, c in corridors.items()}
        self._zone_index = _ZoneIndex(list(zones.values()))
        self._to_xy = self._metric.forward.transform
        canonical = json.dumps(
            sorted((item.source for item in checked), key=lambda s: s["properties"]["id"]),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        self._fingerprint = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @classmethod
    def load(cls, directory: Path | str) -> Geofences:
        """Loads every ``*.geojson`` file of ``directory`` (not recursive).

        Raises:
            GeofenceError: a file or feature breaks a rule of CONTRACT section 1; the error names the
                file, the feature (id, or ``#index`` when it has no usable id) and the rule.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise GeofenceError(
                str(directory),
                None,
                "missing_directory",
                "geofence directory not found; pass --geofences DIR or create it",
            )
        files = sorted(p for p in directory.glob("*.geojson") if p.is_file())
        if not files:
            raise GeofenceError(
                str(directory),
                None,
                "empty_directory",
                "no *.geojson file in the geofence directory; add the corridor and zone files",
            )
        return cls(_check_all([(str(p), _read_collection(p)) for p in files], str(directory)))

    @classmethod
    def from_feature_collections(cls, collections: dict[str, dict[str, Any]]) -> Geofences:
        """Builds the set from already parsed FeatureCollections keyed by a file name (used in errors)."""
        if not collections:
            raise GeofenceError(
                "<no files>", None, "empty_directory", "no feature collection given"
            )
        return cls(_check_all(sorted(collections.items()), "<collections>"))

    # -- projection

    @property
    def metric_crs(self) -> str:
        """PROJ string of the local metric CRS used for every geometry of this set."""
        return self._metric.proj

    def to_metric(self, lon: float, lat: float) -> tuple[float, float]:
        """Projects a WGS84 position to the set's local metric CRS (x east, y north, metres)."""
        x, y = self._to_xy(lon, lat)
        return x, y

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        """Inverse of :meth:`to_metric`."""
        lon, lat = self._metric.inverse.transform(x, y)
        return lon, lat

    def distance_m(self, lon1: float, lat1: float, lon2: float, lat2: float) -> float:
        """Distance in metres between two WGS84 positions (local projection; error < 0.05% over ±200 km)."""
        x1, y1 = self._to_xy(lon1, lat1)
        x2, y2 = self._to_xy(lon2, lat2)
        return math.hypot(x2 - x1, y2 - y1)

    # -- corridors and zones

    def corridor_distance_m(self, corridor_id: str, lon: float, lat: float) -> float:
        """Distance in metres from a position to the corridor's centre line. KeyError for an unknown id."""
        x, y = self._to_xy(lon, lat)
        return self._corridor_index[corridor_id].distance(x, y)

    def in_corridor(self, corridor_id: str, lon: float, lat: float) -> bool:
        """True when the position is at most ``buffer_m`` from the centre line. KeyError for an unknown id."""
        x, y = self._to_xy(lon, lat)
        return self._corridor_index[corridor_id].contains(x, y)

    def zones_at(self, lon: float, lat: float) -> list[Zone]:
        """Every zone containing the position (a point on an edge is not inside), sorted by id."""
        x, y = self._to_xy(lon, lat)
        return self._zone_index.at(x, y)

    def in_zone(self, zone_id: str, lon: float, lat: float) -> bool:
        """True when the zone contains the position. KeyError for an unknown id."""
        zone = self.zones[zone_id]
        x, y = self._to_xy(lon, lat)
        return self._zone_index.contains(zone, x, y)

    def fingerprint(self) -> str:
        """SHA-256 of the loaded features (canonical JSON, sorted by id), for provenance.

        File names, file order, formatting and foreign members do not change it; any change to a
        feature's geometry or properties does.
        """
        return self._fingerprint
