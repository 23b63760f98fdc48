"""The EnOS HTTP broker's download pair, for devices built against ``enos-http-sdk``.

``POST /auth/{pk}/{dk}`` checks the signed body and hands out a session id;
``GET /multipart/sys/{pk}/{dk}/file/download?sessionId=…&fileUri=…&category=ota``
returns the file ``fileUri`` names (a ``fileUrl`` the hub sent), with Range.
The session id in the query string is the only credential, as upstream.
Sessions live in memory: after a hub restart a device simply logs in again.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from otahub.hub.core import HubCore
from otahub.hub.drivers.enos.downloads import DownloadUrls, parse_download_path, update_file
from otahub.protocols import enos

log = logging.getLogger("otahub.hub.enos")

#: Sessions kept at most; the oldest go first (a login flood must not grow memory).
MAX_SESSIONS = 10_000
MAX_AUTH_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class _HttpSession:
    device: str
    product_key: str
    device_key: str
    expires: float


def _answer(code: int, message: str, status: int = 200) -> Response:
    return Response(
        enos.build_http_answer(code, message), status_code=status, media_type="application/json"
    )


class HttpSessions:
    def __init__(self) -> None:
        self._sessions: dict[str, _HttpSession] = {}

    def open(self, device: str, pk: str, dk: str, lifetime_ms: int) -> str:
        now = time.monotonic()
        if len(self._sessions) >= MAX_SESSIONS:
            for key in [k for k, v in self._sessions.items() if v.expires <= now]:
                del self._sessions[key]
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
        session_id = secrets.token_urlsafe(24)
        self._sessions[session_id] = _HttpSession(device, pk, dk, now + lifetime_ms / 1000)
        return session_id

    def get(self, session_id: str, pk: str, dk: str) -> _HttpSession | None:
        found = self._sessions.get(session_id)
        if found is None:
            return None
        if found.expires <= time.monotonic():
            del self._sessions[session_id]
            return None
        if (found.product_key, found.device_key) != (pk, dk):
            return None
        return found


def broker_router(core: HubCore, urls: DownloadUrls, sessions: HttpSessions) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.post(enos.HTTP_AUTH_ROUTE)
    async def auth(product_key: str, device_key: str, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_AUTH_BODY:
            return _answer(enos.EnosCode.MESSAGE_TOO_LARGE, "auth request too large", 413)
        try:
            auth = enos.parse_http_auth(body)
        except enos.EnosError as exc:
            log.warning("EnOS HTTP auth for %s/%s: %s", product_key, device_key, exc)
            return _answer(exc.code, str(exc), 400)
        device = await core.devices.by_enos_keys(product_key, device_key)
        if (
            device is None
            or device.enos_device_secret is None
            or not auth.verify(product_key, device_key, device.enos_device_secret)
        ):
            log.warning("EnOS HTTP auth for %s/%s refused: wrong sign", product_key, device_key)
            return _answer(401, "invalid sign or unknown device", 401)
        session_id = sessions.open(device.name, product_key, device_key, auth.lifetime)
        return Response(enos.build_http_auth_response(session_id), media_type="application/json")

    @router.api_route(enos.HTTP_DOWNLOAD_ROUTE, methods=["GET", "HEAD"])
    async def download(
        product_key: str,
        device_key: str,
        request: Request,
        session_id: Annotated[str, Query(alias=enos.SESSION_ID_PARAM)] = "",
        file_uri: Annotated[str, Query(alias=enos.FILE_URI_PARAM)] = "",
    ) -> Response:
        session = sessions.get(session_id, product_key, device_key)
        if session is None:
            return _answer(401, "invalid or expired sessionId", 401)
        target = parse_download_path(file_uri)
        if target is None:
            return _answer(404, "unknown fileUri", 404)
        return await update_file(core, urls, request, *target, device=session.device)

    return router
