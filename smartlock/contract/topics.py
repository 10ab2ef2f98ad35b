"""The MQTT topics of CONTRACT section 2: one table, from which everything else derives.

Each :class:`Channel` knows its address template, its payload model and its direction seen
from the pipeline. Subscriptions (``+`` for each parameter), topic matching for inbound
messages, topic building for outputs and the AsyncAPI document all come from
:data:`CHANNELS`; no other module writes a topic string out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from smartlock.contract.models import (
    Alert,
    AlertResolution,
    DeclarationCancellation,
    GateArrival,
    GateVerdict,
    LockEvent,
    LockTelemetry,
    ManualOutcome,
    TransferRecord,
    TransitDeclaration,
    TripStatus,
    WriteOffNotice,
)

_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Channel:
    """One topic of the contract.

    Attributes:
        key: the AsyncAPI channel key.
        address: the topic template, e.g. ``locks/{lock_id}/telemetry``.
        model: the payload model.
        direction: ``receive`` (inbound to the pipeline) or ``send`` (its outputs).
        retained: published retained.
        description: one sentence for the AsyncAPI document.
    """

    key: str
    address: str
    model: type[BaseModel]
    direction: str
    retained: bool
    description: str
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = _PARAM.sub(
            r"([^/+#]+)", re.escape(self.address).replace(r"\{", "{").replace(r"\}", "}")
        )
        object.__setattr__(self, "_pattern", re.compile(f"^{regex}$"))

    @property
    def param(self) -> str | None:
        """The payload field the topic names (``lock_id``, ``gate_id``, ...), if any."""
        found = _PARAM.search(self.address)
        return found.group(1) if found else None

    @property
    def subscription(self) -> str:
        """The MQTT filter that covers every topic of this channel."""
        return _PARAM.sub("+", self.address)

    def topic(self, value: str | None = None) -> str:
        """The concrete topic, e.g. ``LOCK_TELEMETRY.topic("LK-01")``."""
        return (
            self.address
            if self.param is None
            else self.address.replace(f"{{{self.param}}}", str(value))
        )

    def match(self, topic: str) -> str | None | bool:
        """The parameter's value if ``topic`` is of this channel (True when it has none), else None."""
        m = self._pattern.match(topic)
        if m is None:
            return None
        return m.group(1) if self.param else True


DECLARATIONS = Channel(
    "declarations",
    "customs/declarations",
    TransitDeclaration,
    "receive",
    False,
    "Transit declarations, bound to a lock before departure.",
)
CANCELLATIONS = Channel(
    "cancellations",
    "customs/cancellations",
    DeclarationCancellation,
    "receive",
    False,
    "The intake withdraws a bound declaration before its lock is sealed (addition to the "
    "contract); a cancellation after sealing is dead-lettered.",
)
LOCK_TELEMETRY = Channel(
    "lockTelemetry",
    "locks/{lock_id}/telemetry",
    LockTelemetry,
    "receive",
    False,
    "Position, seal state and battery reported by a smart lock.",
)
LOCK_EVENTS = Channel(
    "lockEvents",
    "locks/{lock_id}/events",
    LockEvent,
    "receive",
    False,
    "Seal and battery events reported by a smart lock.",
)
GATE_ARRIVALS = Channel(
    "gateArrivals",
    "gates/{gate_id}/arrivals",
    GateArrival,
    "receive",
    False,
    "A truck arriving at a port gate, as read by the gate's camera and readers.",
)
RESOLUTIONS = Channel(
    "resolutions",
    "monitoring/resolutions/{operator}",
    AlertResolution,
    "receive",
    False,
    "An operator resolving an alert (CONTRACT v2): only that operator may publish here and the "
    "audit trail records it; a resolved red alert no longer blocks release.",
)
OUTCOMES = Channel(
    "manualOutcomes",
    "customs/outcomes/{officer}",
    ManualOutcome,
    "receive",
    False,
    "An officer's outcome of a hand inspection at a gate (addition to the contract): cleared "
    "releases and writes off, seized closes the trip without a write-off; both are audited.",
)
GATE_VERDICTS = Channel(
    "gateVerdicts",
    "gates/{gate_id}/verdicts",
    GateVerdict,
    "send",
    False,
    "Release or inspect, with every reason, within one second of an arrival.",
)
ALERTS = Channel(
    "alerts",
    "monitoring/alerts/{declaration_id}",
    Alert,
    "send",
    False,
    "Alerts of CONTRACT section 3; declaration_id UNDECLARED for locks no declaration binds.",
)
STATUS = Channel(
    "status",
    "monitoring/status/{declaration_id}",
    TripStatus,
    "send",
    True,
    "Trip status, retained; published when state, colour or open alerts change.",
)

TRANSFERS = Channel(
    "transfers",
    "customs/transfers/{destination_gate}",
    TransferRecord,
    "send",
    False,
    "The origin office approved and sealed a declaration; its record goes to the destination "
    "office (addition to the contract, published by the intake; only the gate's own identity "
    "may subscribe to its gate's topic).",
)
WRITEOFFS = Channel(
    "writeoffs",
    "customs/writeoffs/{origin_site}",
    WriteOffNotice,
    "send",
    False,
    "The destination wrote a container off; the notice goes back to the origin office "
    "(addition to the contract, published by the worker, QoS 1; the intake, the origin "
    "office's system, subscribes with a persistent session and writes the declaration off).",
)

#: Every topic of the contract, inbound first.
CHANNELS: tuple[Channel, ...] = (
    DECLARATIONS,
    CANCELLATIONS,
    LOCK_TELEMETRY,
    LOCK_EVENTS,
    GATE_ARRIVALS,
    RESOLUTIONS,
    OUTCOMES,
    GATE_VERDICTS,
    ALERTS,
    STATUS,
    TRANSFERS,
    WRITEOFFS,
)
INBOUND: tuple[Channel, ...] = tuple(c for c in CHANNELS if c.direction == "receive")
OUTBOUND: tuple[Channel, ...] = tuple(c for c in CHANNELS if c.direction == "send")

#: MQTT subscriptions that cover every inbound topic.
INBOUND_SUBSCRIPTIONS: list[str] = [c.subscription for c in INBOUND]
#: Everything under monitoring/ (what operators, observers and the console may read).
MONITORING_ALL = "monitoring/#"
#: What a monitoring-centre client subscribes to: statuses, alerts and verdicts.
MONITORING_SUBSCRIPTIONS: list[str] = [c.subscription for c in (STATUS, ALERTS, GATE_VERDICTS)]


def inbound_channel(topic: str) -> tuple[Channel, str | None]:
    """The inbound channel of ``topic`` and the value its parameter names (or None).

    Raises:
        KeyError: the topic is not an inbound topic of the contract.
    """
    for channel in INBOUND:
        found = channel.match(topic)
        if found is not None:
            return channel, (found if isinstance(found, str) else None)
    raise KeyError(topic)


def channel_of(topic: str) -> Channel | None:
    """The channel (inbound or outbound) a concrete topic belongs to, if any."""
    return next((c for c in CHANNELS if c.match(topic) is not None), None)


def alert_topic(declaration_id: str) -> str:
    return ALERTS.topic(declaration_id)


def status_topic(declaration_id: str) -> str:
    return STATUS.topic(declaration_id)


def resolution_topic(operator_id: str) -> str:
    return RESOLUTIONS.topic(operator_id)


def verdict_topic(gate_id: str) -> str:
    return GATE_VERDICTS.topic(gate_id)


def arrival_topic(gate_id: str) -> str:
    return GATE_ARRIVALS.topic(gate_id)


def lock_topic(lock_id: str, kind: str) -> str:
    """``locks/{lock_id}/telemetry`` or ``locks/{lock_id}/events`` (``kind`` names which)."""
    return {"telemetry": LOCK_TELEMETRY, "events": LOCK_EVENTS}[kind].topic(lock_id)


def is_resolution_topic(topic: str) -> bool:
    """True for an operator resolution's topic, ``monitoring/resolutions`` or below it."""
    root = RESOLUTIONS.address.split("/{")[0]
    return topic == root or topic.startswith(root + "/")
