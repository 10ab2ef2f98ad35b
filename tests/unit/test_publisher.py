"""Pure parts of the paced publisher: when each message is due, and the bytes it is sent as."""

from __future__ import annotations

import asyncio
import io
import socket
from collections import deque

import pytest

from smartlock.cli.commands.replay import TraceReader, parse_speed, summary_line
from smartlock.errors import ConfigError, InfrastructureError
from smartlock.simulators.publisher import (
    Pacer,
    PublishReport,
    _settle,
    due_times,
    encode,
    event_time,
    publish_paced,
    timed,
)
from smartlock.simulators.recorder import payload_of


def ts(seconds: int) -> float:
    return event_time({"ts": f"2026-11-22T08:{seconds // 60:02d}:{seconds % 60:02d}Z"})  # type: ignore[return-value]


def test_event_spacing_is_divided_by_speed_from_the_first_timed_message() -> None:
    assert due_times([ts(10), ts(12), ts(20)], speed=4) == [0.0, 0.5, 2.5]


def test_real_pace_keeps_the_spacing() -> None:
    assert due_times([ts(0), ts(1), ts(61)], speed=1) == [0.0, 1.0, 61.0]


def test_untimed_messages_go_right_after_the_previous_one() -> None:
    # A declaration (no ts) before the first fix, and one between two fixes.
    assert due_times([None, ts(0), None, ts(8)], speed=2) == [0.0, 0.0, 0.0, 4.0]


def test_a_late_message_does_not_move_the_clock_back() -> None:
    assert due_times([ts(0), ts(10), ts(4), ts(12)], speed=1) == [0.0, 10.0, 10.0, 12.0]


def test_max_speed_makes_everything_due_at_once() -> None:
    assert due_times([ts(0), ts(100), None], speed=None) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("speed", [0, -1])
def test_speed_must_be_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(speed)


def test_event_time_reads_rfc3339_utc_and_ignores_anything_else() -> None:
    assert event_time({"ts": "1970-01-01T00:01:00Z"}) == 60.0
    assert event_time({"ts": "1970-01-01T01:01:00+01:00"}) == 60.0
    assert event_time({"ts": "1970-01-01T00:01:00"}) is None  # no zone: not RFC 3339
    assert event_time({"ts": "yesterday"}) is None
    assert event_time({"ts": 60}) is None
    assert event_time({"departure_ts": "1970-01-01T00:01:00Z"}) is None
    assert event_time('{"ts": "1970-01-01T00:01:00Z"}') is None  # raw text is not parsed


def test_timed_takes_ts_from_the_payload_unless_given() -> None:
    payload = {"ts": "1970-01-01T00:01:00Z"}
    assert list(timed([("a", payload), (5.0, "b", payload)])) == [
        (60.0, "a", payload),
        (5.0, "b", payload),
    ]


def test_object_payloads_are_compact_utf8_json() -> None:
    assert encode({"plate": "浙G08345", "n": [1, 2]}) == '{"plate":"浙G08345","n":[1,2]}'.encode()


def test_text_payloads_are_sent_as_the_same_bytes() -> None:
    raw = '{"lock_id": "LK-1", "seq": '  # truncated JSON, as a broken lock would send it
    assert encode(raw) == raw.encode("utf-8")
    assert payload_of(encode(raw)) == raw


def test_recorded_payloads_round_trip_through_encode() -> None:
    for payload in (
        {"lock_id": "LK-1", "plate": "浙B88888"},
        "not json",
        "[1,2]",
        '"a string"',
        "42",
    ):
        assert payload_of(encode(payload)) == payload


def test_rate_is_acknowledged_messages_per_second() -> None:
    assert PublishReport(sent=10, acked=8, seconds=2.0).rate == 4.0
    assert PublishReport().rate == 0.0


def test_trace_reader_skips_malformed_lines_with_their_number() -> None:
    lines = [
        '{"topic":"a","payload":{"ts":"x"}}\n',
        "\n",
        "not json\n",
        '{"topic":"b"}\n',
        '{"topic":"c","payload":"raw text"}\n',
        '{"topic":"d","payload":[1, 2]}\n',
    ]
    err = io.StringIO()
    reader = TraceReader(lines, err)
    assert list(reader) == [("a", {"ts": "x"}), ("c", "raw text"), ("d", "[1, 2]")]
    assert reader.malformed == 2
    assert [line.split(":")[0] for line in err.getvalue().splitlines()] == ["line 3", "line 4"]


def test_parse_speed() -> None:
    assert parse_speed("max") is None
    assert parse_speed("2.5") == 2.5
    for bad in ("0", "-1", "fast", "nan", "inf"):
        with pytest.raises(ConfigError):
            parse_speed(bad)


def test_summary_line_counts_sent_and_acknowledged() -> None:
    line = summary_line(PublishReport(sent=100, acked=99, seconds=2.0), malformed=1)
    assert (
        line
        == "replayed 100 messages: 100 sent, 99 acknowledged in 2.0 s (50 msg/s), 1 malformed lines skipped"
    )


class FakeInfo:
    """Stands in for paho's MQTTMessageInfo: acknowledged or not."""

    def __init__(self, mid: int, published: bool) -> None:
        self.mid, self.published = mid, published

    def is_published(self) -> bool:
        return self.published


class FakeClient:
    host, port = "broker.test", 1883

    def raise_if_failed(self) -> None:
        pass

    def raise_if_refused(self, infos: object) -> None:
        pass


def test_settle_counts_acknowledged_messages_from_the_front_only() -> None:
    pending = deque([FakeInfo(1, True), FakeInfo(2, True), FakeInfo(3, False), FakeInfo(4, True)])
    acked = asyncio.run(_settle(pending, keep=10, timeout=1.0, client=FakeClient()))  # type: ignore[arg-type]
    assert acked == 2
    assert [i.mid for i in pending] == [3, 4]


def test_a_message_never_acknowledged_is_an_error_that_names_it() -> None:
    pending = deque([FakeInfo(7, False)])
    with pytest.raises(
        InfrastructureError, match=r"broker.test:1883 did not acknowledge message 7 within"
    ):
        asyncio.run(_settle(pending, keep=0, timeout=0.05, client=FakeClient()))  # type: ignore[arg-type]


def test_an_unreachable_broker_is_an_infrastructure_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InfrastructureError, match="cannot reach MQTT broker"):
        asyncio.run(
            publish_paced([("t", {})], "127.0.0.1", port, speed=None, client_id="unit-unreachable")
        )
