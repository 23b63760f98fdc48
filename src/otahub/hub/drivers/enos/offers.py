"""What the hub tells an EnOS device about an update's firmware."""

from __future__ import annotations

from otahub.hub.core import HubCore
from otahub.hub.drivers.enos.downloads import DownloadUrls
from otahub.hub.services.errors import NotFound
from otahub.hub.services.views import UpdateView
from otahub.protocols import enos
from otahub.protocols.checksums import Algorithm


class OfferError(Exception):
    """The update cannot be expressed in EnOS terms; the message says why."""


async def firmware_for(core: HubCore, urls: DownloadUrls, update: UpdateView) -> enos.Firmware:
    """The flat ``upgrade`` params (and ``getversion`` entry) for ``update``.

    ``sign`` is the MD5 EnOS documents; ``sha256`` is otahub's extension,
    which the SDKs ignore. Raises :class:`OfferError`.
    """
    if update.package_id is None:
        raise OfferError("the update's package was deleted")
    try:
        package = await core.firmware.get(update.package_id)
    except NotFound:
        raise OfferError("the update's package was deleted") from None
    if package.size > enos.MAX_FILE_SIZE:
        # The Java SDKs cast fileSize to int.
        raise OfferError(f"the package is {package.size} bytes; EnOS fileSize must be below 2^31")
    return enos.Firmware(
        version=update.version,
        sign=package.checksums[Algorithm.MD5].lower(),
        sign_method="md5",
        file_url=urls.file_url(update.id, package.sha256),
        file_size=package.size,
        sha256=package.sha256,
    )
