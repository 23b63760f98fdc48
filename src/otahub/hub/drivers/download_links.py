"""Per-update capability links: what a device downloads its update's firmware with.

A link carries an HMAC of the update id and the resource it opens (the
package's SHA-256 for EnOS, the file-transfer path for the thin-edge
dialects) under a key kept in the data dir, so nothing is stored per link and
links survive a restart. Whoever holds a link may read that one resource, and
only while the update is unfinished: after it succeeds, fails or is canceled
the link is refused, even if the same file is offered again by a later update.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import secrets
from pathlib import Path

from otahub.hub.core import HubCore
from otahub.hub.private_file import write_private
from otahub.hub.services.errors import NotFound
from otahub.hub.services.views import UpdateView
from otahub.hub.store.ids import is_row_id
from otahub.protocols.states import UpdateState, is_terminal

KEY_FILE = "download-links.key"
# the key's first name, when only EnOS links were signed: links already handed
# out stay valid after an upgrade
_OLD_KEY_FILE = "enos-download.key"
TOKEN_HEX = 32  # 128 bits of the HMAC


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


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

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


@functools.cache
def link_signer(data_dir: Path) -> LinkSigner:
    """The one signer of a data dir, shared by every driver of the hub using it."""
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
