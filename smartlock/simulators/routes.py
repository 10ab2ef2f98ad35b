"""Where simulated trucks drive: positions along a corridor, and container numbers."""

from __future__ import annotations

import math

from smartlock.contract.models import iso6346_check_digit
from smartlock.core.geofence import Geofences


class CorridorRoute:
    """Positions along a corridor: ``x_km`` from its start, ``y_m`` to the left of the centre line."""

    def __init__(self, geofences: Geofences, corridor_id: str, origin: str, gate: str) -> None:
        self.geofences = geofences
        self.corridor_id, self.origin, self.gate = corridor_id, origin, gate
        self.line = geofences.corridors[corridor_id].line
        self.length_km = self.line.length / 1000

    def at(self, x_km: float, y_m: float = 0.0) -> tuple[float, float]:
        """(lon, lat) of the point."""
        d = min(max(x_km * 1000, 0.0), self.line.length)
        a = self.line.interpolate(max(d - 50, 0.0))
        b = self.line.interpolate(min(d + 50, self.line.length))
        p = self.line.interpolate(d)
        dx, dy = b.x - a.x, b.y - a.y
        norm = math.hypot(dx, dy) or 1.0
        return self.geofences.to_lonlat(p.x - dy / norm * y_m, p.y + dx / norm * y_m)


def container_number(n: int) -> str:
    body = f"SLKU{n % 1_000_000:06d}"
    return body + str(iso6346_check_digit(body))
