"""The limits of the detection core (CONTRACT section 3), with their documented defaults.

A plain frozen model, so the core needs no settings loader: :mod:`smartlock.settings` reads
it from the ``[detection]`` section of the file and ``SMARTLOCK_DETECTION__...`` variables.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DetectionSettings(BaseModel):
    """Limits of the detection core (CONTRACT section 3). Durations in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deviation_confirm_fixes: int = Field(
        2,
        ge=1,
        le=10,
        description="consecutive fixes outside the corridor that confirm a route deviation; "
        "2 ignores a single multipath fix and flags a real excursion at its second fix",
    )
    max_hdop: float = Field(
        10.0,
        gt=0,
        description="fixes with a worse (higher) HDOP are not used for corridor, stop or jump checks",
    )
    stop_limit_s: float = Field(
        900.0,
        gt=0,
        description="stationary longer than this outside allowed zones is an unauthorized stop",
    )
    stop_radius_m: float = Field(
        150.0,
        gt=0,
        description="fixes within this distance of the stop's first fix count as stationary",
    )
    silence_limit_s: float = Field(
        600.0,
        gt=0,
        description="no message from a lock for longer than this (event time) is signal_lost",
    )
    overdue_grace_s: float = Field(
        3600.0, ge=0, description="a trip not arrived by eta_ts plus this is overdue"
    )
    seq_window: int = Field(
        1024,
        ge=1,
        le=65536,
        description="anti-replay window (CONTRACT section 6): a seq already accepted, or lower "
        "than the highest accepted minus this, is refused; a new seq inside it is judged late",
    )
    low_battery_pct: float = Field(
        20.0, ge=0, le=100, description="battery below this raises low_battery"
    )
    jump_speed_kmh: float = Field(
        250.0, gt=0, description="two fixes implying a faster speed are an implausible jump"
    )
    jump_min_distance_m: float = Field(
        1000.0, ge=0, description="jumps shorter than this are GPS noise, never implausible"
    )
    jump_reanchor_fixes: int = Field(
        3,
        ge=1,
        description="after this many consecutive implausible fixes the new position is accepted",
    )
