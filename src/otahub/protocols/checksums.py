"""Firmware checksums in the exact encodings the device platforms use.

ThingsBoard prints a checksum as Guava's ``HashCode.toString()``: lowercase
hex of the hash's bytes. For the 32-bit hashes (CRC32, MURMUR3_32) those
bytes are little-endian, so the text is byte-reversed compared with the usual
``%08x``. MURMUR3_128 is the x64 variant with seed 0. Everything else is the
plain lowercase hex digest. The hub computes all of them once, while an upload
streams through; the agent uses the same code to verify what it downloaded.
"""

from __future__ import annotations

import enum
import hashlib
import zlib
from collections.abc import Iterable
from typing import Protocol

import mmh3


class Algorithm(enum.StrEnum):
    """Checksum algorithms, named as ThingsBoard's ``ChecksumAlgorithm`` enum."""

    MD5 = "MD5"
    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"
    CRC32 = "CRC32"
    MURMUR3_32 = "MURMUR3_32"
    MURMUR3_128 = "MURMUR3_128"

    @classmethod
    def parse(cls, name: str) -> Algorithm:
        """Accept any case and an optional dash (``sha-256``), as devices send them."""
        key = name.strip().upper().replace("-", "")
        key = {"MURMUR332": "MURMUR3_32", "MURMUR3128": "MURMUR3_128"}.get(key, key)
        try:
            return cls(key)
        except ValueError:
            known = ", ".join(a.value for a in cls)
            raise ValueError(f"unknown checksum algorithm {name!r} (known: {known})") from None


class _Hasher(Protocol):
    """One running hash: ``update`` with chunks, then ``hexdigest`` in platform encoding."""

    def update(self, data: bytes | bytearray | memoryview) -> None: ...

    def hexdigest(self) -> str: ...


class _Hashlib(_Hasher):
    def __init__(self, name: str) -> None:
        self._h = hashlib.new(name)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class _Crc32(_Hasher):
    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def hexdigest(self) -> str:
        return (self._crc & 0xFFFFFFFF).to_bytes(4, "little").hex()


class _Murmur3_32(_Hasher):
    def __init__(self) -> None:
        self._h = mmh3.mmh3_32(seed=0)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        value: int = self._h.uintdigest()
        return value.to_bytes(4, "little").hex()


class _Murmur3_128(_Hasher):
    def __init__(self) -> None:
        self._h = mmh3.mmh3_x64_128(seed=0)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        digest: bytes = self._h.digest()
        return digest.hex()


def new(algorithm: Algorithm | str) -> _Hasher:
    """A fresh streaming hasher for one algorithm."""
    algo = algorithm if isinstance(algorithm, Algorithm) else Algorithm.parse(algorithm)
    if algo is Algorithm.CRC32:
        return _Crc32()
    if algo is Algorithm.MURMUR3_32:
        return _Murmur3_32()
    if algo is Algorithm.MURMUR3_128:
        return _Murmur3_128()
    return _Hashlib(algo.value.lower())


class MultiHasher:
    """Every algorithm at once over a single pass of the data."""

    def __init__(self, algorithms: Iterable[Algorithm] = tuple(Algorithm)) -> None:
        self._hashers = {algo: new(algo) for algo in algorithms}
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        for hasher in self._hashers.values():
            hasher.update(data)
        self.size += len(data)

    def hexdigests(self) -> dict[Algorithm, str]:
        return {algo: hasher.hexdigest() for algo, hasher in self._hashers.items()}


def checksum(algorithm: Algorithm | str, data: bytes) -> str:
    """The checksum of ``data`` in the platform's encoding."""
    hasher = new(algorithm)
    hasher.update(data)
    return hasher.hexdigest()


def normalize(value: str) -> str:
    """Canonical form of a checksum someone typed: lowercase, no ``0x`` prefix."""
    text = value.strip().lower()
    return text[2:] if text.startswith("0x") else text


def matches(expected: str, actual_hexdigest: str) -> bool:
    """Compare as devices do: case-insensitive, ``0x`` prefix ignored."""
    return normalize(expected) == normalize(actual_hexdigest)
