"""Per-update capability links: what a device downloads its update's firmware with.

A link carries an HMAC of the update id and the resource it opens (the
package's SHA-256 for EnOS, the file-transfer path for the thin-edge
dialects) under a key kept in the database, so nothing is stored per link,
links survive a restart, and every hub on the database honours the links any
of them handed out (a device moving to another hub may keep downloading with
the same link, given the other hub's address). The first hub on a database
stores the key it had in its data dir, so links given out before stay valid.
Whoever holds a link may read that one resource, and only while the update
is unfinished: after it succeeds, fails or is canceled the link is refused,
even if the same file is offered again by a later update.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from otahub.hub.private_file import write_private
from otahub.hub.services.errors import NotFound
from otahub.hub.services.views import UpdateView
from otahub.hub.store.database import Database
from otahub.hub.store.ids import is_row_id
from otahub.hub.store.models import HubSecret
from otahub.protocols.states import UpdateState, is_terminal

if TYPE_CHECKING:
    from otahub.hub.core import HubCore

KEY_FILE = "download-links.key"
# the key's first name, when only EnOS links were signed: links already handed
# out stay valid after an upgrade
_OLD_KEY_FILE = "enos-download.key"
TOKEN_HEX = 32  # 128 bits of the HMAC
SECRET_NAME = "download-links-key"


def _read_key(path: Path) -> bytes | None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        existing = bytes.fromhex(path.read_text().strip())
        if len(existing) >= 32:
            return existing
    return None


def load_or_create_key(data_dir: Path) -> bytes:
    """The link signing key, created (0600) on first start."""
    path = data_dir / KEY_FILE
    key = _read_key(path)
    if key is not None:
        return key
    key = _read_key(data_dir / _OLD_KEY_FILE) or secrets.token_bytes(32)
    write_private(path, f"{key.hex()}\n")
    return key


async def shared_key(db: Database, local: bytes) -> bytes:
    """The key every hub on ``db`` signs with: the first one's ``local`` key, stored once."""
    async with db.session() as s:
        stored = await s.scalar(select(HubSecret.value).where(HubSecret.name == SECRET_NAME))
        if stored is None:
            s.add(HubSecret(name=SECRET_NAME, value=local.hex()))
            try:
                await s.commit()
                return local
            except IntegrityError:  # another hub stored its key first
                await s.rollback()
            stored = await s.scalar(select(HubSecret.value).where(HubSecret.name == SECRET_NAME))
    if stored is None:
        raise RuntimeError("the download link key vanished from the database")
    try:
        key = bytes.fromhex(stored)
    except ValueError:
        raise RuntimeError("the download link key in the database is not hex") from None
    if len(key) < 32:
        raise RuntimeError("the download link key in the database is shorter than 32 bytes")
    return key


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def rekey(self, key: bytes) -> None:
        """Sign and check with ``key`` from now on (the database's, at start)."""
        self._key = key

    @property
    def key(self) -> bytes:
        return self._key

    def token(
        self, purpose: str, update_id: int, resource: str, *, hex_chars: int = TOKEN_HEX
    ) -> str:
        message = f"{purpose}:{update_id}:{resource}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:hex_chars]

    def check(
        self, purpose: str, update_id: int, resource: str, token: str, *, hex_chars: int = TOKEN_HEX
    ) -> bool:
        expected = self.token(purpose, update_id, resource, hex_chars=hex_chars)
        return hmac.compare_digest(expected, token)


def link_signer(data_dir: Path) -> LinkSigner:
    """The one signer of a data dir, shared by every driver of the hub using it (and
    given the database's key at start, whichever spelling of the dir named it)."""
    return _signer(data_dir.resolve())


@functools.cache
def _signer(data_dir: Path) -> LinkSigner:
    return LinkSigner(load_or_create_key(data_dir))


async def active_update(core: HubCore, update_id: int) -> UpdateView | None:
    """The update while it is unfinished; None once it ended (or never was)."""
    if not is_row_id(update_id):
        return None
    try:
        update = await core.updates.get(update_id, with_transitions=False)
    except NotFound:
        return None
    return None if is_terminal(UpdateState(update.state)) else update
