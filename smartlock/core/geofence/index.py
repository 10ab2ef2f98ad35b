"""A local metric projection and grid indexes that make point checks against corridors and zones fast."""

from __future__ import annotations

import math

import numpy as np
import pyproj
import shapely
from shapely.geometry import MultiLineString, Point
from shapely.geometry.base import BaseGeometry

from smartlock.core.geofence.features import _WGS84, Corridor, Zone


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
