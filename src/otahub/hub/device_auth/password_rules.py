"""What a device password may be, and new ones: without the hub's dependencies,
for the CLI (``otahub device add --generate-password``) as much as for the hub."""

from __future__ import annotations

import secrets

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
