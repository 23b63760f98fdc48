"""The dashboard's session cookie and CSRF tokens."""

from __future__ import annotations

import time

from otahub.hub.dashboard.session import Sessions


def test_a_session_cookie_reads_back_until_it_expires() -> None:
    sessions = Sessions("token-a", lifetime_s=60)
    session, cookie = sessions.new()
    assert sessions.read(cookie) == session
    expired = Sessions("token-a", lifetime_s=-1)
    _old, stale = expired.new()
    assert sessions.read(stale) is None


def test_a_cookie_with_a_changed_expiry_or_id_is_refused() -> None:
    sessions = Sessions("token-a")
    _session, cookie = sessions.new()
    expires, sid, signature = cookie.split(".", 2)
    later = f"{int(expires) + 10**6}.{sid}.{signature}"
    assert sessions.read(later) is None
    assert sessions.read(f"{expires}.other.{signature}") is None
    assert sessions.read("garbage") is None
    assert sessions.read("") is None


def test_a_new_admin_token_ends_every_session() -> None:
    _session, cookie = Sessions("token-a").new()
    assert Sessions("token-b").read(cookie) is None


def test_the_csrf_token_belongs_to_its_session() -> None:
    sessions = Sessions("token-a")
    one, _ = sessions.new()
    other, _ = sessions.new()
    assert sessions.check_csrf(one, sessions.csrf(one))
    assert not sessions.check_csrf(one, sessions.csrf(other))
    assert not sessions.check_csrf(one, None)
    assert not sessions.check_csrf(one, "")


def test_sign_in_compares_with_the_admin_token_and_no_auth_is_open() -> None:
    sessions = Sessions("token-a")
    assert sessions.check_token(" token-a\n")
    assert not sessions.check_token("token-b")
    assert Sessions(None).open
    assert Sessions(None).check_token("anything")
    assert time.time() < Sessions(None).new()[0].expires
