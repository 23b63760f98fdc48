"""Offering a firmware package to a child through the file-transfer service.

The file's name is the update's capability: ``<child>/firmware_update/<key>``
with ``key`` an HMAC of the update id, the child and the package's SHA-256
(64 hex digits, the length of upstream's cache key). Whoever was given the
URL may download it while the update is unfinished; nobody can guess it, and
a later update of the same package gets another name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from otahub.hub.drivers.base import DriverContext
from otahub.hub.drivers.download_links import link_signer
from otahub.hub.drivers.file_transfer.store import FileTransferRoot
from otahub.hub.services.integrity import FirmwareCorrupt
from otahub.hub.services.views import UpdateView
from otahub.protocols import tedge_legacy as legacy

PURPOSE = "file-transfer"
KEY_HEX = 64


class OfferFailed(Exception):
    """The package of an update cannot be served (deleted, or not in a local store)."""


@dataclass(frozen=True, slots=True)
class OfferedFile:
    key: str
    url: str  # on the hub's file-transfer service, what the child downloads
    remote_url: str  # where the package came from, or the hub's API URL for it
    sha256: str
    size: int


def _resource(child: str, sha256: str) -> str:
    return f"{child}/{sha256}"


def file_key(data_dir: Path, update_id: int, child: str, sha256: str) -> str:
    """The name the package of ``update_id`` is offered to ``child`` under."""
    signer = link_signer(data_dir)
    return signer.token(PURPOSE, update_id, _resource(child, sha256), hex_chars=KEY_HEX)


def is_file_key(data_dir: Path, update_id: int, child: str, sha256: str, key: str) -> bool:
    signer = link_signer(data_dir)
    return signer.check(PURPOSE, update_id, _resource(child, sha256), key, hex_chars=KEY_HEX)


def file_root(ctx: DriverContext) -> FileTransferRoot:
    return FileTransferRoot(ctx.settings.data_dir / "file-transfer")


async def offer_firmware(ctx: DriverContext, child: str, update: UpdateView) -> OfferedFile:
    """Link the update's package as ``<child>/firmware_update/<key>`` and say where it is."""
    if update.package_id is None:
        raise OfferFailed(f"the package of update {update.id} was deleted")
    package = await ctx.core.firmware.get(update.package_id)
    try:
        # checked before the child is told: a large blob is hashed now, not on its GET
        blob = await ctx.core.integrity.check(package.sha256)
    except FirmwareCorrupt as exc:
        raise OfferFailed(exc.detail) from None
    if blob is None:
        raise OfferFailed(f"the content of {package.title} {package.version} is not stored")
    remote_url = package.source_url or f"{ctx.public_url}/api/v1/firmware/{package.id}/content"
    key = file_key(ctx.settings.data_dir, update.id, child, package.sha256)
    try:
        file_root(ctx).link_firmware(child, key, blob)
    except OSError as exc:
        raise OfferFailed(f"cannot offer {package.title} {package.version}: {exc}") from exc
    return OfferedFile(
        key=key,
        url=f"{ctx.public_url}{legacy.file_path(child, key)}",
        remote_url=remote_url,
        sha256=package.sha256,
        size=package.size,
    )
