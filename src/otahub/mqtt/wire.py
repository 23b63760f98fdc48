"""MQTT data representations (spec 1.5): integers, strings, binary data.

Encoders raise ``ValueError`` for values that cannot be represented (they
are programming errors on our side); decoders raise only ``MQTTError``,
because their input comes from the network.
"""

from __future__ import annotations

import struct
from typing import Final

from otahub.mqtt.errors import MQTTError
from otahub.mqtt.reason_codes import ReasonCode

MALFORMED: Final = ReasonCode.MALFORMED_PACKET
MAX_VBI: Final = 268_435_455  # largest value a 4-byte variable byte integer holds

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
# Single-byte variable byte integers are by far the most common; build them once.
_SMALL_VBI: Final = tuple(bytes((i,)) for i in range(128))


def encode_vbi(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL_VBI[value]
    if not 0 <= value <= MAX_VBI:
        raise ValueError(f"variable byte integer out of range: {value}")
    out = bytearray()
    while value:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | 0x80 if value else byte)
    return bytes(out)


def decode_vbi(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """Decode a variable byte integer at ``pos``; returns ``(value, next_pos)``."""
    value = 0
    shift = 0
    for _ in range(4):
        if pos >= end:
            raise MQTTError("truncated variable byte integer", MALFORMED)
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            # A zero final byte after a continuation byte is a non-minimal encoding,
            # which MQTT-1.5.5-1 forbids.
            if byte == 0 and shift:
                raise MQTTError("variable byte integer not minimally encoded", MALFORMED)
            return value, pos
        shift += 7
    raise MQTTError("variable byte integer longer than 4 bytes", MALFORMED)


def encode_u16(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"two byte integer out of range: {value}")
    return _U16.pack(value)


def encode_u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF_FFFF:
        raise ValueError(f"four byte integer out of range: {value}")
    return _U32.pack(value)


def encode_string(value: str) -> bytes:
    """A UTF-8 encoded string with its two byte length prefix (spec 1.5.4)."""
    if "\x00" in value:
        raise ValueError("MQTT strings must not contain U+0000")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise ValueError(f"string is not encodable as UTF-8: {exc}") from None
    if len(data) > 0xFFFF:
        raise ValueError("MQTT strings are limited to 65535 bytes")
    return _U16.pack(len(data)) + data


def encode_binary(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("MQTT binary data is limited to 65535 bytes")
    return _U16.pack(len(value)) + bytes(value)


def decode_utf8(data: bytes, what: str = "string") -> str:
    """Strictly decode UTF-8 string data (no surrogates, overlong forms or U+0000).

    ``what`` names the field in the error ("topic name", say).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MQTTError(f"{what} is not valid UTF-8", MALFORMED) from None
    if "\x00" in text:
        raise MQTTError(f"{what} contains U+0000", MALFORMED)
    return text


class Reader:
    """Sequential reads from ``buf[pos:end]``; running past ``end`` is a malformed packet.

    It reads from immutable ``bytes``: slicing those is cheaper than slicing a
    memoryview for the short fields MQTT is made of, and yields the ``bytes``
    and ``str`` values packets hold without a second copy.
    """

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def _advance(self, n: int) -> int:
        start = self.pos
        if start + n > self.end:
            raise MQTTError("packet is shorter than its contents require", MALFORMED)
        self.pos = start + n
        return start

    def u8(self) -> int:
        return self.buf[self._advance(1)]

    def u16(self) -> int:
        start = self._advance(2)
        buf = self.buf
        return buf[start] << 8 | buf[start + 1]

    def u32(self) -> int:
        start = self._advance(4)
        return int.from_bytes(self.buf[start : start + 4], "big")

    def vbi(self) -> int:
        value, self.pos = decode_vbi(self.buf, self.pos, self.end)
        return value

    def take(self, n: int) -> bytes:
        start = self._advance(n)
        return self.buf[start : start + n]

    def binary(self) -> bytes:
        return self.take(self.u16())

    def utf8(self) -> str:
        return decode_utf8(self.take(self.u16()))

    def pair(self) -> tuple[str, str]:
        return self.utf8(), self.utf8()

    def rest(self) -> bytes:
        start = self.pos
        self.pos = self.end
        return self.buf[start : self.end]

    def expect_end(self, what: str) -> None:
        if self.pos != self.end:
            raise MQTTError(
                f"{what} has {self.end - self.pos} unexpected trailing bytes", MALFORMED
            )
