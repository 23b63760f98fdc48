"""``GET | HEAD | PUT | DELETE /te/v1/files/{path}`` and the deprecated ``/tedge/file-transfer/``.

Status codes follow upstream's file-transfer service: PUT 201 (409 onto a
directory), GET 200 (404 ``File not found: "<path>"`` for a missing file or a
directory), DELETE 202 (also when missing; 404 for a directory), 404
``Invalid file path`` for a path escaping the root, 500 on I/O errors. The
old prefix adds the deprecation headers. Beyond upstream, GET honours one
``Range`` (206/416), ``If-None-Match``/``If-Range`` and sends an ``ETag``, so a
child on a flaky link can resume.

Beyond upstream too, every request passes ``access.FileAccess`` (401/403/404),
and a PUT body is refused over ``--file-transfer-max-bytes`` (413) or when the
data dir's free space would drop below ``--file-transfer-min-free-bytes``
(507): what a device sends cannot fill the disk the database and blobs are on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI
from fastapi import Path as PathParam
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from otahub.hub.drivers.base import DriverContext
from otahub.hub.drivers.file_transfer.access import FileAccess
from otahub.hub.drivers.file_transfer.offer import file_root
from otahub.hub.drivers.file_transfer.store import FileTransferRoot, etag_of
from otahub.hub.http.direct import confirm, direct_routes
from otahub.hub.http.files import file_response
from otahub.hub.services.integrity import FirmwareCorrupt, IntegrityService
from otahub.protocols import tedge_legacy as legacy

log = logging.getLogger("otahub.hub.file_transfer")

METHODS = ["GET", "HEAD", "PUT", "DELETE"]
DIRECT_NAME = "file transfer"  # among the listener's direct routes


@dataclass(frozen=True, slots=True)
class PutLimits:
    max_bytes: int
    min_free_bytes: int
    volume: Path  # whose free space is watched


def mount_file_transfer(app: FastAPI, ctx: DriverContext) -> None:
    """Add the routes once, however many drivers ask for them.

    A firmware link is served only while its blob's bytes still match their SHA-256.
    """
    if getattr(app.state, "file_transfer", None) is not None:
        return
    root = file_root(ctx)
    app.state.file_transfer = root
    access = FileAccess(ctx, root)
    limits = PutLimits(
        ctx.settings.file_transfer_max_bytes,
        ctx.settings.file_transfer_min_free_bytes,
        ctx.settings.data_dir,
    )
    integrity = ctx.core.integrity

    async def handle(
        request: Request,
        path: Annotated[str, PathParam(description="the file's path below the file-transfer root")],
    ) -> Response:
        # `path` declares the parameter in the OpenAPI document; the handler
        # parses the raw request path itself (it must see what was sent)
        confirm(request, DIRECT_NAME)
        return await _handle(root, request, integrity, access, limits)

    async def direct(request: Request, _params: Mapping[str, str]) -> Response:
        return await _handle(root, request, integrity, access, limits)

    for prefix in (legacy.FILE_TRANSFER_PREFIX, legacy.LEGACY_FILE_TRANSFER_PREFIX):
        # GET and HEAD, run by the hub's listener without FastAPI (direct.py)
        direct_routes(app).add(DIRECT_NAME, re.escape(prefix) + ".*", direct)
        for method in METHODS:  # one route per method: an operation id for each
            app.add_api_route(
                f"{prefix}{{path:path}}",
                handle,
                methods=[method],
                response_class=Response,
                tags=["file transfer"],
                summary="thin-edge file transfer (PUT 201, GET 200/206, DELETE 202)",
            )


def _text(status: int, text: str, headers: Mapping[str, str]) -> Response:
    return PlainTextResponse(text, status_code=status, headers=dict(headers))


async def _handle(
    root: FileTransferRoot,
    request: Request,
    integrity: IntegrityService,
    access: FileAccess,
    limits: PutLimits,
) -> Response:
    raw_path: str = request.scope["path"]
    legacy_prefix = raw_path.startswith(legacy.LEGACY_FILE_TRANSFER_PREFIX)
    headers = legacy.LEGACY_DEPRECATION_HEADERS if legacy_prefix else {}
    try:
        parsed = legacy.parse_file_path(raw_path)
    except legacy.InvalidFilePath:
        log.warning("file transfer: refused %s %s (escapes the root)", request.method, raw_path)
        return _text(404, legacy.INVALID_FILE_PATH, headers)
    if parsed is None:  # the route only matches the two prefixes
        return _text(404, legacy.INVALID_FILE_PATH, headers)
    refused = await access.check(request, parsed)
    if refused is not None:
        return _text(refused.status, refused.text, {**headers, **dict(refused.headers)})
    target = root.path_of(parsed)
    method = request.method
    try:
        if method == "PUT":
            return await _put(root, request, parsed, target, headers, limits)
        if method == "DELETE":
            return _delete(parsed, target, headers)
        blob = root.firmware_blob(parsed)
        if blob is not None:
            try:
                await integrity.servable(blob)
            except FirmwareCorrupt as exc:  # the update has failed with this reason
                return _text(500, exc.detail, headers)
        return _get(request, parsed, target, headers)
    except ClientDisconnect:
        return Response(status_code=400, headers=dict(headers))
    except OSError as exc:
        log.warning("file transfer: %s %s failed: %s", method, parsed.relative, exc)
        return _text(500, f"I/O error: {exc.strerror or exc}", headers)


def _stat(target: Path) -> os.stat_result | None:
    try:
        return target.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _get(
    request: Request,
    parsed: legacy.FileTransferPath,
    target: Path,
    headers: Mapping[str, str],
) -> Response:
    found = _stat(target)
    exists, is_dir = found is not None, found is not None and stat.S_ISDIR(found.st_mode)
    status = legacy.file_transfer_status(legacy.FileMethod.GET, exists=exists, is_dir=is_dir)
    if status != 200 or found is None:
        return _text(status, legacy.file_not_found_message(parsed), headers)
    try:
        return file_response(request, target, etag=etag_of(found), extra_headers=headers)
    except FileNotFoundError:  # deleted between the two looks
        return _text(404, legacy.file_not_found_message(parsed), headers)


def _delete(parsed: legacy.FileTransferPath, target: Path, headers: Mapping[str, str]) -> Response:
    try:
        mode: int | None = target.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    is_dir = mode is not None and stat.S_ISDIR(mode)
    status = legacy.file_transfer_status(
        legacy.FileMethod.DELETE, exists=mode is not None, is_dir=is_dir
    )
    if status == 202 and mode is not None:
        target.unlink(missing_ok=True)
    if status == 404:
        return _text(status, legacy.file_not_found_message(parsed), headers)
    return Response(status_code=status, headers=dict(headers))


async def _put(
    root: FileTransferRoot,
    request: Request,
    parsed: legacy.FileTransferPath,
    target: Path,
    headers: Mapping[str, str],
    limits: PutLimits,
) -> Response:
    found = _stat(target) if parsed.segments else root.root.stat()
    is_dir = found is not None and stat.S_ISDIR(found.st_mode)
    status = legacy.file_transfer_status(
        legacy.FileMethod.PUT, exists=found is not None, is_dir=is_dir or not parsed.segments
    )
    if status != 201:
        return _text(status, f'Cannot replace the directory "{parsed.relative}"', headers)
    declared = _content_length(request)
    refused = await _over_limits(limits, declared or 0, declared or 0)
    if refused is not None:
        return _refuse_put(request, parsed, refused, headers)
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    tmp = root.temporary_for(target)
    written = checked = 0
    try:
        out = await asyncio.to_thread(tmp.open, "xb")
        try:
            async for chunk in request.stream():
                if not chunk:
                    continue
                written += len(chunk)
                if written > limits.max_bytes or written - checked >= _SPACE_CHECK_EVERY:
                    refused = await _over_limits(limits, written, written - checked)
                    checked = written
                    if refused is not None:
                        break
                await asyncio.to_thread(out.write, chunk)
        finally:
            await asyncio.to_thread(out.close)
        if refused is not None:
            tmp.unlink(missing_ok=True)
            return _refuse_put(request, parsed, refused, headers)
        await asyncio.to_thread(os.replace, tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Response(status_code=201, headers=dict(headers))


_SPACE_CHECK_EVERY = 8 << 20  # bytes written between two looks at the free space


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


async def _over_limits(limits: PutLimits, size: int, coming: int) -> tuple[int, str] | None:
    """(status, reason) when a body of ``size`` bytes, ``coming`` of them not yet
    on disk, breaks the size cap or the free-space floor.

    A body without Content-Length is looked at before its first byte and then
    every ``_SPACE_CHECK_EVERY`` bytes, so it may end up to that far below the floor.
    """
    if size > limits.max_bytes:
        return 413, f"the body is over the {limits.max_bytes}-byte limit"
    free = (await asyncio.to_thread(shutil.disk_usage, limits.volume)).free
    if free - coming < limits.min_free_bytes:
        return 507, (
            f"storing it would leave less than {limits.min_free_bytes} bytes free ({free} free now)"
        )
    return None


def _refuse_put(
    request: Request,
    parsed: legacy.FileTransferPath,
    refused: tuple[int, str],
    headers: Mapping[str, str],
) -> Response:
    status, reason = refused
    client = request.client
    peer = f"{client.host}:{client.port}" if client is not None else "?"
    log.warning("file transfer: refused PUT %s from %s: %s", parsed.relative, peer, reason)
    return _text(status, reason[0].upper() + reason[1:], headers)
