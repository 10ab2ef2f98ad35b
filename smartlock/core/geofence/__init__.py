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
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from smartlock.core.geofence.checks import _check_all, _Checked, _read_collection
from smartlock.core.geofence.features import (
    KINDS,
    MAX_BUFFER_M,
    MODES,
    ROLES,
    Corridor,
    Zone,
    default_geofence_dir,
)
from smartlock.core.geofence.index import _CorridorIndex, _LocalMetric, _ZoneIndex

__all__ = [
    "KINDS",
    "MAX_BUFFER_M",
    "MODES",
    "ROLES",
    "Corridor",
    "Geofences",
    "Zone",
    "default_geofence_dir",
]
from smartlock.errors import GeofenceError


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
        self._ahead: dict[tuple[float, float], tuple[float, float]] = {}
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
        """Projects a WGS84 position to the set's local metric CRS (x east, y north, metres).

        A position given to :meth:`project_ahead` is looked up instead of projected again.
        """
        xy = self._ahead.get((lon, lat))
        if xy is not None:
            return xy
        x, y = self._to_xy(lon, lat)
        return x, y

    def project_ahead(self, positions: list[tuple[float, float]]) -> None:
        """Projects the (lon, lat) positions about to be checked, in one vectorised call.

        A scalar projection costs about 2 µs, mostly per call; an array costs a tenth of
        that per point, and PROJ computes each point the same way, so the numbers are the
        same bit for bit. Replaces the previous batch (the memory stays one batch).
        """
        if not positions:
            self._ahead = {}
            return
        lons = np.fromiter((p[0] for p in positions), dtype=np.float64, count=len(positions))
        lats = np.fromiter((p[1] for p in positions), dtype=np.float64, count=len(positions))
        xs, ys = self._to_xy(lons, lats)
        self._ahead = dict(zip(positions, zip(xs.tolist(), ys.tolist(), strict=True), strict=True))

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

    # -- the same checks for a position already projected with :meth:`to_metric`

    def corridor_distance_xy(self, corridor_id: str, x: float, y: float) -> float:
        """:meth:`corridor_distance_m` of a projected position."""
        return self._corridor_index[corridor_id].distance(x, y)

    def in_corridor_xy(self, corridor_id: str, x: float, y: float) -> bool:
        """:meth:`in_corridor` of a projected position."""
        return self._corridor_index[corridor_id].contains(x, y)

    def zones_at_xy(self, x: float, y: float) -> list[Zone]:
        """:meth:`zones_at` of a projected position."""
        return self._zone_index.at(x, y)

    def in_zone_xy(self, zone_id: str, x: float, y: float) -> bool:
        """:meth:`in_zone` of a projected position."""
        return self._zone_index.contains(self.zones[zone_id], x, y)

    def fingerprint(self) -> str:
        """SHA-256 of the loaded features (canonical JSON, sorted by id), for provenance.

        File names, file order, formatting and foreign members do not change it; any change to a
        feature's geometry or properties does.
        """
        return self._fingerprint
