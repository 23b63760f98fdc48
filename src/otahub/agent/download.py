"""HTTP download to disk with ``Range`` resume and retry with backoff.

The image is streamed straight into a file in fixed-size pieces, so memory
use does not depend on the image size. A partial file left by a cut link or
a killed agent is continued from its current length with ``Range``; a server
that ignores ``Range`` (plain 200) makes the download start over. Failures
that made progress do not count against the retry budget, so a flaky link
that keeps delivering bytes eventually finishes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import httpx

from otahub.agent.config import DownloadConfig

log = logging.getLogger(__name__)

PIECE = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")

#: Called with (bytes on disk, total size if known) as the download advances.
ProgressCallback = Callable[[int, int | None], None]


class DownloadError(Exception):
    """The image could not be fetched from any URL."""


class _Permanent(Exception):
    """This URL will not work however often it is retried (e.g. 404)."""


class _Transient(Exception):
    """A short body, a 5xx or similar: retry."""


class _Restart(Exception):
    """The partial file cannot be continued; start from byte 0."""


class Downloader:
    def __init__(self, config: DownloadConfig) -> None:
        self.config = config
        #: Bytes received over the network by the last :meth:`fetch`.
        self.received = 0

    def _client(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = self.config.verify_tls
        if self.config.verify_tls and self.config.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(self.config.ca_file))
        timeout = httpx.Timeout(
            connect=self.config.connect_timeout,
            read=self.config.read_timeout,
            write=self.config.read_timeout,
            pool=self.config.connect_timeout,
        )
        return httpx.AsyncClient(timeout=timeout, verify=verify, follow_redirects=True)

    async def fetch(
        self,
        urls: Sequence[str],
        dest: Path,
        *,
        expected_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> int:
        """Complete ``dest`` from the first URL that works; returns its size."""
        if not urls:
            raise DownloadError("no http(s) download URL")
        self.received = 0
        errors: list[str] = []
        async with self._client() as client:
            for url in urls:
                try:
                    return await self._fetch_one(client, url, dest, expected_size, on_progress)
                except DownloadError as exc:
                    log.warning("download from %s failed: %s", url, exc)
                    errors.append(f"{url}: {exc}")
        raise DownloadError("; ".join(errors))

    async def _fetch_one(
        self,
        client: httpx.AsyncClient,
        url: str,
        dest: Path,
        expected_size: int | None,
        on_progress: ProgressCallback | None,
    ) -> int:
        failures = 0
        while True:
            before = self.received
            try:
                size = await self._attempt(client, url, dest, expected_size, on_progress)
            except _Permanent as exc:
                raise DownloadError(str(exc)) from None
            except _Restart as exc:
                log.info("restarting download of %s from byte 0: %s", url, exc)
                _remove(dest)
                continue
            except (httpx.HTTPError, OSError, _Transient) as exc:
                if self.received > before:
                    failures = 0  # it moved forward: not the link's fault alone
                failures += 1
                if failures > self.config.retries:
                    raise DownloadError(f"giving up after {failures} attempts: {exc}") from None
                delay = min(
                    self.config.backoff_initial * 2 ** (failures - 1), self.config.backoff_max
                )
                log.info("download interrupted (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            return size

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        url: str,
        dest: Path,
        expected_size: int | None,
        on_progress: ProgressCallback | None,
    ) -> int:
        offset = _size(dest)
        if expected_size is not None:
            if offset == expected_size:
                return offset
            if offset > expected_size:
                raise _Restart(f"{offset} bytes on disk, more than the expected {expected_size}")
        # identity: Range offsets must count the bytes as stored, not as encoded.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        async with client.stream("GET", url, headers=headers) as response:
            total = _check_response(response, offset, expected_size)
            if total is None and response.status_code == 416:
                return offset
            if response.status_code == 200 and offset:
                raise _Restart("the server ignored Range")
            written = offset
            with _open_append(dest) as f:
                async for piece in response.aiter_raw(PIECE):
                    # Page-cache writes of one piece; the fsync below runs in a thread.
                    f.write(piece)
                    written += len(piece)
                    self.received += len(piece)
                    if on_progress is not None:
                        on_progress(written, total)
                f.flush()
                await asyncio.to_thread(os.fsync, f.fileno())
        if total is not None and written != total:
            raise _Transient(f"connection closed at byte {written} of {total}")
        if expected_size is not None and written != expected_size:
            raise _Restart(f"got {written} bytes, expected {expected_size}")
        return written


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _open_append(path: Path) -> BinaryIO:
    return open(path, "ab")  # closed by the caller's with-block


def _check_response(response: httpx.Response, offset: int, expected_size: int | None) -> int | None:
    """Validate status and ranges; the total size when known.

    ``None`` together with status 416 means the file on disk is already whole.
    """
    status = response.status_code
    if status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
        if match is None or int(match.group(1)) != offset:
            raise _Restart(f"unexpected Content-Range {response.headers.get('content-range')!r}")
        return None if match.group(3) == "*" else int(match.group(3))
    if status == 200:
        length = response.headers.get("content-length")
        return int(length) if length and length.isdigit() else expected_size
    if status == 416:
        match = _UNSATISFIED_RANGE.fullmatch(response.headers.get("content-range", ""))
        if match is not None and int(match.group(1)) == offset:
            return None
        raise _Restart("range not satisfiable")
    if status in (408, 425, 429) or status >= 500:
        raise _Transient(f"HTTP {status}")
    raise _Permanent(f"HTTP {status}")
