"""Firmware downloads through the EnOS HTTP broker, for a ``fileUrl`` that is no http(s) URL.

``POST {broker}/auth/{pk}/{dk}`` with the signed body yields a session id;
``GET {broker}/multipart/sys/{pk}/{dk}/file/download?sessionId=…&fileUri=…``
returns the file, with Range. Sessions expire and a broker forgets them when
it restarts, so every download attempt (and every resume) logs in afresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from otahub import __version__
from otahub.agent.config import DownloadConfig, EnosConfig
from otahub.agent.download import DownloadError, TransientError, tls_context
from otahub.protocols import enos

log = logging.getLogger(__name__)

#: Status codes of a failed login worth another attempt.
_RETRY_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class BrokerFile:
    """A ``fileUri`` on the broker; a :class:`~otahub.agent.download.UrlSource`."""

    broker: str
    enos: EnosConfig
    download: DownloadConfig
    file_uri: str

    def __str__(self) -> str:
        return f"{self.file_uri} via the EnOS HTTP broker {self.broker}"

    async def resolve(self) -> str:
        """Log in and return the download URL of this attempt's session."""
        session_id = await self._login()
        target = enos.http_download_target(
            self.enos.product_key, self.enos.device_key, session_id, self.file_uri
        )
        return self.broker + target

    async def _login(self) -> str:
        cfg = self.enos
        body = enos.build_http_auth_request(
            cfg.product_key, cfg.device_key, cfg.device_secret, sdk_version=f"otahub {__version__}"
        )
        url = self.broker + enos.http_auth_path(cfg.product_key, cfg.device_key)
        timeout = httpx.Timeout(self.download.read_timeout, connect=self.download.connect_timeout)
        try:
            async with httpx.AsyncClient(
                timeout=timeout, verify=tls_context(self.download)
            ) as client:
                response = await client.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
        except httpx.TransportError as exc:
            raise TransientError(f"EnOS HTTP broker login: {exc!r}") from None
        if response.status_code >= 500 or response.status_code in _RETRY_STATUS:
            raise TransientError(f"EnOS HTTP broker login: HTTP {response.status_code}")
        try:
            session_id = enos.parse_http_auth_response(response.content)
        except enos.EnosError as exc:
            # Named after the source by the downloader: "<fileUri> via the EnOS HTTP broker …".
            raise DownloadError(f"HTTP {response.status_code}: {exc}") from None
        log.debug("logged in to the EnOS HTTP broker for %s", self.file_uri)
        return session_id
