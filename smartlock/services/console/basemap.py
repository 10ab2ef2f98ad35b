"""A basemap with no tile server: the coastline around the corridors, from Natural Earth.

``world-atlas`` (npm, installed by ``make setup`` beside the browser libraries) ships Natural
Earth's 1:10m land as TopoJSON. The console decodes it once, keeps the land inside a box
around the geofences (with a margin) and serves that small GeoJSON; the page draws it under
the corridors. Without the file the map simply has no coastline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shapely.geometry import MultiPolygon, Polygon, box, mapping
from shapely.ops import unary_union

#: Degrees of margin around the geofences' bounding box.
MARGIN_DEG = 1.0


def _arcs(topology: dict[str, Any]) -> list[list[tuple[float, float]]]:
    """The topology's arcs in longitude/latitude (delta-decoded, de-quantized)."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def _ring(indexes: list[int], arcs: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    ring: list[tuple[float, float]] = []
    for i in indexes:
        points = arcs[i] if i >= 0 else arcs[~i][::-1]
        ring.extend(points if not ring else points[1:])
    return ring


def land_within(
    topology: dict[str, Any], bounds: tuple[float, float, float, float]
) -> dict[str, Any]:
    """The land of a Natural Earth TopoJSON inside ``bounds`` (lon/lat), as a GeoJSON Feature."""
    arcs = _arcs(topology)
    area = box(*bounds)
    x0, y0, x1, y1 = bounds
    near = [any(x0 <= x <= x1 and y0 <= y <= y1 for x, y in arc) for arc in arcs]
    parts = []
    for geometry in topology["objects"]["land"]["geometries"]:
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        for rings in polygons:
            if not any(near[i if i >= 0 else ~i] for i in rings[0]):
                continue  # its coast never comes into the box (the box is coastal, not inland)
            shell, *holes = (_ring(r, arcs) for r in rings)
            if len(shell) < 4:
                continue
            polygon = Polygon(shell, [h for h in holes if len(h) >= 4])
            if polygon.intersects(area):
                parts.append(polygon.buffer(0).intersection(area))
    land = unary_union(parts) if parts else MultiPolygon()
    return {
        "type": "Feature",
        "properties": {"kind": "land", "source": "Natural Earth 1:10m (world-atlas)"},
        "geometry": mapping(land),
    }


def basemap(land_file: Path, geofences: dict[str, Any]) -> dict[str, Any]:
    """The land around the geofences, or an empty collection when the file is missing."""
    if not land_file.is_file():
        return {"type": "FeatureCollection", "features": []}
    lons, lats = [], []
    for feature in geofences["features"]:
        _collect(feature["geometry"]["coordinates"], lons, lats)
    bounds = (
        min(lons) - MARGIN_DEG,
        min(lats) - MARGIN_DEG,
        max(lons) + MARGIN_DEG,
        max(lats) + MARGIN_DEG,
    )
    topology = json.loads(land_file.read_text(encoding="utf-8"))
    return {"type": "FeatureCollection", "features": [land_within(topology, bounds)]}


def _collect(coords: Any, lons: list[float], lats: list[float]) -> None:
    if coords and isinstance(coords[0], (int, float)):
        lons.append(float(coords[0]))
        lats.append(float(coords[1]))
        return
    for c in coords:
        _collect(c, lons, lats)
