"""What the geofence files describe: corridors and zones (CONTRACT section 1), as value objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shapely.geometry import LineString, MultiLineString
from shapely.geometry.base import BaseGeometry

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
    return Path(__file__).resolve().parents[3] / "geofences"
