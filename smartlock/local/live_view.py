"""A live terminal view of the monitoring centre (rich): trips turn amber and red as alerts arrive.

It is an ordinary MQTT subscriber of ``monitoring/status/+``, ``monitoring/alerts/+`` and
``gates/+/verdicts``, exactly what a monitoring-centre client would subscribe to.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from smartlock.adapters.mqtt import Login, MqttClient, Received
from smartlock.contract.topics import ALERTS, MONITORING_SUBSCRIPTIONS, STATUS

#: Rows of each table; the titles say how many more there are.
TRIP_ROWS = 15
ALERT_ROWS = 12
COLOUR_STYLE = {"green": "green", "amber": "yellow", "red": "bold red"}


@dataclass
class ViewState:
    """What the view has seen so far (thread-safe updates from paho's thread)."""

    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ALERT_ROWS))
    alert_counts: Counter[str] = field(default_factory=Counter)
    alert_ids: set[str] = field(default_factory=set)
    verdicts: Counter[str] = field(default_factory=Counter)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    lock: threading.Lock = field(default_factory=threading.Lock)


class LiveView:
    """Subscribes to the monitoring topics and renders a rich renderable on demand.

    Args:
        publish_times: optional map (lock_id, ts) -> wall time the triggering message was
            published, filled by an in-process fleet, to measure publish-to-alert latency.
    """

    def __init__(
        self,
        host: str,
        port: int,
        publish_times: dict[tuple[str, str], float] | None = None,
        login: Login | None = None,
    ) -> None:
        self.state = ViewState()
        self.publish_times = publish_times if publish_times is not None else {}
        self.client = MqttClient(
            host, port, f"smartlock-view-{int(time.time() * 1000) % 100000}", login=login
        )

    def start(self) -> None:
        self.client.subscribe(MONITORING_SUBSCRIPTIONS, self._on_message)
        self.client.connect()

    def stop(self) -> None:
        self.client.disconnect()

    def _on_message(self, msg: Received) -> None:
        now = time.monotonic()
        payload = json.loads(msg.payload)
        s = self.state
        with s.lock:
            if STATUS.match(msg.topic):
                s.statuses[payload["lock_id"]] = payload
            elif ALERTS.match(msg.topic):
                if payload["alert_id"] in s.alert_ids:
                    return
                s.alert_ids.add(payload["alert_id"])
                s.alerts.appendleft(payload)
                s.alert_counts[payload["type"]] += 1
                sent = self.publish_times.get((payload["lock_id"], payload["ts"]))
                if sent is not None:
                    s.latencies_ms.append((now - sent) * 1000)
            else:
                s.verdicts[payload["verdict"]] += 1

    def latency_summary(self) -> tuple[int, float | None, float | None]:
        """(samples, median ms, p99 ms) of publish-to-alert latency."""
        with self.state.lock:
            values = sorted(self.state.latencies_ms)
        if not values:
            return 0, None, None
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        return len(values), statistics.median(values), p99

    def render(self, header: str = "") -> Group:
        s = self.state
        with s.lock:
            statuses = list(s.statuses.values())
            alerts = list(s.alerts)
            counts = Counter(st["colour"] for st in statuses)
            alert_counts = dict(s.alert_counts)
            verdicts = dict(s.verdicts)
        summary = Text()
        summary.append(f"trips {len(statuses)}   ")
        for colour in ("green", "amber", "red"):
            summary.append(f"{colour} {counts.get(colour, 0)}   ", style=COLOUR_STYLE[colour])
        shown_verdicts = ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) or "none yet"
        summary.append(f"gate verdicts: {shown_verdicts}   alerts {sum(alert_counts.values())}")
        n, p50, p99 = self.latency_summary()
        if n:
            summary.append(
                f"\npublish-to-alert latency: median {p50:.0f} ms, p99 {p99:.0f} ms ({n} alerts)"
            )
        needing = sorted(
            (st for st in statuses if st["colour"] != "green"),
            key=lambda st: (st["colour"] != "red", st["declaration_id"]),
        )
        flagged = needing[:TRIP_ROWS]
        more = (
            f" (first {len(flagged)} of {len(needing)}: the console shows all)"
            if len(needing) > len(flagged)
            else ""
        )
        trips = Table(title=f"Trips needing attention{more}", expand=True)
        for col in ("declaration", "lock", "state", "colour", "open alerts", "lat, lon"):
            trips.add_column(col)
        for st in flagged:
            pos = (
                f"{st.get('lat', 0):.4f}, {st.get('lon', 0):.4f}"
                if st.get("lat") is not None
                else ""
            )
            trips.add_row(
                st["declaration_id"],
                st["lock_id"],
                st["state"],
                Text(st["colour"], style=COLOUR_STYLE[st["colour"]]),
                str(len(st["open_alerts"])),
                pos,
            )
        total = sum(alert_counts.values())
        older = (
            f" (newest {len(alerts)} of {total}: the console shows all)"
            if total > len(alerts)
            else ""
        )
        feed = Table(title=f"Alert feed, newest first{older}", expand=True)
        for col in ("time (event)", "alert id", "type", "severity", "declaration", "lock"):
            feed.add_column(col)
        for a in alerts:
            style = {"red": "bold red", "amber": "yellow"}.get(a["severity"], "cyan")
            feed.add_row(
                a["ts"],
                a["alert_id"],
                Text(a["type"], style=style),
                a["severity"],
                a["declaration_id"],
                a["lock_id"],
            )
        return Group(Panel(summary, title=header or "smartlock monitoring centre"), trips, feed)
