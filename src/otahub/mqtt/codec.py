"""Sans-IO MQTT 3.1, 3.1.1 and 5.0 codec.

``encode(packet, version)`` turns a packet into bytes; a ``Decoder`` turns
bytes received on one connection into packets, validating them strictly.
Malformed input raises ``MQTTError`` carrying the MQTT 5.0 reason code to
report; no other exception escapes ``Decoder.feed``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, TypeAlias

from otahub.mqtt.errors import MQTTError
from otahub.mqtt.packets import (
    MQTT_3_1,
    MQTT_5,
    SUPPORTED_VERSIONS,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
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
from otahub.mqtt.properties import WILL, decode_properties, encode_properties
from otahub.mqtt.reason_codes import ReasonCode
from otahub.mqtt.topics import is_shared_filter, is_valid_topic_name
from otahub.mqtt.wire import (
    MAX_VBI,
    Reader,
    decode_utf8,
    encode_binary,
    encode_string,
    encode_u16,
    encode_vbi,
)

__all__ = ["MAX_PACKET_SIZE", "Decoder", "Role", "encode", "encode_publish_head"]

Role: TypeAlias = Literal["server", "client"]

# Fixed header (1 byte + 4 byte remaining length) plus the largest remaining length.
MAX_PACKET_SIZE: Final = 268_435_460

MALFORMED: Final = ReasonCode.MALFORMED_PACKET
PROTOCOL_ERROR: Final = ReasonCode.PROTOCOL_ERROR

_T: Final = PacketType

# Reason codes each MQTT 5.0 packet may carry (spec 3.x.2.1 of each packet).
CONNACK_REASONS: Final = frozenset(
    {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C}
    | {0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
)
# PUBACK and PUBREC
PUBACK_REASONS: Final = frozenset({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
PUBREL_REASONS: Final = frozenset({0x00, 0x92})  # and PUBCOMP
SUBACK_REASONS: Final = frozenset(
    {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
)
UNSUBACK_REASONS: Final = frozenset({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})
DISCONNECT_REASONS: Final = frozenset(
    {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90}
    | {0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F}
    | {0xA0, 0xA1, 0xA2}
)
AUTH_REASONS: Final = frozenset({0x00, 0x18, 0x19})
SUBACK_RETURN_CODES_V3: Final = frozenset({0x00, 0x01, 0x02, 0x80})
CONNACK_RETURN_CODES_V3: Final = range(6)

# Packets each side may send; the other side's decoder rejects the rest.
_FROM_CLIENT: Final = frozenset(
    {
        _T.CONNECT,
        _T.PUBLISH,
        _T.PUBACK,
        _T.PUBREC,
        _T.PUBREL,
        _T.PUBCOMP,
        _T.SUBSCRIBE,
        _T.UNSUBSCRIBE,
        _T.PINGREQ,
        _T.DISCONNECT,
        _T.AUTH,
    }
)
_FROM_SERVER: Final = frozenset(
    {
        _T.CONNACK,
        _T.PUBLISH,
        _T.PUBACK,
        _T.PUBREC,
        _T.PUBREL,
        _T.PUBCOMP,
        _T.SUBACK,
        _T.UNSUBACK,
        _T.PINGRESP,
        _T.DISCONNECT,
        _T.AUTH,
    }
)
_V5_ONLY_FROM_SERVER: Final = frozenset({_T.DISCONNECT, _T.AUTH})
_FLAGS_0010: Final = frozenset({_T.PUBREL, _T.SUBSCRIBE, _T.UNSUBSCRIBE})

_PROTOCOLS: Final = {("MQIsdp", MQTT_3_1), ("MQTT", 4), ("MQTT", MQTT_5)}

_U16: Final = struct.Struct(">H")

# ====================================================================== encoding


def _frame(first: int, parts: list[bytes]) -> bytes:
    """Prefix ``parts`` with the fixed header and join them in one copy."""
    length = sum(map(len, parts))
    if length < 128:
        parts.insert(0, bytes((first, length)))
    elif length > MAX_VBI:
        raise ValueError(f"packet body of {length} bytes exceeds the MQTT maximum")
    else:
        parts.insert(0, bytes((first,)) + encode_vbi(length))
    return b"".join(parts)


def _packet_id(packet_id: int | None) -> bytes:
    if packet_id is None or not 0 < packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier must be 1..65535, not {packet_id!r}")
    return _U16.pack(packet_id)


def _check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")


def _check_reason(reason: int, allowed: Iterable[int], what: str) -> None:
    if reason not in allowed:
        raise ValueError(f"0x{reason:02X} is not a valid {what} reason code")


def _encode_connect(packet: Connect, version: int) -> bytes:
    level = packet.protocol_level
    if level == MQTT_3_1:
        name = b"\x00\x06MQIsdp"
    elif level in (4, MQTT_5):
        name = b"\x00\x04MQTT"
    else:
        raise ValueError(f"unsupported protocol level {level!r}")
    v5 = level == MQTT_5
    flags = 0x02 if packet.clean_start else 0
    payload = [encode_string(packet.client_id)]
    will = packet.will
    if will is not None:
        _check_qos(will.qos)
        if not is_valid_topic_name(will.topic):
            raise ValueError(f"invalid will topic {will.topic!r}")
        flags |= 0x04 | will.qos << 3 | (0x20 if will.retain else 0)
        if v5:
            payload.append(encode_properties(will.properties, WILL))
        payload.append(encode_string(will.topic))
        payload.append(encode_binary(will.payload))
    if packet.username is not None:
        flags |= 0x80
        payload.append(encode_string(packet.username))
    if packet.password is not None:
        if packet.username is None and not v5:
            raise ValueError("MQTT 3.1.1 does not allow a password without a user name")
        flags |= 0x40
        payload.append(encode_binary(packet.password))
    parts = [name, bytes((level, flags)), encode_u16(packet.keep_alive)]
    if v5:
        props = packet.properties
        if props.authentication_data is not None and props.authentication_method is None:
            raise ValueError("authentication data requires an authentication method")
        parts.append(encode_properties(props, _T.CONNECT))
    parts.extend(payload)
    return _frame(0x10, parts)


def _encode_connack(packet: Connack, version: int) -> bytes:
    code = packet.reason_code
    present = 1 if packet.session_present else 0
    if present and code:
        raise ValueError("session_present must be False when the connection is refused")
    if version == MQTT_5:
        _check_reason(code, CONNACK_REASONS, "CONNACK")
        return _frame(
            0x20, [bytes((present, code)), encode_properties(packet.properties, _T.CONNACK)]
        )
    if code not in CONNACK_RETURN_CODES_V3:
        raise ValueError(f"{code!r} is not an MQTT 3.1.1 CONNACK return code")
    # MQTT 3.1 has no session present flag; the byte is reserved there.
    return bytes((0x20, 2, present if version > MQTT_3_1 else 0, code))


# Outgoing topic names with their length prefix, by name: drivers and
# routing send to the same topics over and over. Only valid, non-empty names
# are kept; bounded in entries, starts over when full.
_OUT_TOPICS: Final[dict[str, bytes]] = {}
_OUT_TOPICS_LIMIT: Final = 4096

# fixed headers with one and two remaining length bytes, packed in C
_PACK2: Final = struct.Struct("BB").pack
_PACK3: Final = struct.Struct("BBB").pack


def _topic_name(topic: str) -> bytes:
    """A topic name with its length prefix, checked; cached when not empty."""
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError(f"topic name contains a wildcard or U+0000: {topic!r}")
    try:
        raw = topic.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"topic name is not encodable as UTF-8: {topic!r}") from None
    if len(raw) > 0xFFFF:
        raise ValueError("topic names are limited to 65535 bytes")
    encoded = _U16.pack(len(raw)) + raw
    if raw:
        if len(_OUT_TOPICS) >= _OUT_TOPICS_LIMIT:
            _OUT_TOPICS.clear()
        _OUT_TOPICS[topic] = encoded
    return encoded


def encode_publish_head(
    topic: str,
    size: int,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: Properties | None,
    version: int,
) -> bytes:
    """Everything of a PUBLISH before its payload of ``size`` bytes.

    The one PUBLISH encoder (``encode`` appends the payload to it): the
    endpoint writes the payload behind it without building a packet or
    copying a large payload. Raises ``ValueError`` as ``encode`` does.
    """
    topic_bytes = _OUT_TOPICS.get(topic)
    if topic_bytes is None:
        topic_bytes = _topic_name(topic)
    if qos == 0:
        if packet_id is not None:
            raise ValueError("a QoS 0 PUBLISH has no packet identifier")
        if dup:
            raise ValueError("the DUP flag must be 0 for QoS 0")
        head = topic_bytes
    elif qos == 1 or qos == 2:
        if packet_id is None or not 0 < packet_id <= 0xFFFF:
            raise ValueError(f"packet identifier must be 1..65535, not {packet_id!r}")
        head = topic_bytes + _U16.pack(packet_id)
    else:
        raise ValueError(f"QoS must be 0, 1 or 2, not {qos!r}")
    if version == MQTT_5:
        if properties is None:
            head += b"\x00"
        else:
            head += encode_properties(properties, _T.PUBLISH)
        if not topic and (properties is None or properties.topic_alias is None):
            raise ValueError("an empty topic name needs a topic alias")
    elif not topic:
        raise ValueError("topic name must not be empty")
    length = len(head) + size
    first = 0x30 | qos << 1 | (0x01 if retain else 0) | (0x08 if dup else 0)
    if length < 128:
        return _PACK2(first, length) + head
    if length < 16384:
        return _PACK3(first, length & 0x7F | 0x80, length >> 7) + head
    if length <= MAX_VBI:
        return bytes((first,)) + encode_vbi(length) + head
    raise ValueError(f"PUBLISH of {length} bytes exceeds the MQTT maximum")


def _encode_publish(packet: Publish, version: int) -> bytes:
    payload = packet.payload
    head = encode_publish_head(
        packet.topic,
        len(payload),
        packet.qos,
        packet.retain,
        packet.dup,
        packet.packet_id,
        packet.given_properties,
        version,
    )
    return head + payload


AckPacket: TypeAlias = Puback | Pubrec | Pubrel | Pubcomp


def _ack_encoder(
    ptype: PacketType, first: int, reasons: frozenset[int]
) -> Callable[[AckPacket, int], bytes]:
    def encode_ack(packet: AckPacket, version: int) -> bytes:
        pid = _packet_id(packet.packet_id)
        if version < MQTT_5:
            return bytes((first, 2)) + pid
        code = packet.reason_code
        _check_reason(code, reasons, ptype.name)
        props = encode_properties(packet.properties, ptype)
        # Shortest form (spec 3.4.2.1): omit properties, then a success reason code.
        if props == b"\x00":
            if code == 0:
                return bytes((first, 2)) + pid
            return bytes((first, 3)) + pid + bytes((code,))
        return _frame(first, [pid, bytes((code,)), props])

    return encode_ack


def _encode_subscribe(packet: Subscribe, version: int) -> bytes:
    if not packet.subscriptions:
        raise ValueError("SUBSCRIBE needs at least one subscription")
    v5 = version == MQTT_5
    parts = [_packet_id(packet.packet_id)]
    if v5:
        parts.append(encode_properties(packet.properties, _T.SUBSCRIBE))
    for sub in packet.subscriptions:
        _check_qos(sub.qos)
        options = sub.qos
        if v5:
            if sub.retain_handling not in (0, 1, 2):
                raise ValueError(f"retain handling must be 0, 1 or 2, not {sub.retain_handling!r}")
            if sub.no_local and is_shared_filter(sub.topic_filter):
                raise ValueError("no_local is not allowed on a shared subscription")
            options |= sub.retain_handling << 4
            if sub.no_local:
                options |= 0x04
            if sub.retain_as_published:
                options |= 0x08
        parts.append(encode_string(sub.topic_filter))
        parts.append(bytes((options,)))
    return _frame(0x82, parts)


def _encode_suback(packet: Suback, version: int) -> bytes:
    codes = packet.reason_codes
    if not codes:
        raise ValueError("SUBACK needs at least one reason code")
    allowed = SUBACK_REASONS if version == MQTT_5 else SUBACK_RETURN_CODES_V3
    for code in codes:
        _check_reason(code, allowed, "SUBACK")
    parts = [_packet_id(packet.packet_id)]
    if version == MQTT_5:
        parts.append(encode_properties(packet.properties, _T.SUBACK))
    parts.append(bytes(codes))
    return _frame(0x90, parts)


def _encode_unsubscribe(packet: Unsubscribe, version: int) -> bytes:
    if not packet.topic_filters:
        raise ValueError("UNSUBSCRIBE needs at least one topic filter")
    parts = [_packet_id(packet.packet_id)]
    if version == MQTT_5:
        parts.append(encode_properties(packet.properties, _T.UNSUBSCRIBE))
    parts.extend(encode_string(topic_filter) for topic_filter in packet.topic_filters)
    return _frame(0xA2, parts)


def _encode_unsuback(packet: Unsuback, version: int) -> bytes:
    pid = _packet_id(packet.packet_id)
    if version < MQTT_5:
        return b"\xb0\x02" + pid
    codes = packet.reason_codes
    if not codes:
        raise ValueError("an MQTT 5 UNSUBACK needs one reason code per topic filter")
    for code in codes:
        _check_reason(code, UNSUBACK_REASONS, "UNSUBACK")
    return _frame(0xB0, [pid, encode_properties(packet.properties, _T.UNSUBACK), bytes(codes)])


def _encode_pingreq(packet: Pingreq, version: int) -> bytes:
    return b"\xc0\x00"


def _encode_pingresp(packet: Pingresp, version: int) -> bytes:
    return b"\xd0\x00"


def _short_form(
    first: int, code: int, props: Properties, ptype: PacketType, reasons: frozenset[int]
) -> bytes:
    """DISCONNECT and AUTH: omit trailing parts that hold their defaults (spec 3.14.2.1)."""
    _check_reason(code, reasons, ptype.name)
    encoded = encode_properties(props, ptype)
    if encoded == b"\x00":
        return bytes((first, 0)) if code == 0 else bytes((first, 1, code))
    return _frame(first, [bytes((code,)), encoded])


def _encode_disconnect(packet: Disconnect, version: int) -> bytes:
    if version < MQTT_5:
        return b"\xe0\x00"
    return _short_form(
        0xE0, packet.reason_code, packet.properties, _T.DISCONNECT, DISCONNECT_REASONS
    )


def _encode_auth(packet: Auth, version: int) -> bytes:
    if version < MQTT_5:
        raise ValueError("AUTH exists only in MQTT 5")
    return _short_form(0xF0, packet.reason_code, packet.properties, _T.AUTH, AUTH_REASONS)


_ENCODERS: Final[dict[type, Callable[[Any, int], bytes]]] = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish,
    Puback: _ack_encoder(_T.PUBACK, 0x40, PUBACK_REASONS),
    Pubrec: _ack_encoder(_T.PUBREC, 0x50, PUBACK_REASONS),
    Pubrel: _ack_encoder(_T.PUBREL, 0x62, PUBREL_REASONS),
    Pubcomp: _ack_encoder(_T.PUBCOMP, 0x70, PUBREL_REASONS),
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_unsuback,
    Pingreq: _encode_pingreq,
    Pingresp: _encode_pingresp,
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}


def encode(packet: Packet, version: int) -> bytes:
    """Serialize ``packet`` for a connection speaking protocol level ``version``.

    CONNECT is encoded for its own ``protocol_level``. Fields MQTT 3.1.1 lacks
    (properties, most reason codes) are left out for versions before 5.
    Raises ``ValueError`` for packets that cannot be valid on the wire.
    """
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported MQTT version {version!r}")
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    return encoder(packet, version)


# ====================================================================== decoding


def _check_packet_id(packet_id: int) -> int:
    if packet_id == 0:
        raise MQTTError("packet identifier 0", PROTOCOL_ERROR)
    return packet_id


# Topic names already decoded and checked, by their bytes: devices publish to
# the same few topics over and over, and the cached str (hash included) is
# then the same object each time, for the lookups that follow. Bounded in
# entries and in name length; starts over when full.
_TOPICS: Final[dict[bytes, str]] = {}
_TOPICS_LIMIT: Final = 4096
_TOPIC_CACHED_MAX: Final = 256


def _decode_topic(raw: bytes) -> str:
    topic = _TOPICS.get(raw)
    if topic is not None:
        return topic
    topic = decode_utf8(raw, "topic name")
    if "+" in topic or "#" in topic:
        raise MQTTError(f"topic name contains a wildcard: {topic!r}", ReasonCode.TOPIC_NAME_INVALID)
    if len(raw) <= _TOPIC_CACHED_MAX:
        if len(_TOPICS) >= _TOPICS_LIMIT:
            _TOPICS.clear()
        _TOPICS[raw] = topic
    return topic


def _decode_publish(
    buf: bytes, first: int, pos: int, end: int, version: int, from_client: bool | None
) -> Publish:
    # The hot path: plain index arithmetic instead of a Reader.
    if end - pos < 2:
        raise MQTTError("PUBLISH too short for its topic length", MALFORMED)
    topic_end = pos + 2 + (buf[pos] << 8 | buf[pos + 1])
    if topic_end > end:
        raise MQTTError("PUBLISH topic runs past the packet", MALFORMED)
    topic = _decode_topic(buf[pos + 2 : topic_end])
    pos = topic_end
    qos = first >> 1 & 0x03
    packet_id: int | None = None
    if qos:
        if end - pos < 2:
            raise MQTTError("PUBLISH too short for its packet identifier", MALFORMED)
        packet_id = buf[pos] << 8 | buf[pos + 1]
        if not packet_id:
            raise MQTTError("packet identifier 0", PROTOCOL_ERROR)
        pos += 2
    if version != MQTT_5:
        if not topic:
            raise MQTTError("empty topic name", MALFORMED)
        return Publish(topic, buf[pos:end], qos, bool(first & 0x01), bool(first & 0x08), packet_id)
    props: Properties | None
    if pos < end and not buf[pos]:
        # No properties, the common case: skip the general property reader
        # (and leave the packet to create empty ones only if asked).
        props = None
        pos += 1
    else:
        reader = Reader(buf, pos, end)
        props = decode_properties(reader, _T.PUBLISH)
        pos = reader.pos
        if from_client and props.subscription_identifiers:
            # MQTT-3.3.4-6: only the server adds subscription identifiers.
            raise MQTTError("a client may not send a subscription identifier", PROTOCOL_ERROR)
    if not topic and (props is None or props.topic_alias is None):
        raise MQTTError("empty topic name without a topic alias", PROTOCOL_ERROR)
    return Publish(
        topic, buf[pos:end], qos, bool(first & 0x01), bool(first & 0x08), packet_id, props
    )


def _decode_connack(r: Reader, version: int, from_client: bool | None) -> Connack:
    flags = r.u8()
    if version == MQTT_3_1:
        flags = 0  # MQTT 3.1 leaves this byte unused: no session present flag yet
    elif flags & 0xFE:
        raise MQTTError("reserved CONNACK acknowledge flags set", MALFORMED)
    code = r.u8()
    if version == MQTT_5:
        if code not in CONNACK_REASONS:
            raise MQTTError(f"invalid CONNACK reason code 0x{code:02X}", MALFORMED)
        props = decode_properties(r, _T.CONNACK)
    else:
        if code not in CONNACK_RETURN_CODES_V3:
            raise MQTTError(f"invalid CONNACK return code {code}", MALFORMED)
        props = Properties()
    r.expect_end("CONNACK")
    if flags and code:
        raise MQTTError("session present set on a refused connection", PROTOCOL_ERROR)
    return Connack(bool(flags), code, props)


AckType: TypeAlias = type[Puback] | type[Pubrec] | type[Pubrel] | type[Pubcomp]


def _ack_decoder(
    cls: AckType, ptype: PacketType, reasons: frozenset[int]
) -> Callable[[Reader, int, bool | None], AckPacket]:
    def decode_ack(r: Reader, version: int, from_client: bool | None) -> AckPacket:
        packet_id = _check_packet_id(r.u16())
        if version < MQTT_5 or r.pos == r.end:
            r.expect_end(ptype.name)
            return cls(packet_id)
        code = r.u8()
        if code not in reasons:
            raise MQTTError(f"invalid {ptype.name} reason code 0x{code:02X}", MALFORMED)
        props = decode_properties(r, ptype) if r.pos < r.end else Properties()
        r.expect_end(ptype.name)
        return cls(packet_id, code, props)

    return decode_ack


def _decode_subscribe(r: Reader, version: int, from_client: bool | None) -> Subscribe:
    packet_id = _check_packet_id(r.u16())
    v5 = version == MQTT_5
    props = decode_properties(r, _T.SUBSCRIBE) if v5 else Properties()
    subscriptions = []
    while r.pos < r.end:
        topic_filter = r.utf8()
        options = r.u8()
        qos = options & 0x03
        if v5:
            if options & 0xC0:
                raise MQTTError("reserved subscription option bits set", MALFORMED)
            if qos == 3:
                raise MQTTError("subscription QoS 3", PROTOCOL_ERROR)
            retain_handling = options >> 4 & 0x03
            if retain_handling == 3:
                raise MQTTError("retain handling 3", PROTOCOL_ERROR)
            no_local = bool(options & 0x04)
            if no_local and is_shared_filter(topic_filter):
                raise MQTTError("no local set on a shared subscription", PROTOCOL_ERROR)
            subscriptions.append(
                Subscription(topic_filter, qos, no_local, bool(options & 0x08), retain_handling)
            )
        else:
            if options & 0xFC:
                raise MQTTError("reserved subscription option bits set", MALFORMED)
            if qos == 3:
                raise MQTTError("subscription QoS 3", MALFORMED)
            subscriptions.append(Subscription(topic_filter, qos))
    if not subscriptions:
        raise MQTTError("SUBSCRIBE without subscriptions", PROTOCOL_ERROR)
    return Subscribe(packet_id, subscriptions, props)


def _decode_suback(r: Reader, version: int, from_client: bool | None) -> Suback:
    packet_id = _check_packet_id(r.u16())
    if version == MQTT_5:
        props = decode_properties(r, _T.SUBACK)
        allowed = SUBACK_REASONS
    else:
        props = Properties()
        allowed = SUBACK_RETURN_CODES_V3
    codes = list(r.rest())
    if not codes:
        raise MQTTError("SUBACK without reason codes", PROTOCOL_ERROR)
    for code in codes:
        if code not in allowed:
            raise MQTTError(f"invalid SUBACK reason code 0x{code:02X}", MALFORMED)
    return Suback(packet_id, codes, props)


def _decode_unsubscribe(r: Reader, version: int, from_client: bool | None) -> Unsubscribe:
    packet_id = _check_packet_id(r.u16())
    props = decode_properties(r, _T.UNSUBSCRIBE) if version == MQTT_5 else Properties()
    topic_filters = []
    while r.pos < r.end:
        topic_filters.append(r.utf8())
    if not topic_filters:
        raise MQTTError("UNSUBSCRIBE without topic filters", PROTOCOL_ERROR)
    return Unsubscribe(packet_id, topic_filters, props)


def _decode_unsuback(r: Reader, version: int, from_client: bool | None) -> Unsuback:
    packet_id = _check_packet_id(r.u16())
    if version < MQTT_5:
        r.expect_end("UNSUBACK")
        return Unsuback(packet_id)
    props = decode_properties(r, _T.UNSUBACK)
    codes = list(r.rest())
    if not codes:
        raise MQTTError("UNSUBACK without reason codes", PROTOCOL_ERROR)
    for code in codes:
        if code not in UNSUBACK_REASONS:
            raise MQTTError(f"invalid UNSUBACK reason code 0x{code:02X}", MALFORMED)
    return Unsuback(packet_id, codes, props)


def _decode_pingreq(r: Reader, version: int, from_client: bool | None) -> Pingreq:
    r.expect_end("PINGREQ")
    return Pingreq()


def _decode_pingresp(r: Reader, version: int, from_client: bool | None) -> Pingresp:
    r.expect_end("PINGRESP")
    return Pingresp()


def _decode_short_form(
    r: Reader, ptype: PacketType, reasons: frozenset[int]
) -> tuple[int, Properties]:
    """Reason code and properties of DISCONNECT / AUTH, either of which may be omitted."""
    if r.pos == r.end:
        return 0, Properties()
    code = r.u8()
    if code not in reasons:
        raise MQTTError(f"invalid {ptype.name} reason code 0x{code:02X}", MALFORMED)
    props = decode_properties(r, ptype) if r.pos < r.end else Properties()
    r.expect_end(ptype.name)
    return code, props


def _decode_disconnect(r: Reader, version: int, from_client: bool | None) -> Disconnect:
    if version < MQTT_5:
        r.expect_end("DISCONNECT")
        return Disconnect()
    code, props = _decode_short_form(r, _T.DISCONNECT, DISCONNECT_REASONS)
    if props.session_expiry_interval is not None and from_client is False:
        # MQTT-3.14.2-2: the server never sends a session expiry interval in DISCONNECT.
        raise MQTTError("session expiry interval in a server DISCONNECT", PROTOCOL_ERROR)
    return Disconnect(code, props)


def _decode_auth(r: Reader, version: int, from_client: bool | None) -> Auth:
    code, props = _decode_short_form(r, _T.AUTH, AUTH_REASONS)
    return Auth(code, props)


def _decode_connect_body(r: Reader, level: int) -> Connect:
    """CONNECT after the protocol name and level (already checked by the caller)."""
    flags = r.u8()
    if flags & 0x01:
        raise MQTTError("reserved CONNECT flag set", MALFORMED)
    has_will = flags & 0x04
    will_qos = flags >> 3 & 0x03
    will_retain = bool(flags & 0x20)
    if has_will:
        if will_qos == 3:
            raise MQTTError("will QoS 3", MALFORMED)
    elif will_qos or will_retain:
        raise MQTTError("will QoS or retain set without the will flag", MALFORMED)
    has_username = flags & 0x80
    has_password = flags & 0x40
    v5 = level == MQTT_5
    if has_password and not has_username and not v5:
        raise MQTTError("password without user name", MALFORMED)
    keep_alive = r.u16()
    props = Properties()
    if v5:
        props = decode_properties(r, _T.CONNECT)
        if props.authentication_data is not None and props.authentication_method is None:
            raise MQTTError("authentication data without a method", PROTOCOL_ERROR)
    client_id = r.utf8()
    will = None
    if has_will:
        will_props = decode_properties(r, WILL) if v5 else Properties()
        topic = r.utf8()
        if not is_valid_topic_name(topic):
            raise MQTTError(f"invalid will topic {topic!r}", ReasonCode.TOPIC_NAME_INVALID)
        will = Will(topic, r.binary(), will_qos, will_retain, will_props)
    username = r.utf8() if has_username else None
    password = r.binary() if has_password else None
    r.expect_end("CONNECT")
    return Connect(
        client_id, level, bool(flags & 0x02), keep_alive, username, password, will, props
    )


_Decode: TypeAlias = Callable[[Reader, int, bool | None], Packet]

_DECODERS: Final[dict[int, _Decode]] = {
    _T.CONNACK: _decode_connack,
    _T.PUBACK: _ack_decoder(Puback, _T.PUBACK, PUBACK_REASONS),
    _T.PUBREC: _ack_decoder(Pubrec, _T.PUBREC, PUBACK_REASONS),
    _T.PUBREL: _ack_decoder(Pubrel, _T.PUBREL, PUBREL_REASONS),
    _T.PUBCOMP: _ack_decoder(Pubcomp, _T.PUBCOMP, PUBREL_REASONS),
    _T.SUBSCRIBE: _decode_subscribe,
    _T.SUBACK: _decode_suback,
    _T.UNSUBSCRIBE: _decode_unsubscribe,
    _T.UNSUBACK: _decode_unsuback,
    _T.PINGREQ: _decode_pingreq,
    _T.PINGRESP: _decode_pingresp,
    _T.DISCONNECT: _decode_disconnect,
    _T.AUTH: _decode_auth,
}

_HeaderRule: TypeAlias = tuple[str, int] | None


def _header_rule(first: int, version: int | None, role: Role | None) -> _HeaderRule:
    """Why a packet starting with byte ``first`` is unacceptable, or None if it is fine."""
    if first < 0x10:
        return "reserved packet type 0", MALFORMED
    ptype = _T(first >> 4)
    flags = first & 0x0F
    if version is None:
        if ptype != _T.CONNECT:
            return f"{ptype.name} before CONNECT", PROTOCOL_ERROR
    elif ptype == _T.AUTH and version < MQTT_5:
        return "AUTH requires MQTT 5", PROTOCOL_ERROR
    if role == "server" and ptype not in _FROM_CLIENT:
        return f"a client may not send {ptype.name}", PROTOCOL_ERROR
    if role == "client" and (
        ptype not in _FROM_SERVER
        or (ptype in _V5_ONLY_FROM_SERVER and version is not None and version < MQTT_5)
    ):
        return f"a server may not send {ptype.name}", PROTOCOL_ERROR
    if ptype == _T.PUBLISH:
        qos = flags >> 1 & 0x03
        if qos == 3:
            return "PUBLISH with QoS 3", MALFORMED
        if flags & 0x08 and not qos:
            return "DUP flag set on a QoS 0 PUBLISH", MALFORMED
    elif ptype in _FLAGS_0010:
        if flags != 0x02:
            return f"{ptype.name} fixed header flags must be 0010", MALFORMED
    elif flags:
        return f"reserved {ptype.name} fixed header flags set", MALFORMED
    return None


@functools.cache
def _header_rules(version: int | None, role: Role | None) -> tuple[_HeaderRule, ...]:
    # Every first byte judged once per (version, role): one tuple lookup per packet.
    return tuple(_header_rule(first, version, role) for first in range(256))


class Decoder:
    """Turns the byte stream of one connection into packets.

    ``role`` is the side this decoder runs on: a "server" decoder accepts
    what clients send, a "client" decoder what servers send, ``None`` both.
    With ``version=None`` only CONNECT is accepted until one arrives; its
    protocol level then becomes ``version`` (set as soon as the level is
    read and supported, so a CONNECT failing later validation can still be
    answered in the client's protocol version).

    After ``feed`` raises, the connection must be closed; the decoder keeps
    raising the same error. Packets completed in that same ``feed`` call
    before the bad one are available as ``error.packets``.
    """

    __slots__ = (
        "_buf",
        "_error",
        "_from_client",
        "_need",
        "_role",
        "_rules",
        "_version",
        "max_packet_size",
    )

    def __init__(
        self,
        version: int | None = None,
        *,
        max_packet_size: int = MAX_PACKET_SIZE,
        role: Role | None = "server",
    ) -> None:
        if role not in ("server", "client", None):
            raise ValueError(f"invalid role {role!r}")
        if role == "client" and version is None:
            raise ValueError("a client-side decoder needs the version it connected with")
        if max_packet_size < 2:
            raise ValueError("max_packet_size must be at least 2")
        self._role: Role | None = role
        # Which side sent what we decode: None when a decoder accepts both.
        self._from_client = None if role is None else role == "server"
        # Bytes of an incomplete packet, and how many the first packet in it needs
        # in total (0 while its fixed header is incomplete).
        self._buf = bytearray()
        self._need = 0
        self._error: MQTTError | None = None
        self.max_packet_size = max_packet_size
        self._version: int | None = None
        self._rules = _header_rules(None, role)
        self.version = version

    @property
    def version(self) -> int | None:
        return self._version

    @version.setter
    def version(self, value: int | None) -> None:
        if value is not None and value not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported MQTT version {value!r}")
        self._version = value
        self._rules = _header_rules(value, self._role)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Add received bytes; return the packets they complete, in order."""
        if self._error is not None:
            raise MQTTError(self._error.message, self._error.reason_code)
        packets: list[Packet] = []
        try:
            buf = self._buf
            if buf:
                buf += data
                if not self._need:
                    header = self._header(buf, 0, len(buf))
                    if header is None:
                        return packets
                    self._need = header[1]
                if len(buf) < self._need:
                    return packets
                # The first packet is complete: copy everything out once.
                src = bytes(buf)
                buf.clear()
                self._need = 0
            elif data:
                # Nothing buffered: decode straight from the caller's bytes.
                src = data if type(data) is bytes else bytes(data)
            else:
                return packets
            pos = self._decode_all(src, packets)
        except MQTTError as exc:
            exc.packets = packets
            self._error = exc
            raise
        if pos < len(src):
            buf += memoryview(src)[pos:]
        return packets

    def _header(self, src: bytes | bytearray, pos: int, size: int) -> tuple[int, int] | None:
        """Check the fixed header at ``pos``; return (body start, packet end), None if partial."""
        first = src[pos]
        rule = self._rules[first]
        if rule is not None:
            raise MQTTError(*rule)
        start = pos + 1
        length = 0
        shift = 0
        while True:
            if start - pos == 5:
                raise MQTTError("remaining length longer than 4 bytes", MALFORMED)
            if start == size:
                return None
            byte = src[start]
            start += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                if not byte and shift:
                    raise MQTTError("remaining length not minimally encoded", MALFORMED)
                break
            shift += 7
        end = start + length
        if end - pos > self.max_packet_size:
            raise MQTTError(
                f"packet of {end - pos} bytes exceeds the maximum of {self.max_packet_size}",
                ReasonCode.PACKET_TOO_LARGE,
            )
        return start, end

    def _decode_all(self, src: bytes, packets: list[Packet]) -> int:
        """Decode complete packets from ``src``; return where the unconsumed bytes begin."""
        size = len(src)
        pos = 0
        rules = self._rules
        max_size = self.max_packet_size
        from_client = self._from_client
        while pos < size:
            first = src[pos]
            if pos + 1 < size and src[pos + 1] < 0x80 and rules[first] is None:
                # Fast path: valid first byte, one-byte remaining length.
                start = pos + 2
                end = start + src[pos + 1]
                if end - pos > max_size:
                    self._header(src, pos, size)  # raises PACKET_TOO_LARGE
            elif pos + 2 < size and 0 < src[pos + 2] < 0x80 and rules[first] is None:
                # Two-byte remaining length (128 B to 16 KiB, most PUBLISHes): a
                # continuation byte (one-byte lengths took the branch above) and a
                # non-zero final byte, so minimally encoded.
                start = pos + 3
                end = start + ((src[pos + 1] & 0x7F) | src[pos + 2] << 7)
                if end - pos > max_size:
                    self._header(src, pos, size)  # raises PACKET_TOO_LARGE
            else:
                header = self._header(src, pos, size)
                if header is None:
                    return pos
                start, end = header
            if end > size:
                self._need = end - pos
                return pos
            ptype = first >> 4
            packet: Packet
            if ptype == 3:
                version = self._version
                assert version is not None  # the header rules admit only CONNECT before it
                packet = _decode_publish(src, first, start, end, version, from_client)
            elif ptype == 1:
                packet = self._decode_connect(Reader(src, start, end))
                rules = self._rules  # the version may just have been set
            else:
                version = self._version
                assert version is not None
                packet = _DECODERS[ptype](Reader(src, start, end), version, from_client)
            packets.append(packet)
            pos = end
        return pos

    def _decode_connect(self, r: Reader) -> Connect:
        name = r.utf8()
        level = r.u8()
        if (name, level) not in _PROTOCOLS:
            raise MQTTError(
                f"unsupported protocol {name!r} level {level}",
                ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
            )
        if self._version is None:
            self.version = level
        return _decode_connect_body(r, level)
