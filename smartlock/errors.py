"""Every error smartlock raises derives from :class:`SmartlockError`.

Each subclass names one concern and carries structured fields as attributes, so a
caller can log or test them without parsing the message. Messages say what to do.
"""

from __future__ import annotations


class SmartlockError(Exception):
    """Base of all smartlock errors."""


class ConfigError(SmartlockError):
    """A setting or configuration file is invalid."""


class GeofenceError(SmartlockError):
    """A geofence file breaks a rule of CONTRACT section 1.

    Attributes:
        file: path of the offending file.
        feature: id (or index) of the offending feature, or None for file-level problems.
        rule: short name of the rule that was broken.
    """

    def __init__(self, file: str, feature: str | None, rule: str, detail: str) -> None:
        self.file = file
        self.feature = feature
        self.rule = rule
        self.detail = detail
        where = f"{file}" + (f", feature {feature}" if feature is not None else "")
        super().__init__(f"{where}: rule '{rule}' broken: {detail}")


class MessageError(SmartlockError):
    """An inbound message cannot be accepted (bad JSON, schema, signature, sequence).

    Attributes:
        topic: MQTT topic the message came from.
        reason: short machine-readable reason (e.g. ``invalid_payload``, ``bad_signature``).
        detail: human-readable explanation.
    """

    def __init__(self, topic: str, reason: str, detail: str) -> None:
        self.topic = topic
        self.reason = reason
        self.detail = detail
        super().__init__(f"{topic}: {reason}: {detail}")


class InfrastructureError(SmartlockError):
    """A server the pipeline needs is missing, not installed, or not answering."""
