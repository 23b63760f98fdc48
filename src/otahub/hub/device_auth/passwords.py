"""Device passwords: hashed (argon2id) and checked (what one may be: ``password_rules``)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: bytes) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password_async(password: str) -> str:
    # argon2 takes tens of milliseconds of CPU on purpose: not on the event loop
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(stored_hash: str, password: bytes) -> bool:
    return await asyncio.to_thread(verify_password, stored_hash, password)
