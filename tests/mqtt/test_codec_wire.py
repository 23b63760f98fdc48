"""The data representations of spec section 1.5, on their own."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otahub.mqtt.errors import MQTTError
from otahub.mqtt.reason_codes import ReasonCode
from otahub.mqtt.wire import (
    MAX_VBI,
    Reader,
    decode_utf8,
    decode_vbi,
    encode_binary,
    encode_string,
    encode_u16,
    encode_u32,
    encode_vbi,
)

# The boundaries from the spec's table of Variable Byte Integer sizes (1.5.5).
VBI_TABLE = [
    (0, "00"),
    (127, "7F"),
    (128, "8001"),
    (16_383, "FF7F"),
    (16_384, "808001"),
    (2_097_151, "FFFF7F"),
    (2_097_152, "80808001"),
    (268_435_455, "FFFFFF7F"),
]


@pytest.mark.parametrize(("value", "wire"), VBI_TABLE)
def test_vbi_spec_table(value: int, wire: str) -> None:
    data = bytes.fromhex(wire)
    assert encode_vbi(value) == data
    assert decode_vbi(data, 0, len(data)) == (value, len(data))


@given(st.integers(0, MAX_VBI))
def test_vbi_round_trip(value: int) -> None:
    data = encode_vbi(value) + b"\xff"
    assert decode_vbi(data, 0, len(data)) == (value, len(data) - 1)


@pytest.mark.parametrize("value", [-1, MAX_VBI + 1])
def test_vbi_out_of_range(value: int) -> None:
    with pytest.raises(ValueError):
        encode_vbi(value)


@pytest.mark.parametrize(
    "wire",
    ["", "80", "FFFFFF", "FFFFFFFF7F", "8000", "FF8000", "FFFF8000"],
    ids=["empty", "cut", "cut-3", "five-bytes", "non-minimal-2", "non-minimal-3", "non-minimal-4"],
)
def test_vbi_malformed(wire: str) -> None:
    data = bytes.fromhex(wire)
    with pytest.raises(MQTTError) as info:
        decode_vbi(data, 0, len(data))
    assert info.value.reason_code == ReasonCode.MALFORMED_PACKET


def test_integers() -> None:
    assert encode_u16(0x1234) == b"\x12\x34"
    assert encode_u32(0x12345678) == b"\x12\x34\x56\x78"
    r = Reader(b"\x01\x02\x03\x04\x05\x06\x07", 0)
    assert (r.u8(), r.u16(), r.u32()) == (0x01, 0x0203, 0x04050607)
    for encoder, bad in ((encode_u16, 0x10000), (encode_u16, -1), (encode_u32, 2**32)):
        with pytest.raises(ValueError):
            encoder(bad)


def test_spec_string_example() -> None:
    # Spec 1.5.4: "A" followed by U+2A6D4 (a 4-byte sequence).
    assert encode_string("A\U0002a6d4") == bytes.fromhex("0005 41F0AA9B94")


# Every code point but surrogates (which UTF-8 cannot carry) and U+0000.
mqtt_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


@given(mqtt_text)
@settings(max_examples=300, deadline=None)
def test_string_round_trip(text: str) -> None:
    data = encode_string(text)
    assert Reader(data).utf8() == text


@given(st.binary(max_size=40))
@settings(max_examples=300, deadline=None)
def test_utf8_decoding_raises_only_mqtt_errors(data: bytes) -> None:
    try:
        text = decode_utf8(data)
    except MQTTError as exc:
        assert exc.reason_code == ReasonCode.MALFORMED_PACKET
    else:
        assert "\x00" not in text and text.encode("utf-8") == data


@pytest.mark.parametrize("bad", ["\x00", "a\x00b", "\ud800", "\udfff", "x" * 65536])
def test_string_encoding_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_string(bad)


def test_string_length_limit() -> None:
    assert len(encode_string("x" * 65535)) == 65537
    assert len(encode_binary(bytes(65535))) == 65537
    with pytest.raises(ValueError):
        encode_binary(bytes(65536))


def test_binary_and_pairs() -> None:
    assert encode_binary(b"\x00\xff") == b"\x00\x02\x00\xff"
    r = Reader(b"\x00\x02\x00\xff" + encode_string("k") + encode_string("v"))
    assert r.binary() == b"\x00\xff"
    assert r.pair() == ("k", "v")
    r.expect_end("test")


@pytest.mark.parametrize(
    ("wire", "read"),
    [
        ("", "u8"),
        ("01", "u16"),
        ("010203", "u32"),
        ("0003 6162", "utf8"),
        ("0002 61", "binary"),
        ("0001 61 0001", "pair"),
        ("00", "u16"),
    ],
)
def test_reader_truncation_is_malformed(wire: str, read: str) -> None:
    r = Reader(bytes.fromhex(wire))
    with pytest.raises(MQTTError) as info:
        getattr(r, read)()
    assert info.value.reason_code == ReasonCode.MALFORMED_PACKET


def test_reader_respects_its_end() -> None:
    # Bytes past ``end`` belong to something else and must not be read.
    r = Reader(b"\x00\x02ab", 0, 3)
    with pytest.raises(MQTTError):
        r.utf8()
    r = Reader(b"\x01\x02", 0, 1)
    assert r.u8() == 1
    r.expect_end("test")
    with pytest.raises(MQTTError):
        r.u8()
