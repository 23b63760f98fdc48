"""Checking a downloaded image before anything is installed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from otahub.protocols import checksums

_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    reason: str | None = None


def _verify(path: Path, expected: Mapping[str, str], size: int | None) -> VerifyResult:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return VerifyResult(False, f"size mismatch: expected {size} bytes, got {actual_size}")
    try:
        hashers = {name: checksums.new(name) for name in expected}
    except ValueError as exc:
        return VerifyResult(False, str(exc))
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            for hasher in hashers.values():
                hasher.update(block)
    for name, hasher in hashers.items():
        digest = hasher.hexdigest()
        if not checksums.matches(expected[name], digest):
            algo = checksums.Algorithm.parse(name).value
            return VerifyResult(
                False, f"{algo} checksum mismatch: expected {expected[name]}, got {digest}"
            )
    return VerifyResult(True)


async def verify_file(
    path: Path, expected: Mapping[str, str], size: int | None = None
) -> VerifyResult:
    """Compare size and every expected checksum (algorithm name -> hex), off the event loop."""
    return await asyncio.to_thread(_verify, path, expected, size)
