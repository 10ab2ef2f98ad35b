"""Start-up helpers shared by the commands: settings from CLI flags, geofences, detector."""

from __future__ import annotations

import argparse
from typing import Any

from smartlock.core.detector import Detector
from smartlock.core.geofence import Geofences, default_geofence_dir
from smartlock.settings import Settings, load_settings


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Builds the settings from ``--config`` and ``--geofences`` plus explicit overrides."""
    if getattr(args, "geofences", None) is not None:
        overrides["geofence_dir"] = args.geofences
    return load_settings(getattr(args, "config", None), **overrides)


def load_geofences(settings: Settings) -> Geofences:
    return Geofences.load(settings.geofence_dir or default_geofence_dir())


def build_detector(settings: Settings, geofences: Geofences | None = None) -> Detector:
    """The detection core configured from the settings."""
    keys = {lock: key.get_secret_value() for lock, key in settings.signing.keys.items()}
    return Detector(settings.detection, geofences or load_geofences(settings), keys)
