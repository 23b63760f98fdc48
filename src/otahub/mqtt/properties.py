"""MQTT 5.0 properties (spec 2.2.2): identifiers, data types, where they may appear."""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from operator import attrgetter
from typing import Any, Final, NamedTuple

from otahub.mqtt.errors import MQTTError
from otahub.mqtt.packets import PacketType, Properties
from otahub.mqtt.reason_codes import ReasonCode
from otahub.mqtt.topics import is_valid_topic_name
from otahub.mqtt.wire import (
    Reader,
    decode_utf8,
    decode_vbi,
    encode_binary,
    encode_string,
    encode_u16,
    encode_u32,
    encode_vbi,
)

MALFORMED: Final = ReasonCode.MALFORMED_PACKET
PROTOCOL_ERROR: Final = ReasonCode.PROTOCOL_ERROR

# Will properties live in CONNECT's payload but have their own set of allowed
# properties; 0 is not a packet type, so it can share the bit mask with them.
WILL: Final = 0


class Kind(IntEnum):
    BYTE = 1
    U16 = 2
    U32 = 3
    VBI = 4
    STRING = 5
    BINARY = 6
    PAIR = 7


class PropertySpec(NamedTuple):
    ident: int
    name: str  # field of Properties
    kind: Kind
    allowed: int  # bit mask over packet types (and WILL)
    boolean: bool = False  # a Byte whose only valid values are 0 and 1
    nonzero: int | None = None  # reason code when the value 0 is forbidden


def _mask(*contexts: int) -> int:
    mask = 0
    for context in contexts:
        mask |= 1 << context
    return mask


_T: Final = PacketType
_ACKS: Final = (_T.PUBACK, _T.PUBREC, _T.PUBREL, _T.PUBCOMP)

SPECS: Final[tuple[PropertySpec, ...]] = (
    PropertySpec(0x01, "payload_format_indicator", Kind.BYTE, _mask(_T.PUBLISH, WILL), True),
    PropertySpec(0x02, "message_expiry_interval", Kind.U32, _mask(_T.PUBLISH, WILL)),
    PropertySpec(0x03, "content_type", Kind.STRING, _mask(_T.PUBLISH, WILL)),
    PropertySpec(0x08, "response_topic", Kind.STRING, _mask(_T.PUBLISH, WILL)),
    PropertySpec(0x09, "correlation_data", Kind.BINARY, _mask(_T.PUBLISH, WILL)),
    PropertySpec(
        0x0B,
        "subscription_identifiers",
        Kind.VBI,
        _mask(_T.PUBLISH, _T.SUBSCRIBE),
        nonzero=PROTOCOL_ERROR,
    ),
    PropertySpec(
        0x11, "session_expiry_interval", Kind.U32, _mask(_T.CONNECT, _T.CONNACK, _T.DISCONNECT)
    ),
    PropertySpec(0x12, "assigned_client_identifier", Kind.STRING, _mask(_T.CONNACK)),
    PropertySpec(0x13, "server_keep_alive", Kind.U16, _mask(_T.CONNACK)),
    PropertySpec(
        0x15, "authentication_method", Kind.STRING, _mask(_T.CONNECT, _T.CONNACK, _T.AUTH)
    ),
    PropertySpec(0x16, "authentication_data", Kind.BINARY, _mask(_T.CONNECT, _T.CONNACK, _T.AUTH)),
    PropertySpec(0x17, "request_problem_information", Kind.BYTE, _mask(_T.CONNECT), True),
    PropertySpec(0x18, "will_delay_interval", Kind.U32, _mask(WILL)),
    PropertySpec(0x19, "request_response_information", Kind.BYTE, _mask(_T.CONNECT), True),
    PropertySpec(0x1A, "response_information", Kind.STRING, _mask(_T.CONNACK)),
    PropertySpec(0x1C, "server_reference", Kind.STRING, _mask(_T.CONNACK, _T.DISCONNECT)),
    PropertySpec(
        0x1F,
        "reason_string",
        Kind.STRING,
        _mask(_T.CONNACK, *_ACKS, _T.SUBACK, _T.UNSUBACK, _T.DISCONNECT, _T.AUTH),
    ),
    PropertySpec(
        0x21, "receive_maximum", Kind.U16, _mask(_T.CONNECT, _T.CONNACK), nonzero=PROTOCOL_ERROR
    ),
    PropertySpec(0x22, "topic_alias_maximum", Kind.U16, _mask(_T.CONNECT, _T.CONNACK)),
    PropertySpec(
        0x23,
        "topic_alias",
        Kind.U16,
        _mask(_T.PUBLISH),
        nonzero=ReasonCode.TOPIC_ALIAS_INVALID,
    ),
    # Maximum QoS is a Byte but only 0 or 1 may be sent (a server supporting QoS 2 omits it).
    PropertySpec(0x24, "maximum_qos", Kind.BYTE, _mask(_T.CONNACK), True),
    PropertySpec(0x25, "retain_available", Kind.BYTE, _mask(_T.CONNACK), True),
    PropertySpec(
        0x26,
        "user_properties",
        Kind.PAIR,
        _mask(*(t for t in PacketType if t not in (_T.PINGREQ, _T.PINGRESP)), WILL),
    ),
    PropertySpec(
        0x27,
        "maximum_packet_size",
        Kind.U32,
        _mask(_T.CONNECT, _T.CONNACK),
        nonzero=PROTOCOL_ERROR,
    ),
    PropertySpec(0x28, "wildcard_subscription_available", Kind.BYTE, _mask(_T.CONNACK), True),
    PropertySpec(0x29, "subscription_identifier_available", Kind.BYTE, _mask(_T.CONNACK), True),
    PropertySpec(0x2A, "shared_subscription_available", Kind.BYTE, _mask(_T.CONNACK), True),
)

BY_IDENT: Final[dict[int, PropertySpec]] = {spec.ident: spec for spec in SPECS}
_USER_PROPERTY: Final = 0x26
_SUBSCRIPTION_IDENTIFIER: Final = 0x0B
_RESPONSE_TOPIC: Final = 0x08


def _getter(names: list[str]) -> Callable[[Properties], tuple[Any, ...]]:
    if len(names) == 1:  # attrgetter of one name returns the bare value
        name = names[0]
        return lambda props: (getattr(props, name),)
    return attrgetter(*names)


# Per packet type (and WILL): the specs it allows, a getter for their fields, and
# what that getter returns for empty properties. Encoding reads only these fields,
# so the common no-properties case costs one C-level attribute fetch.
_BY_CONTEXT: Final[
    dict[int, tuple[tuple[PropertySpec, ...], Callable[[Properties], Any], Any]]
] = {}
for _context in (WILL, *PacketType):
    _specs = tuple(spec for spec in SPECS if spec.allowed >> _context & 1)
    if _specs:
        _get = _getter([spec.name for spec in _specs])
        _BY_CONTEXT[_context] = (_specs, _get, _get(Properties()))


def _context_name(context: int) -> str:
    return "Will properties" if context == WILL else PacketType(context).name


# ---------------------------------------------------------------- encoding


def _encode_byte(value: int) -> bytes:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"byte out of range: {value}")
    return bytes((value,))


def _encode_pair(pair: tuple[str, str]) -> bytes:
    return encode_string(pair[0]) + encode_string(pair[1])


_VALUE_ENCODERS: Final[dict[Kind, Callable[[Any], bytes]]] = {
    Kind.BYTE: _encode_byte,
    Kind.U16: encode_u16,
    Kind.U32: encode_u32,
    Kind.VBI: encode_vbi,
    Kind.STRING: encode_string,
    Kind.BINARY: encode_binary,
    Kind.PAIR: _encode_pair,
}


def encode_properties(props: Properties, context: int) -> bytes:
    """The property length followed by the properties, for packet type ``context``.

    Only properties that ``context`` can carry are read; others are left out,
    just as encoding for MQTT 3.1.1 leaves out all of them.
    """
    specs, get, empty = _BY_CONTEXT[context]
    values = get(props)
    if values == empty:
        return b"\x00"
    parts: list[bytes] = []
    for spec, value in zip(specs, values, strict=True):
        if value is None or value == []:
            continue
        ident = _IDENT_BYTES[spec.ident]
        encode_value = _VALUE_ENCODERS[spec.kind]
        items = value if isinstance(value, list) else (value,)
        if (
            spec.ident == _SUBSCRIPTION_IDENTIFIER
            and context != PacketType.PUBLISH
            and len(items) > 1
        ):
            raise ValueError("SUBSCRIBE carries at most one subscription identifier")
        for item in items:
            if spec.boolean and item not in (0, 1):
                raise ValueError(f"property {spec.name} must be 0 or 1, not {item!r}")
            if spec.nonzero is not None and item == 0:
                raise ValueError(f"property {spec.name} must not be 0")
            if spec.ident == _RESPONSE_TOPIC and not is_valid_topic_name(item):
                raise ValueError(f"response topic is not a valid topic name: {item!r}")
            parts.append(ident)
            parts.append(encode_value(item))
    body = b"".join(parts)
    return encode_vbi(len(body)) + body


_IDENT_BYTES: Final = {spec.ident: bytes((spec.ident,)) for spec in SPECS}

# ---------------------------------------------------------------- decoding

# Decoding looks properties up by their identifier byte in a flat table of plain
# tuples: (name, kind, allowed mask, boolean, nonzero reason or 0). All MQTT 5.0
# identifiers fit in one byte, so an identifier byte of 0x80 or more (the start
# of a longer variable byte integer) can only be unknown.
_BYTE, _U16, _U32, _VBI, _STRING, _BINARY, _PAIR = (int(k) for k in Kind)
_DECODE_TABLE: Final[list[tuple[str, int, int, bool, int] | None]] = [None] * 256
for _spec in SPECS:
    _DECODE_TABLE[_spec.ident] = (
        _spec.name,
        int(_spec.kind),
        _spec.allowed,
        _spec.boolean,
        int(_spec.nonzero or 0),
    )


def _short() -> MQTTError:
    return MQTTError("property runs past the property length", MALFORMED)


def _string_at(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    if pos + 2 > end:
        raise _short()
    stop = pos + 2 + (buf[pos] << 8 | buf[pos + 1])
    if stop > end:
        raise _short()
    return decode_utf8(buf[pos + 2 : stop]), stop


def decode_properties(reader: Reader, context: int) -> Properties:
    """Read a property length and the properties it covers, validating them for ``context``."""
    length = reader.vbi()
    props = Properties()
    if length == 0:
        return props
    buf = reader.buf
    pos = reader.pos
    end = pos + length
    if end > reader.end:
        raise MQTTError("property length exceeds the packet", MALFORMED)
    reader.pos = end
    seen = 0  # bit per identifier already read
    value: Any
    while pos < end:
        ident = buf[pos]
        pos += 1
        entry = _DECODE_TABLE[ident]
        if entry is None:
            raise MQTTError(f"unknown property identifier 0x{ident:02X}", MALFORMED)
        name, kind, allowed, boolean, nonzero = entry
        if not allowed >> context & 1:
            # Spec 2.2.2.2: an identifier not valid for the packet type is a malformed packet.
            raise MQTTError(
                f"property {name} is not allowed in {_context_name(context)}", MALFORMED
            )
        if kind == _STRING:
            value, pos = _string_at(buf, pos, end)
        elif kind == _PAIR:
            key, pos = _string_at(buf, pos, end)
            text, pos = _string_at(buf, pos, end)
            props.user_properties.append((key, text))
            continue  # the one property that may repeat freely
        elif kind == _U32:
            if pos + 4 > end:
                raise _short()
            value = int.from_bytes(buf[pos : pos + 4], "big")
            pos += 4
        elif kind == _U16:
            if pos + 2 > end:
                raise _short()
            value = buf[pos] << 8 | buf[pos + 1]
            pos += 2
        elif kind == _BYTE:
            if pos >= end:
                raise _short()
            value = buf[pos]
            pos += 1
            if boolean and value > 1:
                raise MQTTError(f"property {name} must be 0 or 1, not {value}", PROTOCOL_ERROR)
        elif kind == _BINARY:
            if pos + 2 > end:
                raise _short()
            stop = pos + 2 + (buf[pos] << 8 | buf[pos + 1])
            if stop > end:
                raise _short()
            value = buf[pos + 2 : stop]
            pos = stop
        else:
            value, pos = decode_vbi(buf, pos, end)
        if nonzero and value == 0:
            raise MQTTError(f"property {name} must not be 0", nonzero)
        if ident == _SUBSCRIPTION_IDENTIFIER:
            # PUBLISH carries one per matching subscription; SUBSCRIBE at most one.
            if seen >> ident & 1 and context != PacketType.PUBLISH:
                raise MQTTError(f"property {name} included more than once", PROTOCOL_ERROR)
            seen |= 1 << ident
            props.subscription_identifiers.append(value)
            continue
        if seen >> ident & 1:
            raise MQTTError(f"property {name} included more than once", PROTOCOL_ERROR)
        seen |= 1 << ident
        if ident == _RESPONSE_TOPIC and not is_valid_topic_name(value):
            # MQTT-3.3.2-14: the response topic is a topic name, so no wildcards.
            raise MQTTError("response topic is not a valid topic name", PROTOCOL_ERROR)
        setattr(props, name, value)
    return props
