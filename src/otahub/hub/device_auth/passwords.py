"""Device passwords: generated, hashed (argon2id) and checked."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
MAX_PASSWORD = 1024  # bytes, far beyond any real password; MQTT allows 65535


def generate_password() -> str:
    """A new random password: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def check_password_text(password: str) -> str | None:
    """Why ``password`` cannot be a device password, or None when it can."""
    if not password:
        return "the password is empty"
    if len(password.encode("utf-8")) > MAX_PASSWORD:
        return f"the password is longer than {MAX_PASSWORD} bytes"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        return "the password contains control characters (a line break?)"
    return None


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
