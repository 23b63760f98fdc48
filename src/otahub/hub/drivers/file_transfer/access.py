"""Who may read and write what below ``/te/v1/files``.

- The files the hub offers (``<child>/firmware_update/<key>`` linked to a
  blob) are read-only to everybody. Their name is the update's capability:
  they are served while that update is unfinished, to whoever has the URL.
- A device presenting its credentials as HTTP Basic (its name and the
  password of ``otahub device add --password-file``) uses ``<own name>/...``
  only.
- Clients without credentials follow the MQTT endpoint's rule: from the
  ``--anonymous-from`` networks they are the gateway's trusted connectors and
  may use the paths of every device without a password; from elsewhere only
  with ``--allow-anonymous``, and then only paths of devices that exist.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from starlette.requests import Request

from otahub.hub.core import HubCore
from otahub.hub.device_auth.passwords import verify_password_async
from otahub.hub.drivers.base import DriverContext
from otahub.hub.drivers.file_transfer.offer import is_file_key
from otahub.hub.drivers.file_transfer.store import FileTransferRoot
from otahub.hub.services.devices import PASSWORD_DIALECTS
from otahub.hub.services.errors import NotFound
from otahub.mqtt import parse_networks, peer_in
from otahub.protocols import tedge_legacy as legacy

log = logging.getLogger("otahub.hub.file_transfer")

REALM_HEADER = {"www-authenticate": 'Basic realm="otahub file transfer", charset="UTF-8"'}
_WRITES = ("PUT", "DELETE")


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    text: str
    reason: str  # for the log line
    headers: tuple[tuple[str, str], ...] = ()


def _basic_credentials(header: str) -> tuple[str, bytes] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    name, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return name.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class FileAccess:
    def __init__(self, ctx: DriverContext, root: FileTransferRoot) -> None:
        self.core: HubCore = ctx.core
        self.root = root
        self.data_dir = ctx.settings.data_dir
        self.anonymous_from = parse_networks(ctx.settings.anonymous_from)
        self.allow_anonymous = ctx.settings.allow_anonymous

    async def check(self, request: Request, path: legacy.FileTransferPath) -> Refused | None:
        """None when ``request`` may do what it asks on ``path``; else why not.

        Logs one line for each refusal.
        """
        refused = await self._decide(request, path)
        if refused is not None:
            client = request.client
            peer = f"{client.host}:{client.port}" if client is not None else "?"
            log.warning(
                "file transfer: refused %s %s from %s: %s",
                request.method,
                path.relative or "/",
                peer,
                refused.reason,
            )
        return refused

    async def _decide(self, request: Request, path: legacy.FileTransferPath) -> Refused | None:
        owner = path.segments[0] if path.segments else None
        device: str | None = None
        header = request.headers.get("authorization")
        if header is not None:
            device_or_refusal = await self._authenticate(header)
            if isinstance(device_or_refusal, Refused):
                return device_or_refusal
            device = device_or_refusal
            if owner != device and not await self._is_gateway_of(device, owner):
                return Refused(
                    403,
                    "Forbidden",
                    f"device {device!r} may use only its own paths ({device}/...) "
                    "and those of the children it registered as their gateway",
                )
        blob = self.root.firmware_blob(path)
        if blob is not None and owner is not None:
            # a file the hub offers: read-only, served while its update runs
            if request.method in _WRITES:
                return Refused(
                    403,
                    f'"{path.relative}" is offered by the hub and read-only',
                    "the file is offered by the hub (read-only)",
                )
            if await self._offered_now(owner, path.segments[-1], blob):
                return None
            return Refused(
                404,
                legacy.file_not_found_message(path),
                "no unfinished update offers this file",
            )
        if device is not None:
            return None
        return await self._anonymous(request, owner)

    async def _is_gateway_of(self, gateway: str, child: str | None) -> bool:
        """Whether the registry says ``gateway`` registered ``child`` (its owner)."""
        if child is None:
            return False
        try:
            return (await self.core.devices.get(child)).owner == gateway
        except NotFound:
            return False

    async def _authenticate(self, header: str) -> str | Refused:
        credentials = _basic_credentials(header)
        unauthorized = Refused(401, "Unauthorized", "", headers=tuple(REALM_HEADER.items()))
        if credentials is None:
            return _because(unauthorized, "malformed Authorization header")
        name, password = credentials
        try:
            found = await self.core.devices.get(name)
        except NotFound:
            return _because(unauthorized, f"no device {name!r}")
        if found.dialect not in PASSWORD_DIALECTS or found.password_hash is None:
            return _because(unauthorized, f"device {name!r} has no password")
        if not await verify_password_async(found.password_hash, password):
            return _because(unauthorized, f"wrong password for device {name!r}")
        return found.name

    async def _offered_now(self, owner: str, key: str, blob: str) -> bool:
        """Whether the unfinished firmware update of ``owner`` offers this blob under ``key``.

        Asked on every GET of an offered file (each Range of a resumed download):
        one row, the device's single unfinished firmware update, not a list of them.
        """
        # None too for a link left behind by a deleted device
        update = await self.core.updates.active_for(owner)
        return (
            update is not None
            and update.driver_state.get("key") == key
            and is_file_key(self.data_dir, update.id, owner, blob, key)
        )

    async def _anonymous(self, request: Request, owner: str | None) -> Refused | None:
        client = request.client
        trusted = client is not None and peer_in(f"{client.host}:0", self.anonymous_from)
        if not trusted and not self.allow_anonymous:
            return Refused(
                401,
                "Unauthorized",
                "no credentials, and anonymous access is allowed only from "
                + (", ".join(str(n) for n in self.anonymous_from) or "nowhere"),
                headers=tuple(REALM_HEADER.items()),
            )
        if owner is None:
            return None  # the root itself: answered by the file rules (404, 409)
        try:
            found = await self.core.devices.get(owner)
        except NotFound:
            found = None
        if found is not None and found.password_hash is not None:
            return Refused(
                401,
                "Unauthorized",
                f"device {owner!r} has credentials; anonymous clients may not use its paths",
                headers=tuple(REALM_HEADER.items()),
            )
        if found is None and not trusted:
            return Refused(
                403,
                "Forbidden",
                f"no device {owner!r}; anonymous clients from beyond the trusted networks "
                "may not bring new paths into being",
            )
        return None


def _because(refused: Refused, reason: str) -> Refused:
    return Refused(refused.status, refused.text, reason, refused.headers)
