"""Device-facing firmware downloads for EnOS ``fileUrl``.

The admin API's content route needs the admin token, which devices never
have. Each update instead gets its own unguessable URL::

    {public_url}/enos/ota/{update_id}/{token}

(or the path alone with ``--enos-file-url relative``, which devices fetch
through the HTTP broker pair in ``broker_http``).

``token`` is an HMAC of the update id and the package's SHA-256 (see
``download_links``, shared with the thin-edge dialects). A URL works only
while its update is unfinished: once the update succeeds, fails or is
canceled, the link is dead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import APIRouter, FastAPI, Request, Response

from otahub.hub.core import HubCore
from otahub.hub.drivers.download_links import LinkSigner, active_update
from otahub.hub.http.direct import confirm, direct_routes
from otahub.hub.http.files import file_response
from otahub.hub.http.ids import RowId
from otahub.hub.http.problems import problem
from otahub.hub.services.errors import NotFound
from otahub.hub.services.integrity import FirmwareCorrupt
from otahub.hub.store.ids import is_row_id

log = logging.getLogger("otahub.hub.enos")

PATH_PREFIX = "/enos/ota"
PURPOSE = "enos-update"
DIRECT_NAME = "enos download"  # among the listener's direct routes


class DownloadUrls:
    def __init__(self, signer: LinkSigner, public_url: str, *, relative: bool = False) -> None:
        self._signer = signer
        self.public_url = public_url.rstrip("/")
        #: Send the path alone, for devices that download through the HTTP broker.
        self.relative = relative

    def token(self, update_id: int, package_sha256: str) -> str:
        return self._signer.token(PURPOSE, update_id, package_sha256)

    def file_url(self, update_id: int, package_sha256: str) -> str:
        """The ``fileUrl``: ``{public_url}/enos/ota/{id}/{token}``, or its path when relative."""
        path = f"{PATH_PREFIX}/{update_id}/{self.token(update_id, package_sha256)}"
        return path if self.relative else f"{self.public_url}{path}"

    def check(self, update_id: int, package_sha256: str, token: str) -> bool:
        return self._signer.check(PURPOSE, update_id, package_sha256, token)


def parse_download_path(path: str) -> tuple[int, str] | None:
    """``(update_id, token)`` from a ``fileUrl`` or its path; ``None`` if it is not one."""
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    parts = path.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != PATH_PREFIX:
        return None
    raw_id = parts[3]
    if not (raw_id.isascii() and raw_id.isdigit()) or not is_row_id(int(raw_id)):
        return None
    return int(raw_id), parts[4]


async def update_file(
    core: HubCore,
    urls: DownloadUrls,
    request: Request,
    update_id: int,
    token: str,
    *,
    device: str | None = None,
) -> Response:
    """The firmware of one unfinished EnOS update (of ``device``, when given): Range, HEAD, ETag.

    Every refusal is the same 404, so a prober learns nothing about which part was wrong.
    """
    gone = problem(404, "no such download")
    update = await active_update(core, update_id)
    if update is None or update.package_id is None or update.dialect != "enos":
        log.warning("EnOS download of update %d refused: no such unfinished update", update_id)
        return gone
    if device is not None and update.device != device:
        return gone
    try:
        package = await core.firmware.get(update.package_id)
    except NotFound:
        return gone
    if not urls.check(update_id, package.sha256, token):
        log.warning("EnOS download of update %d with a wrong token refused", update_id)
        return gone
    try:
        path = await core.integrity.servable(package.sha256)
    except FirmwareCorrupt as exc:  # the update has failed with this reason
        return problem(500, exc.detail, title=exc.title)
    if path is None:
        return gone
    try:
        return file_response(
            request,
            path,
            etag=package.sha256,
            media_type=package.content_type,
            filename=package.filename,
            size=package.size,
        )
    except FileNotFoundError:
        log.error("firmware package %d is missing from the blob store", package.id)
        return gone


def download_router(core: HubCore, urls: DownloadUrls) -> APIRouter:
    router = APIRouter()

    @router.api_route(
        PATH_PREFIX + "/{update_id}/{token}",
        methods=["GET", "HEAD"],
        response_class=Response,
        include_in_schema=False,
    )
    async def enos_firmware(update_id: RowId, token: str, request: Request) -> Response:
        confirm(request, DIRECT_NAME)
        return await update_file(core, urls, request, update_id, token)

    return router


def mount_direct(app: FastAPI, core: HubCore, urls: DownloadUrls) -> None:
    """The route of ``download_router``, run by the hub's listener without FastAPI."""

    async def enos_firmware(request: Request, params: Mapping[str, str]) -> Response | None:
        update_id = int(params["update_id"])
        if not is_row_id(update_id):
            return None  # the app's 422
        return await update_file(core, urls, request, update_id, params["token"])

    direct_routes(app).add(
        DIRECT_NAME, PATH_PREFIX + r"/(?P<update_id>[0-9]{1,19})/(?P<token>[^/]+)", enos_firmware
    )
