"""Packets checked against byte sequences worked out by hand from the MQTT specs.

Round trips alone could be consistently wrong in both directions; these pin
the wire format. Each case is encoded and compared, then decoded and compared.
"""

from __future__ import annotations

import pytest

from otahub.mqtt.codec import Decoder, encode
from otahub.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


CASES: list[tuple[str, int, Packet, bytes]] = [
    (
        "3.1.1 CONNECT with will, user name and password",
        4,
        Connect("abc", 4, True, 60, "u", b"p", Will("w", b"x", 1, True)),
        h(
            "10 1B"
            "0004 4D515454 04"  # protocol name "MQTT", level 4
            "EE"  # user, password, will retain, will QoS 1, will, clean session
            "003C"  # keep alive 60
            "0003 616263"  # client id "abc"
            "0001 77"  # will topic "w"
            "0001 78"  # will payload "x"
            "0001 75"  # user name "u"
            "0001 70"  # password "p"
        ),
    ),
    (
        "3.1 CONNECT",
        3,
        Connect("abc", 3, True, 60),
        h("10 11 0006 4D5149736470 03 02 003C 0003 616263"),
    ),
    (
        "5.0 CONNECT with properties, will properties and a password alone",
        5,
        Connect(
            "c",
            5,
            True,
            30,
            None,
            b"pw",
            Will(
                "t", b"bye", 0, False, Properties(payload_format_indicator=1, will_delay_interval=5)
            ),
            Properties(
                session_expiry_interval=3600, receive_maximum=20, user_properties=[("a", "b")]
            ),
        ),
        h(
            "10 31"
            "0004 4D515454 05 46 001E"  # MQTT, level 5, password+will+clean, keep alive 30
            "0F 11 00000E10 21 0014 26 0001 61 0001 62"  # session expiry, receive max, user prop
            "0001 63"  # client id "c"
            "07 01 01 18 00000005"  # will: payload format 1, will delay 5
            "0001 74"  # will topic "t"
            "0003 627965"  # will payload "bye"
            "0002 7077"  # password "pw"
        ),
    ),
    ("3.1.1 CONNACK, session present", 4, Connack(True, 0), h("20 02 01 00")),
    ("3.1.1 CONNACK, not authorized", 4, Connack(False, 5), h("20 02 00 05")),
    (
        "5.0 CONNACK with properties",
        5,
        Connack(
            True,
            0,
            Properties(
                assigned_client_identifier="id",
                receive_maximum=10,
                topic_alias_maximum=5,
                maximum_qos=1,
                retain_available=0,
            ),
        ),
        h("20 12 01 00 0F 12 0002 6964 21 000A 22 0005 24 01 25 00"),
    ),
    (
        "5.0 CONNACK refusal without properties",
        5,
        Connack(False, 0x87),
        h("20 03 00 87 00"),
    ),
    (
        "3.1.1 PUBLISH QoS 0 retained",
        4,
        Publish("a/b", b"hi", retain=True),
        h("31 07 0003 612F62 6869"),
    ),
    (
        "3.1.1 PUBLISH QoS 2 DUP",
        4,
        Publish("a/b", b"", qos=2, dup=True, packet_id=0x1234),
        h("3C 07 0003 612F62 1234"),
    ),
    (
        "3.1.1 PUBLISH with a two byte remaining length",
        4,
        Publish("t", bytes(200)),
        h("30 CB01 0001 74") + bytes(200),
    ),
    (
        "5.0 PUBLISH QoS 1 with properties",
        5,
        Publish(
            "a/b",
            b"hi",
            qos=1,
            packet_id=10,
            properties=Properties(
                payload_format_indicator=1,
                message_expiry_interval=3600,
                content_type="t",
                topic_alias=5,
                user_properties=[("k", "v")],
            ),
        ),
        h(
            "32 1F 0003 612F62 000A"
            "15"  # property length 21
            "01 01"  # payload format indicator
            "02 00000E10"  # message expiry interval 3600
            "03 0001 74"  # content type "t"
            "23 0005"  # topic alias 5
            "26 0001 6B 0001 76"  # user property k=v
            "6869"
        ),
    ),
    (
        "5.0 PUBLISH with an empty topic and a topic alias",
        5,
        Publish("", b"x", properties=Properties(topic_alias=1)),
        h("30 07 0000 03 23 0001 78"),
    ),
    (
        "5.0 PUBLISH with two subscription identifiers",
        5,
        Publish("t", properties=Properties(subscription_identifiers=[1, 200])),
        h("30 09 0001 74 05 0B 01 0B C801"),
    ),
    ("3.1.1 PUBACK", 4, Puback(1), h("40 02 0001")),
    ("3.1.1 PUBREC", 4, Pubrec(2), h("50 02 0002")),
    ("3.1.1 PUBREL", 4, Pubrel(3), h("62 02 0003")),
    ("3.1.1 PUBCOMP", 4, Pubcomp(4), h("70 02 0004")),
    ("5.0 PUBACK success, short form", 5, Puback(1), h("40 02 0001")),
    ("5.0 PUBACK reason only", 5, Puback(1, 0x10), h("40 03 0001 10")),
    (
        "5.0 PUBACK with reason string",
        5,
        Puback(1, 0, Properties(reason_string="ok")),
        h("40 09 0001 00 05 1F 0002 6F6B"),
    ),
    ("5.0 PUBREL not found", 5, Pubrel(7, 0x92), h("62 03 0007 92")),
    (
        "3.1.1 SUBSCRIBE",
        4,
        Subscribe(1, [Subscription("a/b", 1), Subscription("c/#", 2)]),
        h("82 0E 0001 0003 612F62 01 0003 632F23 02"),
    ),
    (
        "5.0 SUBSCRIBE with options and a subscription identifier",
        5,
        Subscribe(
            1,
            [Subscription("a/b", 1, no_local=True, retain_as_published=True, retain_handling=2)],
            Properties(subscription_identifiers=[5]),
        ),
        h("82 0B 0001 02 0B 05 0003 612F62 2D"),
    ),
    ("3.1.1 SUBACK", 4, Suback(1, [1, 0x80]), h("90 04 0001 01 80")),
    ("5.0 SUBACK", 5, Suback(1, [0, 0x8F]), h("90 05 0001 00 00 8F")),
    ("3.1.1 UNSUBSCRIBE", 4, Unsubscribe(2, ["a/b"]), h("A2 07 0002 0003 612F62")),
    ("5.0 UNSUBSCRIBE", 5, Unsubscribe(2, ["a/b"]), h("A2 08 0002 00 0003 612F62")),
    ("3.1.1 UNSUBACK", 4, Unsuback(2), h("B0 02 0002")),
    ("5.0 UNSUBACK", 5, Unsuback(2, [0x11]), h("B0 04 0002 00 11")),
    ("PINGREQ", 4, Pingreq(), h("C0 00")),
    ("PINGRESP", 5, Pingresp(), h("D0 00")),
    ("3.1.1 DISCONNECT", 4, Disconnect(), h("E0 00")),
    ("5.0 DISCONNECT normal, short form", 5, Disconnect(), h("E0 00")),
    ("5.0 DISCONNECT with will, reason only", 5, Disconnect(4), h("E0 01 04")),
    (
        "5.0 DISCONNECT server shutting down with reason string",
        5,
        Disconnect(0x8B, Properties(reason_string="bye")),
        h("E0 08 8B 06 1F 0003 627965"),
    ),
    ("5.0 AUTH success, short form", 5, Auth(), h("F0 00")),
    (
        "5.0 AUTH continue",
        5,
        Auth(0x18, Properties(authentication_method="SCRAM", authentication_data=b"\x01")),
        h("F0 0E 18 0C 15 0005 534352414D 16 0001 01"),
    ),
]


@pytest.mark.parametrize(
    ("version", "packet", "wire"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_encode_matches_spec_bytes(version: int, packet: Packet, wire: bytes) -> None:
    assert encode(packet, version) == wire


@pytest.mark.parametrize(
    ("version", "packet", "wire"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decode_spec_bytes(version: int, packet: Packet, wire: bytes) -> None:
    assert Decoder(version, role=None).feed(wire) == [packet]


@pytest.mark.parametrize(
    ("version", "wire", "packet"),
    [
        # Properties may come in any order.
        (
            5,
            h(
                "32 1F 0003 612F62 000A"
                "15 26 0001 6B 0001 76 23 0005 03 0001 74 02 00000E10 01 01"
                "6869"
            ),
            Publish(
                "a/b",
                b"hi",
                qos=1,
                packet_id=10,
                properties=Properties(
                    payload_format_indicator=1,
                    message_expiry_interval=3600,
                    content_type="t",
                    topic_alias=5,
                    user_properties=[("k", "v")],
                ),
            ),
        ),
        # Longer forms than the shortest are accepted too.
        (5, h("40 04 0001 00 00"), Puback(1)),
        (5, h("50 03 0001 00"), Pubrec(1)),
        (5, h("E0 02 00 00"), Disconnect()),
        (5, h("F0 01 00"), Auth()),
        # User properties keep their order and may repeat keys.
        (
            5,
            h("E0 10 00 0E 26 0001 6B 0001 31 26 0001 6B 0001 32"),
            Disconnect(0, Properties(user_properties=[("k", "1"), ("k", "2")])),
        ),
        # The spec's UTF-8 example (1.5.4): "A" followed by U+2A6D4.
        (4, h("30 09 0007 41F0AA9B94 2F61"), Publish("A\U0002a6d4/a")),
    ],
)
def test_decode_only(version: int, wire: bytes, packet: Packet) -> None:
    assert Decoder(version, role=None).feed(wire) == [packet]
