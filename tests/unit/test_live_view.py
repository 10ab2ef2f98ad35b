"""The terminal view (the demo's fallback): alert ids shown, no raw dicts, no silent caps."""

from __future__ import annotations

from rich.console import Console

from smartlock.local.live_view import ALERT_ROWS, TRIP_ROWS, LiveView


def test_the_terminal_view_names_alerts_and_says_what_it_leaves_out() -> None:
    view = LiveView("127.0.0.1", 1, {})  # never connected: only rendering is tested
    s = view.state
    for n in range(TRIP_ROWS + 5):
        s.statuses[f"L{n}"] = {
            "declaration_id": f"D{n}",
            "lock_id": f"L{n}",
            "state": "deviating",
            "colour": "red",
            "open_alerts": ["a"],
            "lat": 29.5,
            "lon": 120.5,
        }
    for n in range(ALERT_ROWS + 3):
        alert = {
            "alert_id": f"al-{n:020d}",
            "type": "route_deviation",
            "severity": "red",
            "ts": "2026-11-22T08:00:00Z",
            "declaration_id": f"D{n}",
            "lock_id": f"L{n}",
        }
        s.alerts.appendleft(alert)
        s.alert_counts[alert["type"]] += 1
    s.verdicts.update({"release": 4, "inspect": 1})
    out = Console(record=True, width=250)
    out.print(view.render("demo"))
    text = out.export_text()
    assert "gate verdicts: inspect 1, release 4" in text and "{" not in text
    assert f"first {TRIP_ROWS} of {TRIP_ROWS + 5}" in text
    assert f"newest {ALERT_ROWS} of {ALERT_ROWS + 3}" in text
    assert f"al-{ALERT_ROWS + 2:020d}" in text  # the newest alert, with its id
