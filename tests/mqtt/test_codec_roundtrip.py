"""Property-based round trips: decode(encode(p)) == p for every packet type and version."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.packets import MQTT_5, Connect, Packet, Properties, Publish
from tests.mqtt.codec_strategies import (
    ALLOWED,
    VERSIONS,
    T,
    packets,
    properties,
    publishes,
    strip_v5,
)


def decode_all(data: bytes, version: int, chunks: list[int] | None = None) -> list[Packet]:
    decoder = Decoder(version, role=None)
    if chunks is None:
        return decoder.feed(data)
    out: list[Packet] = []
    start = 0
    for cut in [*chunks, len(data)]:
        out.extend(decoder.feed(data[start:cut]))
        start = cut
    return out


@pytest.mark.parametrize("version", VERSIONS)
@given(data=st.data())
@settings(max_examples=300, deadline=None)
def test_round_trip(version: int, data: st.DataObject) -> None:
    packet = data.draw(packets(version))
    encoded = encode(packet, version)
    assert decode_all(encoded, version) == [packet]
    # Encoding is deterministic, so the decoded packet encodes to the same bytes.
    assert encode(decode_all(encoded, version)[0], version) == encoded


@pytest.mark.parametrize("version", VERSIONS)
@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_stream_split_anywhere(version: int, data: st.DataObject) -> None:
    sent = data.draw(st.lists(packets(version), min_size=1, max_size=6))
    stream = b"".join(encode(p, version) for p in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    assert decode_all(stream, version, cuts) == sent


@pytest.mark.parametrize("version", VERSIONS)
@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_stream_byte_by_byte(version: int, data: st.DataObject) -> None:
    sent = data.draw(st.lists(packets(version), min_size=1, max_size=3))
    stream = b"".join(encode(p, version) for p in sent)
    assert decode_all(stream, version, list(range(1, len(stream)))) == sent


@pytest.mark.parametrize("version", [3, 4])
@given(data=st.data())
@settings(max_examples=150, deadline=None)
def test_v311_encoding_ignores_v5_fields(version: int, data: st.DataObject) -> None:
    """A v5 packet encoded for 3.1.1 decodes as the packet without its v5-only fields."""
    packet = data.draw(packets(MQTT_5))
    try:
        encoded = encode(packet, version)
    except ValueError:
        # Some v5 packets have no 3.1.1 form at all (AUTH, v5-only reason codes,
        # an empty topic with an alias, a password without a user name).
        return
    # CONNECT is always encoded for its own protocol level, so it keeps everything.
    expected = packet if isinstance(packet, Connect) else strip_v5(packet, version)
    assert decode_all(encoded, version) == [expected]


@given(publish=publishes(MQTT_5), connack_props=properties(T.CONNACK))
@settings(max_examples=50, deadline=None)
def test_properties_outside_the_packet_type_are_not_encoded(
    publish: Publish, connack_props: Properties
) -> None:
    """Encoding reads only the properties the packet type can carry."""
    extra = connack_props  # CONNACK and PUBLISH properties are disjoint but for user properties
    for name in ALLOWED[T.PUBLISH]:
        setattr(extra, name, getattr(publish.properties, name))
    with_extra = Publish(
        publish.topic,
        publish.payload,
        publish.qos,
        publish.retain,
        publish.dup,
        publish.packet_id,
        extra,
    )
    assert encode(with_extra, MQTT_5) == encode(publish, MQTT_5)


def test_connect_sets_decoder_version() -> None:
    for level in VERSIONS:
        decoder = Decoder()
        assert decoder.version is None
        connect = Connect("dev", protocol_level=level)
        assert decoder.feed(encode(connect, 4)) == [connect]
        assert decoder.version == level


def test_second_connect_is_decoded_and_keeps_version() -> None:
    decoder = Decoder()
    first, second = Connect("a", protocol_level=5), Connect("b", protocol_level=4)
    assert decoder.feed(encode(first, 5) + encode(second, 5)) == [first, second]
    assert decoder.version == MQTT_5
