"""Checksum encodings against vectors computed independently, per the reference."""

from __future__ import annotations

import hashlib
import zlib

import mmh3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otahub.protocols import checksums
from otahub.protocols.checksums import Algorithm, MultiHasher

# The table in thingsboard.md section 9, for b"123456789".
REFERENCE = {
    Algorithm.MD5: "25f9e794323b453885f5181f1b624d0b",
    Algorithm.SHA256: "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
    Algorithm.CRC32: "2639f4cb",
    Algorithm.MURMUR3_32: "82f3feb4",
    Algorithm.MURMUR3_128: "a4cc66db5e64843c05a11e3ac7faf899",
}


def by_hand(algo: Algorithm, data: bytes) -> str:
    """The reference's one-liners, written out independently of the module."""
    if algo is Algorithm.CRC32:
        return (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little").hex()
    if algo is Algorithm.MURMUR3_32:
        return mmh3.hash(data, signed=False).to_bytes(4, "little").hex()
    if algo is Algorithm.MURMUR3_128:
        return mmh3.hash_bytes(data).hex()
    return hashlib.new(algo.value.lower(), data).hexdigest()


@pytest.mark.parametrize("algo", list(REFERENCE))
def test_reference_vectors(algo: Algorithm) -> None:
    assert checksums.checksum(algo, b"123456789") == REFERENCE[algo]


def test_32_bit_hashes_are_byte_reversed() -> None:
    assert checksums.checksum("CRC32", b"123456789") == bytes.fromhex("cbf43926")[::-1].hex()
    assert checksums.checksum("MURMUR3_32", b"123456789") == bytes.fromhex("b4fef382")[::-1].hex()


def test_empty_input() -> None:
    digests = MultiHasher().hexdigests()
    assert digests[Algorithm.CRC32] == "00000000"
    assert digests[Algorithm.MURMUR3_32] == "00000000"
    assert digests[Algorithm.SHA256] == hashlib.sha256(b"").hexdigest()
    assert digests[Algorithm.MURMUR3_128] == mmh3.hash_bytes(b"").hex()


@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0, max_value=4096), max_size=8))
def test_streaming_equals_one_shot(data: bytes, cuts: list[int]) -> None:
    hasher = MultiHasher()
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        hasher.update(data[start:cut])
        start = cut
    hasher.update(memoryview(data)[start:])
    assert hasher.size == len(data)
    assert hasher.hexdigests() == {algo: by_hand(algo, data) for algo in Algorithm}


@pytest.mark.parametrize(
    ("text", "algo"),
    [
        ("sha256", Algorithm.SHA256),
        ("SHA-512", Algorithm.SHA512),
        ("murmur3_32", Algorithm.MURMUR3_32),
        ("Murmur3-128", Algorithm.MURMUR3_128),
        (" md5 ", Algorithm.MD5),
    ],
)
def test_parse(text: str, algo: Algorithm) -> None:
    assert Algorithm.parse(text) is algo


def test_parse_unknown() -> None:
    with pytest.raises(ValueError, match="unknown checksum algorithm"):
        Algorithm.parse("sha1")


def test_matches_like_a_device() -> None:
    assert checksums.matches("0xD87F7E0C", "d87f7e0c")
    assert not checksums.matches("d87f7e0d", "d87f7e0c")
