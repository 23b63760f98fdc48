"""Publish creates its properties on demand; it still compares and prints like the rest."""

from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.packets import MQTT_3_1_1, MQTT_5, Properties, Publish


def test_decoded_publish_without_properties_has_none_until_asked() -> None:
    for version in (MQTT_3_1_1, MQTT_5):
        (packet,) = Decoder(version).feed(encode(Publish("a/b", b"x"), version))
        assert isinstance(packet, Publish)
        assert packet.given_properties is None
        assert packet.properties == Properties()
        assert packet.given_properties is packet.properties  # created once, then kept


def test_decoded_v5_properties_are_kept() -> None:
    sent = Publish("a/b", b"x", 1, packet_id=7, properties=Properties(content_type="text/plain"))
    (packet,) = Decoder(MQTT_5).feed(encode(sent, MQTT_5))
    assert isinstance(packet, Publish)
    assert packet.given_properties == Properties(content_type="text/plain")
    assert packet == sent


def test_equality_treats_absent_and_empty_properties_alike() -> None:
    assert Publish("a", b"1") == Publish("a", b"1", properties=Properties())
    assert Publish("a", b"1") != Publish("a", b"1", properties=Properties(topic_alias=2))
    assert Publish("a", b"1") != Publish("a", b"2")
    assert Publish("a", b"1", 1, packet_id=1) != Publish("a", b"1", 1, packet_id=2)
    assert Publish("a") != "a"


def test_properties_can_be_replaced_and_changed() -> None:
    packet = Publish("a")
    packet.properties.user_properties.append(("k", "v"))
    assert packet.given_properties == Properties(user_properties=[("k", "v")])
    packet.properties = Properties(topic_alias=3)
    assert packet.properties.topic_alias == 3
    assert "topic_alias=3" in repr(packet)
