"""CONTRACT v2: the operator of a resolution is the one named in its topic, which only that
operator may publish on; a payload naming someone else is refused."""

from __future__ import annotations

import pytest

from smartlock.contract.codec import decode
from smartlock.contract.models import AlertResolution
from smartlock.contract.topics import INBOUND_SUBSCRIPTIONS, resolution_topic
from smartlock.errors import MessageError

RESOLUTION = {
    "alert_id": "al-1",
    "declaration_id": "DCL-1",
    "lock_id": "LK-1",
    "note": "police check, confirmed",
    "ts": "2026-11-24T03:00:00Z",
}


def test_the_operator_comes_from_the_topic() -> None:
    env = decode(resolution_topic("wang-li"), RESOLUTION)
    assert isinstance(env.message, AlertResolution) and env.message.operator == "wang-li"
    assert decode("monitoring/resolutions/wang-li", RESOLUTION | {"operator": "wang-li"})


def test_a_resolution_in_another_operators_name_is_refused() -> None:
    with pytest.raises(MessageError) as caught:
        decode("monitoring/resolutions/wang-li", RESOLUTION | {"operator": "chief"})
    assert caught.value.reason == "topic_mismatch"
    with pytest.raises(MessageError) as caught:
        decode("monitoring/resolutions", RESOLUTION | {"operator": "chief"})  # the v1 topic
    assert caught.value.reason == "unknown_topic"
    assert "monitoring/resolutions/+" in INBOUND_SUBSCRIPTIONS
