"""The endpoint's shortcuts for outgoing PUBLISHes must produce the codec's bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otahub.mqtt.codec import encode
from otahub.mqtt.connection import _publish_head
from otahub.mqtt.packets import MQTT_3_1_1, MQTT_5, Publish

topics = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(["a", "bench/res/007", "a/+/b", "#", "x\x00y", "\ud800", "é/ü"]),
    st.just(""),
)


@given(
    topic=topics,
    payload=st.one_of(st.binary(max_size=300), st.sampled_from([b"x" * 16383, b"y" * 70000])),
    qos=st.integers(0, 3),
    retain=st.booleans(),
    dup=st.booleans(),
    pid=st.one_of(st.none(), st.integers(-1, 70000)),
    version=st.sampled_from([MQTT_3_1_1, MQTT_5]),
)
def test_publish_head_matches_codec(
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, pid: int | None, version: int
) -> None:
    head = _publish_head(topic, len(payload), qos, retain, dup, pid, version == MQTT_5)
    try:
        expected = encode(Publish(topic, payload, qos, retain, dup, pid), version)
    except ValueError:
        assert head is None  # the codec then raises as it always did
        return
    if head is not None:
        assert head + payload == expected


@pytest.mark.parametrize("length", [127, 128, 16383, 16384, 2_097_151, 2_097_152])
def test_publish_head_remaining_length_boundaries(length: int) -> None:
    topic = "t"
    payload = b"p" * (length - 3)  # 2-byte length prefix + 1-byte topic
    head = _publish_head(topic, len(payload), 0, False, False, None, False)
    assert head is not None
    assert head + payload == encode(Publish(topic, payload), MQTT_3_1_1)
