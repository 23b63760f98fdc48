"""``GET | HEAD | PUT | DELETE /te/v1/files/{path}`` and the deprecated ``/tedge/file-transfer/``.

Status codes follow upstream's file-transfer service: PUT 201 (409 onto a
directory), GET 200 (404 ``File not found: "<path>"`` for a missing file or a
directory), DELETE 202 (also when missing; 404 for a directory), 404
``Invalid file path`` for a path escaping the root, 500 on I/O errors. The
old prefix adds the deprecation headers. Beyond upstream, GET honours one
``Range`` (206/416), ``If-None-Match``/``If-Range`` and sends an ``ETag``, so a
child on a flaky link can resume.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from otahub.hub.drivers.file_transfer.store import FileTransferRoot, etag_of
from otahub.hub.http.files import file_response
from otahub.hub.services.integrity import FirmwareCorrupt, IntegrityService
from otahub.protocols import tedge_legacy as legacy

log = logging.getLogger("otahub.hub.file_transfer")

METHODS = ["GET", "HEAD", "PUT", "DELETE"]


def mount_file_transfer(
    app: FastAPI, root: FileTransferRoot, integrity: IntegrityService | None = None
) -> None:
    """Add the routes once, however many drivers ask for them.

    With ``integrity``, a firmware link is served only while its blob's bytes
    still match their SHA-256.
    """
    if getattr(app.state, "file_transfer", None) is not None:
        return
    app.state.file_transfer = root

    async def handle(request: Request) -> Response:
        return await _handle(root, request, integrity)

    for prefix in (legacy.FILE_TRANSFER_PREFIX, legacy.LEGACY_FILE_TRANSFER_PREFIX):
        app.add_api_route(
            f"{prefix}{{path:path}}",
            handle,
            methods=METHODS,
            response_class=Response,
            tags=["file transfer"],
            summary="thin-edge file transfer (PUT 201, GET 200/206, DELETE 202)",
        )


def _text(status: int, text: str, headers: Mapping[str, str]) -> Response:
    return PlainTextResponse(text, status_code=status, headers=dict(headers))


async def _handle(
    root: FileTransferRoot, request: Request, integrity: IntegrityService | None
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
    target = root.path_of(parsed)
    method = request.method
    try:
        if method == "PUT":
            return await _put(root, request, parsed, target, headers)
        if method == "DELETE":
            return _delete(parsed, target, headers)
        blob = None if integrity is None else root.firmware_blob(parsed)
        if blob is not None and integrity is not None:
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
) -> Response:
    found = _stat(target) if parsed.segments else root.root.stat()
    is_dir = found is not None and stat.S_ISDIR(found.st_mode)
    status = legacy.file_transfer_status(
        legacy.FileMethod.PUT, exists=found is not None, is_dir=is_dir or not parsed.segments
    )
    if status != 201:
        return _text(status, f'Cannot replace the directory "{parsed.relative}"', headers)
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    tmp = root.temporary_for(target)
    try:
        out = await asyncio.to_thread(tmp.open, "xb")
        try:
            async for chunk in request.stream():
                if chunk:
                    await asyncio.to_thread(out.write, chunk)
        finally:
            await asyncio.to_thread(out.close)
        await asyncio.to_thread(os.replace, tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Response(status_code=201, headers=dict(headers))
