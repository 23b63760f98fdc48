"""Every decoding rule of the codec, each with the reason code it must report."""

from __future__ import annotations

import pytest

from otahub.mqtt.codec import Decoder, Role, encode
from otahub.mqtt.errors import MQTTError
from otahub.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Properties,
    Puback,
    Publish,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from otahub.mqtt.reason_codes import ReasonCode as RC

MALFORMED = RC.MALFORMED_PACKET
PROTOCOL = RC.PROTOCOL_ERROR
UNSUPPORTED = RC.UNSUPPORTED_PROTOCOL_VERSION

# (description, decoder version, decoder role, wire bytes in hex, expected reason code)
DECODE_ERRORS: list[tuple[str, int | None, Role | None, str, int]] = [
    # -- fixed header
    ("packet type 0", 4, "server", "00 00", MALFORMED),
    ("packet type 0, client side", 5, "client", "00 00", MALFORMED),
    ("PUBREL flags 0000", 4, "server", "60 02 0001", MALFORMED),
    ("SUBSCRIBE flags 0000", 4, "server", "80 06 0001 0001 61 00", MALFORMED),
    ("UNSUBSCRIBE flags 0011", 4, "server", "A3 05 0001 0001 61", MALFORMED),
    ("PUBACK flags 0001", 4, "server", "41 02 0001", MALFORMED),
    ("PINGREQ flags 0010", 4, "server", "C2 00", MALFORMED),
    ("DISCONNECT flags 0001", 5, "server", "E1 00", MALFORMED),
    ("CONNECT flags 0001", None, "server", "11 00", MALFORMED),
    ("CONNACK flags 1000", 4, "client", "28 02 00 00", MALFORMED),
    ("PUBLISH QoS 3", 4, "server", "36 05 0001 61 0001", MALFORMED),
    ("PUBLISH DUP with QoS 0", 4, "server", "38 03 0001 61", MALFORMED),
    # -- who may send what, and CONNECT first
    ("CONNACK to a server", 4, "server", "20 02 00 00", PROTOCOL),
    ("SUBACK to a server", 4, "server", "90 03 0001 00", PROTOCOL),
    ("UNSUBACK to a server", 5, "server", "B0 04 0001 00 00", PROTOCOL),
    ("PINGRESP to a server", 4, "server", "D0 00", PROTOCOL),
    ("CONNECT to a client", 4, "client", "10 0D 0004 4D515454 04 02 003C 0001 61", PROTOCOL),
    ("SUBSCRIBE to a client", 4, "client", "82 06 0001 0001 61 00", PROTOCOL),
    ("UNSUBSCRIBE to a client", 4, "client", "A2 05 0001 0001 61", PROTOCOL),
    ("PINGREQ to a client", 4, "client", "C0 00", PROTOCOL),
    ("DISCONNECT to a 3.1.1 client", 4, "client", "E0 00", PROTOCOL),
    ("AUTH in 3.1.1", 4, "server", "F0 00", PROTOCOL),
    ("AUTH to a 3.1.1 client", 4, "client", "F0 00", PROTOCOL),
    ("PINGREQ before CONNECT", None, "server", "C0 00", PROTOCOL),
    ("PUBLISH before CONNECT", None, "server", "30 03 0001 61", PROTOCOL),
    ("CONNACK before CONNECT, no role", None, None, "20 02 00 00", PROTOCOL),
    # -- remaining length
    ("remaining length of 5 bytes", 4, "server", "30 FF FF FF FF 7F", MALFORMED),
    ("remaining length of 5 bytes, unfinished", 4, "server", "30 FF FF FF FF", MALFORMED),
    ("remaining length not minimal", 4, "server", "C0 80 00", MALFORMED),
    ("PUBACK longer than 2 in 3.1.1", 4, "server", "40 03 0001 00", MALFORMED),
    ("PUBACK shorter than 2", 4, "server", "40 01 00", MALFORMED),
    ("PUBREL longer than 2 in 3.1.1", 4, "server", "62 03 0001 00", MALFORMED),
    ("PINGREQ with a body", 4, "server", "C0 01 00", MALFORMED),
    ("PINGRESP with a body", 4, "client", "D0 01 00", MALFORMED),
    ("3.1.1 DISCONNECT with a body", 4, "server", "E0 01 00", MALFORMED),
    ("3.1.1 UNSUBACK longer than 2", 4, "client", "B0 03 0001 00", MALFORMED),
    ("3.1.1 CONNACK longer than 2", 4, "client", "20 03 00 00 00", MALFORMED),
    ("3.1.1 CONNACK shorter than 2", 4, "client", "20 01 00", MALFORMED),
    ("PUBLISH topic runs past the packet", 4, "server", "30 03 0005 61", MALFORMED),
    ("PUBLISH without topic length", 4, "server", "30 01 00", MALFORMED),
    ("PUBLISH QoS 1 without packet id", 4, "server", "32 03 0001 61", MALFORMED),
    ("SUBSCRIBE without options byte", 4, "server", "82 06 0001 0002 6162", MALFORMED),
    (
        "CONNECT with trailing bytes",
        None,
        "server",
        "10 0E 0004 4D515454 04 02 003C 0001 61 FF",
        MALFORMED,
    ),
    ("CONNECT without client id", None, "server", "10 0A 0004 4D515454 04 02 003C", MALFORMED),
    ("CONNECT without protocol level", None, "server", "10 06 0004 4D515454", MALFORMED),
    ("v5 PUBACK with trailing bytes", 5, "server", "40 05 0001 00 00 FF", MALFORMED),
    ("v5 AUTH with trailing bytes", 5, "server", "F0 03 00 00 FF", MALFORMED),
    ("v5 DISCONNECT properties overrun", 5, "server", "E0 02 00 05", MALFORMED),
    # -- packet identifiers
    ("PUBLISH QoS 1 packet id 0", 4, "server", "32 05 0001 61 0000", PROTOCOL),
    ("PUBLISH QoS 2 packet id 0", 5, "server", "34 06 0001 61 0000 00", PROTOCOL),
    ("PUBACK packet id 0", 4, "server", "40 02 0000", PROTOCOL),
    ("PUBREC packet id 0", 5, "server", "50 02 0000", PROTOCOL),
    ("PUBREL packet id 0", 4, "server", "62 02 0000", PROTOCOL),
    ("PUBCOMP packet id 0", 4, "client", "70 02 0000", PROTOCOL),
    ("SUBSCRIBE packet id 0", 4, "server", "82 06 0000 0001 61 00", PROTOCOL),
    ("UNSUBSCRIBE packet id 0", 4, "server", "A2 05 0000 0001 61", PROTOCOL),
    ("SUBACK packet id 0", 4, "client", "90 03 0000 00", PROTOCOL),
    ("UNSUBACK packet id 0", 4, "client", "B0 02 0000", PROTOCOL),
    # -- UTF-8 strings (spec 1.5.4)
    ("string with an invalid byte", 4, "server", "30 04 0002 61FF", MALFORMED),
    ("string with a UTF-16 surrogate", 4, "server", "30 05 0003 EDA080", MALFORMED),
    ("string with an overlong encoding", 4, "server", "30 04 0002 C0AF", MALFORMED),
    ("string beyond U+10FFFF", 4, "server", "30 06 0004 F4908080", MALFORMED),
    ("string with a cut sequence", 4, "server", "30 03 0001 E2", MALFORMED),
    ("string with U+0000", 4, "server", "30 04 0002 6100", MALFORMED),
    ("client id with U+0000", None, "server", "10 0D 0004 4D515454 04 02 003C 0001 00", MALFORMED),
    # -- topic names
    ("PUBLISH topic with +", 4, "server", "30 05 0003 612B62", RC.TOPIC_NAME_INVALID),
    ("PUBLISH topic with #", 5, "server", "30 04 0001 23 00", RC.TOPIC_NAME_INVALID),
    ("3.1.1 PUBLISH empty topic", 4, "server", "30 02 0000", MALFORMED),
    ("v5 PUBLISH empty topic without alias", 5, "server", "30 03 0000 00", PROTOCOL),
    # -- CONNECT
    ("protocol name MQTX", None, "server", "10 0D 0004 4D515458 04 02 003C 0001 61", UNSUPPORTED),
    ("protocol level 6", None, "server", "10 0D 0004 4D515454 06 02 003C 0001 61", UNSUPPORTED),
    ("protocol level 0", None, "server", "10 0D 0004 4D515454 00 02 003C 0001 61", UNSUPPORTED),
    ("MQTT at level 3", None, "server", "10 0D 0004 4D515454 03 02 003C 0001 61", UNSUPPORTED),
    (
        "MQIsdp at level 4",
        None,
        "server",
        "10 0F 0006 4D5149736470 04 02 003C 0001 61",
        UNSUPPORTED,
    ),
    ("reserved connect flag", None, "server", "10 0D 0004 4D515454 04 03 003C 0001 61", MALFORMED),
    ("will QoS without will", None, "server", "10 0D 0004 4D515454 04 0A 003C 0001 61", MALFORMED),
    (
        "will retain without will",
        None,
        "server",
        "10 0D 0004 4D515454 04 22 003C 0001 61",
        MALFORMED,
    ),
    ("will QoS 3", None, "server", "10 0D 0004 4D515454 04 1E 003C 0001 61", MALFORMED),
    (
        "3.1.1 password without user",
        None,
        "server",
        "10 0D 0004 4D515454 04 42 003C 0001 61",
        MALFORMED,
    ),
    (
        "3.1 password without user",
        None,
        "server",
        "10 0F 0006 4D5149736470 03 42 003C 0001 61",
        MALFORMED,
    ),
    (
        "will topic with a wildcard",
        None,
        "server",
        "10 15 0004 4D515454 04 06 003C 0001 61 0003 612F23 0001 78",
        RC.TOPIC_NAME_INVALID,
    ),
    (
        "empty will topic",
        None,
        "server",
        "10 12 0004 4D515454 04 06 003C 0001 61 0000 0001 78",
        RC.TOPIC_NAME_INVALID,
    ),
    (
        "authentication data without method",
        None,
        "server",
        "10 12 0004 4D515454 05 02 003C 04 16 0001 01 0001 61",
        PROTOCOL,
    ),
    # -- CONNACK
    ("3.1.1 CONNACK reserved flag bits", 4, "client", "20 02 02 00", MALFORMED),
    ("3.1.1 CONNACK return code 6", 4, "client", "20 02 00 06", MALFORMED),
    ("3.1.1 CONNACK session present on refusal", 4, "client", "20 02 01 05", PROTOCOL),
    ("v5 CONNACK reserved flag bits", 5, "client", "20 03 80 00 00", MALFORMED),
    ("v5 CONNACK reason 0x01", 5, "client", "20 03 00 01 00", MALFORMED),
    ("v5 CONNACK session present on refusal", 5, "client", "20 03 01 80 00", PROTOCOL),
    # -- SUBSCRIBE and UNSUBSCRIBE
    ("3.1.1 SUBSCRIBE without entries", 4, "server", "82 02 0001", PROTOCOL),
    ("v5 SUBSCRIBE without entries", 5, "server", "82 03 0001 00", PROTOCOL),
    ("3.1.1 subscription reserved bits", 4, "server", "82 06 0001 0001 61 04", MALFORMED),
    ("3.1.1 subscription QoS 3", 4, "server", "82 06 0001 0001 61 03", MALFORMED),
    ("v5 subscription reserved bits", 5, "server", "82 07 0001 00 0001 61 40", MALFORMED),
    ("v5 subscription QoS 3", 5, "server", "82 07 0001 00 0001 61 03", PROTOCOL),
    ("v5 retain handling 3", 5, "server", "82 07 0001 00 0001 61 30", PROTOCOL),
    (
        "v5 no local on a shared subscription",
        5,
        "server",
        "82 10 0001 00 000A 2473686172652F672F61 04",
        PROTOCOL,
    ),
    ("3.1.1 UNSUBSCRIBE without entries", 4, "server", "A2 02 0001", PROTOCOL),
    ("v5 UNSUBSCRIBE without entries", 5, "server", "A2 03 0001 00", PROTOCOL),
    # -- SUBACK, UNSUBACK and reason codes
    ("3.1.1 SUBACK without codes", 4, "client", "90 02 0001", PROTOCOL),
    ("3.1.1 SUBACK code 3", 4, "client", "90 03 0001 03", MALFORMED),
    ("v5 SUBACK reason 0x10", 5, "client", "90 04 0001 00 10", MALFORMED),
    ("v5 UNSUBACK without codes", 5, "client", "B0 03 0001 00", PROTOCOL),
    ("v5 UNSUBACK reason 0x01", 5, "client", "B0 04 0001 00 01", MALFORMED),
    ("v5 PUBACK reason 0x92", 5, "server", "40 03 0001 92", MALFORMED),
    ("v5 PUBREC reason 0x04", 5, "server", "50 03 0001 04", MALFORMED),
    ("v5 PUBREL reason 0x10", 5, "server", "62 03 0001 10", MALFORMED),
    ("v5 PUBCOMP reason 0x80", 5, "server", "70 03 0001 80", MALFORMED),
    ("v5 DISCONNECT reason 0x01", 5, "server", "E0 01 01", MALFORMED),
    ("v5 DISCONNECT reason 0x91", 5, "server", "E0 01 91", MALFORMED),
    ("v5 DISCONNECT reason 0x92", 5, "server", "E0 01 92", MALFORMED),
    ("v5 AUTH reason 0x04", 5, "server", "F0 01 04", MALFORMED),
    # -- properties (spec 2.2.2)
    ("unknown property 0x04", 5, "server", "30 06 0001 74 02 04 00", MALFORMED),
    ("property id of 5 bytes", 5, "server", "30 09 0001 74 05 FFFFFFFF7F", MALFORMED),
    ("reason string in PUBLISH", 5, "server", "30 08 0001 74 04 1F 0001 61", MALFORMED),
    ("session expiry in PUBLISH", 5, "server", "30 09 0001 74 05 11 00000001", MALFORMED),
    ("will delay in PUBLISH", 5, "server", "30 09 0001 74 05 18 00000001", MALFORMED),
    (
        "topic alias in CONNECT",
        None,
        "server",
        "10 11 0004 4D515454 05 02 003C 03 23 0001 0001 61",
        MALFORMED,
    ),
    (
        "reason string in will properties",
        None,
        "server",
        "10 18 0004 4D515454 05 06 003C 00 0001 61 04 1F 0001 61 0001 74 0000",
        MALFORMED,
    ),
    ("reason string in UNSUBSCRIBE", 5, "server", "A2 0A 0001 04 1F 0001 61 0001 61", MALFORMED),
    (
        "message expiry twice",
        5,
        "server",
        "30 0E 0001 74 0A 02 00000001 02 00000002",
        PROTOCOL,
    ),
    ("content type twice", 5, "server", "30 0C 0001 74 08 03 0001 61 03 0001 62", PROTOCOL),
    ("reason string twice", 5, "server", "40 0C 0001 00 08 1F 0001 61 1F 0001 62", PROTOCOL),
    (
        "subscription identifier twice in SUBSCRIBE",
        5,
        "server",
        "82 0B 0001 04 0B 01 0B 02 0001 61 00",
        PROTOCOL,
    ),
    (
        "subscription identifier 0 in SUBSCRIBE",
        5,
        "server",
        "82 09 0001 02 0B 00 0001 61 00",
        PROTOCOL,
    ),
    ("subscription identifier 0 in PUBLISH", 5, "client", "30 06 0001 74 02 0B 00", PROTOCOL),
    ("subscription identifier from a client", 5, "server", "30 06 0001 74 02 0B 01", PROTOCOL),
    ("payload format indicator 2", 5, "server", "30 06 0001 74 02 01 02", PROTOCOL),
    ("topic alias 0", 5, "server", "30 07 0001 74 03 23 0000", RC.TOPIC_ALIAS_INVALID),
    ("response topic with a wildcard", 5, "server", "30 09 0001 74 05 08 0002 612B", PROTOCOL),
    ("empty response topic", 5, "server", "30 07 0001 74 03 08 0000", PROTOCOL),
    ("maximum QoS 2", 5, "client", "20 05 00 00 02 24 02", PROTOCOL),
    ("retain available 2", 5, "client", "20 05 00 00 02 25 02", PROTOCOL),
    ("wildcard subscription available 5", 5, "client", "20 05 00 00 02 28 05", PROTOCOL),
    ("receive maximum 0", 5, "client", "20 06 00 00 03 21 0000", PROTOCOL),
    ("maximum packet size 0", 5, "client", "20 08 00 00 05 27 00000000", PROTOCOL),
    (
        "request problem information 2",
        None,
        "server",
        "10 10 0004 4D515454 05 02 003C 02 17 02 0001 61",
        PROTOCOL,
    ),
    ("session expiry in a server DISCONNECT", 5, "client", "E0 07 00 05 11 00000001", PROTOCOL),
    ("property length past the packet", 5, "server", "30 05 0001 74 05 01", MALFORMED),
    (
        "property value past the property length",
        5,
        "server",
        "30 09 0001 74 03 03 0005 6162",
        MALFORMED,
    ),
    ("user property with invalid UTF-8", 5, "server", "E0 09 00 07 26 0001 FF 0001 61", MALFORMED),
    ("user property without value", 5, "server", "E0 06 00 04 26 0001 61", MALFORMED),
]


def decode_error(wire: bytes, version: int | None, role: Role | None) -> MQTTError:
    with pytest.raises(MQTTError) as info:
        Decoder(version, role=role).feed(wire)
    return info.value


@pytest.mark.parametrize(
    ("version", "role", "wire", "reason"),
    [case[1:] for case in DECODE_ERRORS],
    ids=[case[0] for case in DECODE_ERRORS],
)
def test_decode_error(version: int | None, role: Role | None, wire: str, reason: int) -> None:
    assert decode_error(bytes.fromhex(wire), version, role).reason_code == reason


# Close relatives of the errors above that are valid, so the rules are not too broad.
DECODE_OK: list[tuple[str, int | None, Role | None, str, Packet]] = [
    (
        "v5 password without user",
        None,
        "server",
        "10 12 0004 4D515454 05 42 003C 00 0001 61 0002 7077",
        Connect("a", 5, True, 60, None, b"pw"),
    ),
    ("DISCONNECT to a v5 client", 5, "client", "E0 00", Disconnect()),
    ("AUTH to a v5 client", 5, "client", "F0 00", Auth()),
    (
        "v5 PUBLISH empty topic with alias",
        5,
        "server",
        "30 06 0000 03 23 0001",
        Publish("", properties=Properties(topic_alias=1)),
    ),
    (
        "subscription identifiers to a client",
        5,
        "client",
        "30 08 0001 74 04 0B 01 0B 02",
        Publish("t", properties=Properties(subscription_identifiers=[1, 2])),
    ),
    (
        "session expiry in a client DISCONNECT",
        5,
        "server",
        "E0 07 00 05 11 00000001",
        Disconnect(0, Properties(session_expiry_interval=1)),
    ),
    (
        "no local on a normal subscription",
        5,
        "server",
        "82 07 0001 00 0001 61 04",
        Subscribe(1, [Subscription("a", 0, no_local=True)]),
    ),
    (
        "retain handling 2",
        5,
        "server",
        "82 07 0001 00 0001 61 20",
        Subscribe(1, [Subscription("a", 0, retain_handling=2)]),
    ),
    ("3.1.1 SUBACK failure", 4, "client", "90 03 0001 80", Suback(1, [0x80])),
    ("v5 UNSUBACK reasons", 5, "client", "B0 05 0001 00 00 11", Unsuback(1, [0, 0x11])),
    ("3.1 CONNACK", 3, "client", "20 02 00 02", Connack(False, 2)),
    ("3.1 CONNACK ignores its unused first byte", 3, "client", "20 02 FF 00", Connack(False, 0)),
]


@pytest.mark.parametrize(
    ("version", "role", "wire", "packet"),
    [case[1:] for case in DECODE_OK],
    ids=[case[0] for case in DECODE_OK],
)
def test_decode_ok(version: int | None, role: Role | None, wire: str, packet: Packet) -> None:
    assert Decoder(version, role=role).feed(bytes.fromhex(wire)) == [packet]


# -- decoder behaviour around errors and CONNECT


def test_bad_first_byte_is_rejected_before_the_rest_arrives() -> None:
    assert decode_error(b"\x36", 4, "server").reason_code == MALFORMED
    assert decode_error(b"\x20", 4, "server").reason_code == PROTOCOL


def test_packet_too_large_is_rejected_from_the_fixed_header() -> None:
    # Total size: 1 type byte + 1 length byte + remaining length.
    decoder = Decoder(4, max_packet_size=100)
    assert decoder.feed(encode(Publish("t", bytes(95)), 4)) == [Publish("t", bytes(95))]
    with pytest.raises(MQTTError) as info:
        decoder.feed(b"\x30\x63")  # 2 + 99 = 101 bytes, none of the body sent yet
    assert info.value.reason_code == RC.PACKET_TOO_LARGE


def test_packet_too_large_with_the_header_split_across_feeds() -> None:
    decoder = Decoder(4, max_packet_size=1000)
    assert decoder.feed(b"\x30") == []
    assert decoder.feed(b"\xff") == []
    with pytest.raises(MQTTError) as info:
        decoder.feed(b"\x7f")
    assert info.value.reason_code == RC.PACKET_TOO_LARGE


def test_packet_too_large_after_a_complete_packet_in_the_same_feed() -> None:
    decoder = Decoder(4, max_packet_size=10)
    with pytest.raises(MQTTError) as info:
        decoder.feed(b"\xc0\x00\x30\x0a")
    assert info.value.reason_code == RC.PACKET_TOO_LARGE
    assert info.value.packets == [Pingreq()]


def test_error_keeps_earlier_packets_and_sticks() -> None:
    decoder = Decoder(4)
    with pytest.raises(MQTTError) as info:
        decoder.feed(b"\xc0\x00\xc0\x00\x36")
    assert info.value.packets == [Pingreq(), Pingreq()]
    with pytest.raises(MQTTError) as again:
        decoder.feed(b"\xc0\x00")
    assert again.value.reason_code == MALFORMED
    assert again.value.packets == []


def test_version_is_set_before_the_rest_of_connect_is_validated() -> None:
    # So that the endpoint can refuse in the client's own protocol version.
    decoder = Decoder()
    bad_v5 = "10 12 0004 4D515454 05 02 003C 04 16 0001 01 0001 61"  # auth data, no method
    with pytest.raises(MQTTError):
        decoder.feed(bytes.fromhex(bad_v5))
    assert decoder.version == 5


def test_unsupported_level_leaves_version_unset() -> None:
    decoder = Decoder()
    with pytest.raises(MQTTError):
        decoder.feed(bytes.fromhex("10 0D 0004 4D515454 06 02 003C 0001 61"))
    assert decoder.version is None


def test_packets_after_connect_in_the_same_feed_use_its_version() -> None:
    decoder = Decoder()
    wire = encode(Connect("a", protocol_level=5), 5) + bytes.fromhex("40 03 0001 10")
    assert decoder.feed(wire) == [Connect("a", protocol_level=5), Puback(1, 0x10)]


def test_decoder_arguments() -> None:
    with pytest.raises(ValueError):
        Decoder(6)
    with pytest.raises(ValueError):
        Decoder(role="client")  # a client knows the version it connected with
    with pytest.raises(ValueError):
        Decoder(4, role="broker")  # type: ignore[arg-type]
    decoder = Decoder(4)
    with pytest.raises(ValueError):
        decoder.version = 2


def test_feed_accepts_any_bytes_like_and_empty_input() -> None:
    decoder = Decoder(4)
    assert decoder.feed(b"") == []
    assert decoder.feed(bytearray(b"\xc0\x00")) == [Pingreq()]
    assert decoder.feed(memoryview(b"\xc0")) == []
    assert decoder.feed(b"") == []
    assert decoder.feed(memoryview(b"\x00\xc0\x00")) == [Pingreq(), Pingreq()]


def _topic_of(wire: bytes) -> str:
    (packet,) = Decoder(4).feed(wire)
    assert isinstance(packet, Publish)
    return packet.topic


def test_a_topic_decoded_again_is_the_same_string() -> None:
    wire = encode(Publish("dev/7/telemetry", b"1"), 4)
    assert _topic_of(wire) is _topic_of(wire)
    long = "t/" + "x" * 300  # past the cached length: decoded each time, still right
    assert _topic_of(encode(Publish(long), 4)) == long


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"a/\xff", RC.MALFORMED_PACKET),
        (b"a/+", RC.TOPIC_NAME_INVALID),
        (b"a\x00", RC.MALFORMED_PACKET),
    ],
)
def test_a_rejected_topic_is_rejected_every_time(raw: bytes, reason: int) -> None:
    wire = b"\x30" + bytes((2 + len(raw),)) + len(raw).to_bytes(2, "big") + raw
    for _ in range(2):
        with pytest.raises(MQTTError) as caught:
            Decoder(4).feed(wire)
        assert caught.value.reason_code == reason


def test_large_packet_fed_byte_by_byte() -> None:
    packet = Publish("big", bytes(range(256)) * 256, qos=1, packet_id=7)
    wire = encode(packet, 4) + b"\xc0\x00"
    decoder = Decoder(4)
    out: list[Packet] = []
    for i in range(len(wire)):
        out.extend(decoder.feed(wire[i : i + 1]))
    assert out == [packet, Pingreq()]


def test_many_packets_in_one_feed_with_a_partial_tail() -> None:
    packets: list[Packet] = [
        Publish(f"t/{i}", b"x" * i, qos=1, packet_id=i + 1) for i in range(300)
    ]
    wire = b"".join(encode(p, 5) for p in packets)
    decoder = Decoder(5)
    first = decoder.feed(wire[:-3])
    assert first == packets[:-1]
    assert decoder.feed(wire[-3:]) == packets[-1:]


# -- encoder validation


ENCODE_ERRORS: list[tuple[str, Packet, int]] = [
    ("PUBLISH QoS 3", Publish("t", qos=3, packet_id=1), 4),
    ("PUBLISH QoS 1 without packet id", Publish("t", qos=1), 4),
    ("PUBLISH QoS 0 with packet id", Publish("t", packet_id=1), 4),
    ("PUBLISH packet id 0", Publish("t", qos=1, packet_id=0), 4),
    ("PUBLISH packet id 65536", Publish("t", qos=2, packet_id=65536), 5),
    ("PUBLISH DUP with QoS 0", Publish("t", dup=True), 4),
    ("PUBLISH topic with +", Publish("a/+"), 4),
    ("PUBLISH topic with #", Publish("#"), 5),
    ("3.1.1 PUBLISH empty topic", Publish(""), 4),
    ("v5 PUBLISH empty topic without alias", Publish(""), 5),
    ("topic with U+0000", Publish("a\x00"), 4),
    ("topic with a lone surrogate", Publish("a\ud800"), 4),
    ("topic over 65535 bytes", Publish("a" * 65536), 4),
    (
        "payload format indicator 2",
        Publish("t", properties=Properties(payload_format_indicator=2)),
        5,
    ),
    (
        "subscription identifier 0",
        Publish("t", properties=Properties(subscription_identifiers=[0])),
        5,
    ),
    ("topic alias 0", Publish("t", properties=Properties(topic_alias=0)), 5),
    ("message expiry negative", Publish("t", properties=Properties(message_expiry_interval=-1)), 5),
    (
        "message expiry over 32 bits",
        Publish("t", properties=Properties(message_expiry_interval=2**32)),
        5,
    ),
    ("response topic with wildcard", Publish("t", properties=Properties(response_topic="a/#")), 5),
    (
        "correlation data over 65535 bytes",
        Publish("t", properties=Properties(correlation_data=bytes(65536))),
        5,
    ),
    (
        "user property with U+0000",
        Puback(1, properties=Properties(user_properties=[("a", "\x00")])),
        5,
    ),
    ("CONNECT level 6", Connect("a", protocol_level=6), 4),
    ("3.1.1 CONNECT password without user", Connect("a", password=b"p"), 4),
    ("CONNECT will QoS 3", Connect("a", will=Will("t", qos=3)), 4),
    ("CONNECT will topic with wildcard", Connect("a", will=Will("t/+")), 4),
    ("CONNECT keep alive over 65535", Connect("a", keep_alive=65536), 4),
    (
        "CONNECT authentication data without method",
        Connect("a", protocol_level=5, properties=Properties(authentication_data=b"x")),
        5,
    ),
    (
        "CONNECT receive maximum 0",
        Connect("a", protocol_level=5, properties=Properties(receive_maximum=0)),
        5,
    ),
    ("3.1.1 CONNACK return code 6", Connack(False, 6), 4),
    ("v5 CONNACK reason 0x01", Connack(False, 1), 5),
    ("CONNACK session present on refusal", Connack(True, 5), 4),
    (
        "CONNACK server keep alive over 65535",
        Connack(properties=Properties(server_keep_alive=70000)),
        5,
    ),
    ("CONNACK maximum QoS 2", Connack(properties=Properties(maximum_qos=2)), 5),
    ("PUBACK packet id 0", Puback(0), 4),
    ("v5 PUBACK reason 0x92", Puback(1, 0x92), 5),
    ("v5 PUBREL reason 0x10", Pubrel(1, 0x10), 5),
    ("SUBSCRIBE without subscriptions", Subscribe(1, []), 4),
    ("SUBSCRIBE QoS 3", Subscribe(1, [Subscription("a", 3)]), 4),
    ("v5 SUBSCRIBE retain handling 3", Subscribe(1, [Subscription("a", retain_handling=3)]), 5),
    (
        "v5 SUBSCRIBE no local on shared",
        Subscribe(1, [Subscription("$share/g/a", no_local=True)]),
        5,
    ),
    (
        "SUBSCRIBE two subscription identifiers",
        Subscribe(1, [Subscription("a")], Properties(subscription_identifiers=[1, 2])),
        5,
    ),
    ("SUBACK without codes", Suback(1, []), 4),
    ("3.1.1 SUBACK code 0x8F", Suback(1, [0x8F]), 4),
    ("v5 SUBACK code 0x03", Suback(1, [3]), 5),
    ("UNSUBSCRIBE without filters", Unsubscribe(1, []), 4),
    ("v5 UNSUBACK without codes", Unsuback(1), 5),
    ("v5 UNSUBACK code 0x01", Unsuback(1, [1]), 5),
    ("v5 DISCONNECT reason 0x01", Disconnect(1), 5),
    ("AUTH in 3.1.1", Auth(), 4),
    ("v5 AUTH reason 0x04", Auth(4), 5),
    ("version 6", Pingreq(), 6),
    ("version 2", Pingreq(), 2),
]


@pytest.mark.parametrize(
    ("packet", "version"),
    [case[1:] for case in ENCODE_ERRORS],
    ids=[case[0] for case in ENCODE_ERRORS],
)
def test_encode_error(packet: Packet, version: int) -> None:
    with pytest.raises(ValueError):
        encode(packet, version)


def test_encode_rejects_non_packets() -> None:
    with pytest.raises(TypeError):
        encode(object(), 4)  # type: ignore[arg-type]
