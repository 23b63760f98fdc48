"""Device-facing firmware downloads for EnOS ``fileUrl``.

The admin API's content route needs the admin token, which devices never
have. Each update instead gets its own unguessable URL::

    {public_url}/enos/ota/{update_id}/{token}

(or the path alone with ``--enos-file-url relative``, which devices fetch
through the HTTP broker pair in ``broker_http``).

``token`` is an HMAC of the update id and the package's SHA-256 under a key
kept in the data dir, so nothing is stored per URL and the URLs survive a
restart. A URL works only while its update is unfinished: once the update
succeeds, fails or is canceled, the link is dead.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from fastapi import APIRouter, Request, Response

from otahub.hub.core import HubCore
from otahub.hub.http.files import file_response
from otahub.hub.http.ids import RowId
from otahub.hub.http.problems import problem
from otahub.hub.services.errors import NotFound
from otahub.hub.services.integrity import FirmwareCorrupt
from otahub.hub.services.views import UpdateView
from otahub.hub.store.ids import is_row_id
from otahub.protocols.states import UpdateState, is_terminal

log = logging.getLogger("otahub.hub.enos")

KEY_FILE = "enos-download.key"
PATH_PREFIX = "/enos/ota"
_TOKEN_HEX = 32  # 128 bits of the HMAC


def load_or_create_key(data_dir: Path) -> bytes:
    """The URL signing key, created (0600) on first start."""
    path = data_dir / KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = bytes.fromhex(path.read_text().strip())
        if len(existing) >= 32:
            return existing
    key = secrets.token_bytes(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_FILE}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, f"{key.hex()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


class DownloadUrls:
    def __init__(self, key: bytes, public_url: str, *, relative: bool = False) -> None:
        self._key = key
        self.public_url = public_url.rstrip("/")
        #: Send the path alone, for devices that download through the HTTP broker.
        self.relative = relative

    def token(self, update_id: int, package_sha256: str) -> str:
        message = f"enos-update:{update_id}:{package_sha256}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:_TOKEN_HEX]

    def file_url(self, update_id: int, package_sha256: str) -> str:
        """The ``fileUrl``: ``{public_url}/enos/ota/{id}/{token}``, or its path when relative."""
        path = f"{PATH_PREFIX}/{update_id}/{self.token(update_id, package_sha256)}"
        return path if self.relative else f"{self.public_url}{path}"

    def check(self, update_id: int, package_sha256: str, token: str) -> bool:
        return hmac.compare_digest(self.token(update_id, package_sha256), token)


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
    try:
        update = await core.updates.get(update_id, with_transitions=False)
    except NotFound:
        return gone
    if update.package_id is None or not _downloadable(update):
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
        return await update_file(core, urls, request, update_id, token)

    return router


def _downloadable(update: UpdateView) -> bool:
    return update.dialect == "enos" and not is_terminal(UpdateState(update.state))
