"""Admin authentication: one bearer token, kept in the data dir or configured."""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from otahub.hub.private_file import write_private

TOKEN_FILE = "admin.token"


def load_or_create_token(data_dir: Path, configured: str | None = None) -> str:
    """The configured token (the ``admin_token`` setting) if any, else the token
    file (written on first start, 0600)."""
    if configured and configured.strip():
        return configured.strip()
    path = data_dir / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing
    token = secrets.token_urlsafe(32)
    write_private(path, f"{token}\n")
    return token


# Declares the scheme in the OpenAPI document (the docs' Authorize button);
# the check and its answers are AdminAuth's own.
_bearer = HTTPBearer(
    scheme_name="adminToken",
    description=f"The admin token: <data-dir>/{TOKEN_FILE}, or the hub's admin_token setting",
    auto_error=False,
)


class AdminAuth:
    """FastAPI dependency; ``token=None`` disables the check (``--no-auth``)."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value passes, parsed as the dependency
        parses it; for routes run without the framework (``direct.py``), which
        leave every refusal, and its answer, to the dependency."""
        if self._token is None:
            return True
        scheme, _, credentials = (authorization or "").partition(" ")
        given = credentials.strip()
        return (
            scheme.lower() == "bearer"
            and bool(given)
            and secrets.compare_digest(given.encode(), self._token)
        )

    async def __call__(
        self, given: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        if self._token is None:
            return
        credentials = "" if given is None else given.credentials.strip()
        if not credentials:
            raise HTTPException(
                401,
                "missing admin token: send 'Authorization: Bearer <token>' "
                f"(the token is in <data-dir>/{TOKEN_FILE})",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not secrets.compare_digest(credentials.encode(), self._token):
            raise HTTPException(
                401,
                "invalid admin token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
