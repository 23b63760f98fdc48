"""The dashboard's sign-in: a signed, expiring session cookie and CSRF tokens.

Signing in takes the admin token; the cookie then carries an expiry and a
random session id, signed with a key derived from the admin token (a new
token ends every session). The CSRF token of a session is an HMAC of its id,
so forms can carry it and the server can check it without storing anything.
With ``--no-auth`` there is no token: the dashboard is open as the API is,
and a session is given to every visitor only to carry its CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

COOKIE = "otahub_session"
SESSION_S = 12 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    expires: int


class Sessions:
    def __init__(self, admin_token: str | None, *, lifetime_s: int = SESSION_S) -> None:
        self.open = admin_token is None
        self._token = admin_token.encode() if admin_token else None
        secret = admin_token.encode() if admin_token else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"otahub dashboard session\0" + secret).digest()
        self.lifetime_s = lifetime_s

    def check_token(self, given: str) -> bool:
        if self._token is None:
            return True
        return secrets.compare_digest(given.strip().encode(), self._token)

    def new(self) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        session = Session(secrets.token_urlsafe(18), int(time.time()) + self.lifetime_s)
        payload = f"{session.expires}.{session.id}"
        return session, f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries; None when absent, forged or expired."""
        if not cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        expires, _, session_id = payload.partition(".")
        if not session_id or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            until = int(expires)
        except ValueError:
            return None
        if until < time.time():
            return None
        return Session(session_id, until)

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf.{session.id}")

    def check_csrf(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(session), given or "")

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
