"""Offering a firmware package to a child through the file-transfer service."""

from __future__ import annotations

from dataclasses import dataclass

from otahub.hub.drivers.base import DriverContext
from otahub.hub.drivers.file_transfer.store import FileTransferRoot
from otahub.hub.services.integrity import FirmwareCorrupt
from otahub.hub.services.views import UpdateView
from otahub.protocols import tedge_legacy as legacy


class OfferFailed(Exception):
    """The package of an update cannot be served (deleted, or not in a local store)."""


@dataclass(frozen=True, slots=True)
class OfferedFile:
    key: str
    url: str  # on the hub's file-transfer service, what the child downloads
    remote_url: str  # where the package came from, or the hub's API URL for it
    sha256: str
    size: int


def file_root(ctx: DriverContext) -> FileTransferRoot:
    return FileTransferRoot(ctx.settings.data_dir / "file-transfer")


async def offer_firmware(ctx: DriverContext, child: str, update: UpdateView) -> OfferedFile:
    """Link the update's package as ``<child>/firmware_update/<key>`` and say where it is.

    ``key`` is upstream's cache key, the SHA-256 of the package's source URL.
    """
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
    key = legacy.cache_key(remote_url)
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
