"""HTTP download to disk with ``Range`` resume and retry with backoff.

The image is streamed straight into a file in pieces of at most
:data:`PIECE` bytes, so memory use does not depend on the image size. A
partial file left by a cut link or a killed agent is continued from its
current length with ``Range``; a server that ignores ``Range`` (plain 200)
makes the download start over. Failures that made progress do not count
against the retry budget, so a flaky link that keeps delivering bytes
eventually finishes. A URL may also be a :class:`UrlSource`, asked for a
fresh URL before every attempt (the EnOS broker hands out expiring sessions).

The transfer itself runs in a worker thread on the standard library's
``http.client``: one socket read at a time into a reused 1 MiB buffer
reaches curl's throughput, where an asyncio HTTP client spends most of its
time per 64 KiB read in the event loop (``benchmarks/agent_download.py``
measured about a quarter of curl's rate). Cancelling the awaiting task shuts
the socket down, so the thread ends at once rather than at the end of the
image.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urljoin, urlsplit

from otahub.agent.config import DownloadConfig

log = logging.getLogger(__name__)

#: Largest read from the socket; bounds the memory a download uses.
PIECE = 1024 * 1024
#: Bytes written between write-behind hints (see :func:`_write_behind`).
WRITE_BEHIND = 16 * 1024 * 1024
#: Progress is handed to the event loop at most once per this many bytes.
PROGRESS_BYTES = 1024 * 1024
MAX_REDIRECTS = 10
_REDIRECTS = (301, 302, 303, 307, 308)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")

#: Called with (bytes on disk, total size if known) as the download advances.
ProgressCallback = Callable[[int, int | None], None]


class DownloadError(Exception):
    """The image could not be fetched from any URL."""


class UrlSource(Protocol):
    """Makes the URL of each attempt; its ``str()`` names it in logs and errors.

    :meth:`resolve` raises :class:`DownloadError` when retrying is pointless
    and :class:`TransientError` (or ``OSError``) when it is worth another try.
    """

    async def resolve(self) -> str: ...


class _Permanent(Exception):
    """This URL will not work however often it is retried (e.g. 404)."""


class TransientError(Exception):
    """A short body, a 5xx or similar: retry."""


class _Restart(Exception):
    """The partial file cannot be continued; start from byte 0."""


class _Aborted(Exception):
    """The download was cancelled from the event loop."""


class _Transfer:
    """One attempt's connection, so the event loop can abort it from outside the thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self.aborted = False

    def attach(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if self.aborted:
                raise _Aborted
            self._conn = conn

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            conn = self._conn
        if conn is not None and conn.sock is not None:
            # Wakes a thread blocked in recv; close() alone would not.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)


def tls_context(config: DownloadConfig) -> ssl.SSLContext:
    """The download config's TLS settings (also for requests that precede a download)."""
    if not config.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if config.ca_file is not None:
        return ssl.create_default_context(cafile=str(config.ca_file))
    return ssl.create_default_context()


class Downloader:
    def __init__(self, config: DownloadConfig) -> None:
        self.config = config
        #: Bytes received over the network by the last :meth:`fetch`.
        self.received = 0
        self._ssl: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = tls_context(self.config)
        return self._ssl

    async def fetch(
        self,
        urls: Sequence[str | UrlSource],
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
        for url in urls:
            try:
                return await self._fetch_one(url, dest, expected_size, on_progress)
            except DownloadError as exc:
                log.warning("download from %s failed: %s", url, exc)
                errors.append(f"{url}: {exc}")
        raise DownloadError("; ".join(errors))

    async def _fetch_one(
        self,
        url: str | UrlSource,
        dest: Path,
        expected_size: int | None,
        on_progress: ProgressCallback | None,
    ) -> int:
        failures = 0
        # Starting over gets its own budget: progress before it does not excuse
        # a server that keeps sending an image of the wrong size.
        restarts = 0
        while True:
            before = self.received
            try:
                target = url if isinstance(url, str) else await url.resolve()
                size = await self._attempt(target, dest, expected_size, on_progress)
            except _Permanent as exc:
                raise DownloadError(str(exc)) from None
            except _Restart as exc:
                _remove(dest)
                restarts += 1
                if restarts > self.config.retries:
                    raise DownloadError(f"giving up after {restarts} restarts: {exc}") from None
                delay = self._backoff(restarts)
                log.info("restarting download of %s from byte 0 in %.1fs: %s", url, delay, exc)
                await asyncio.sleep(delay)
                continue
            except (OSError, http.client.HTTPException, TransientError) as exc:
                if self.received > before:
                    failures = 0  # it moved forward: not the link's fault alone
                failures += 1
                if failures > self.config.retries:
                    raise DownloadError(f"giving up after {failures} attempts: {exc}") from None
                delay = self._backoff(failures)
                log.info("download interrupted (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            return size

    def _backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based): doubling, capped."""
        return float(min(self.config.backoff_initial * 2 ** (attempt - 1), self.config.backoff_max))

    async def _attempt(
        self,
        url: str,
        dest: Path,
        expected_size: int | None,
        on_progress: ProgressCallback | None,
    ) -> int:
        loop = asyncio.get_running_loop()
        transfer = _Transfer()

        def progress(done: int, total: int | None) -> None:
            if on_progress is not None:
                loop.call_soon_threadsafe(on_progress, done, total)

        work = loop.run_in_executor(
            None, self._attempt_blocking, url, dest, expected_size, progress, transfer
        )
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            transfer.abort()
            # The thread must be done with ``dest`` before anyone else touches it.
            await asyncio.wait([work])
            if not work.cancelled():
                work.exception()  # retrieved: it is the expected result of the abort
            raise

    def _attempt_blocking(
        self,
        url: str,
        dest: Path,
        expected_size: int | None,
        progress: ProgressCallback,
        transfer: _Transfer,
    ) -> int:
        # The file exists from here on, also for an empty image: a completed
        # download is a file on disk, whatever its size.
        _open_raw_append(dest).close()
        offset = _size(dest)
        if expected_size is not None:
            if offset == expected_size:
                return offset
            if offset > expected_size:
                raise _Restart(f"{offset} bytes on disk, more than the expected {expected_size}")
        # identity: Range offsets must count the bytes as stored, not as encoded.
        headers = {"Accept-Encoding": "identity", "User-Agent": "otahub-agent"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        conn, response = self._open(url, headers, transfer)
        try:
            total = _check_response(response.status, response.headers, offset, expected_size)
            if total is None and response.status == 416:
                return offset
            if response.status == 200 and offset:
                raise _Restart("the server ignored Range")
            written = offset
            reported = offset
            buffer = memoryview(bytearray(PIECE))
            flushed = offset
            with _open_raw_append(dest) as f:
                fd = f.fileno()
                for piece in _body(response, buffer):
                    _write_all(fd, piece)
                    written += len(piece)
                    self.received += len(piece)
                    if written - flushed >= WRITE_BEHIND:
                        # Start writing this stretch to disk now, without
                        # waiting, so the fsync below finds little left to do.
                        _write_behind(fd, flushed, written - flushed)
                        flushed = written
                    if written - reported >= PROGRESS_BYTES:
                        reported = written
                        progress(written, total)
                os.fsync(fd)
            if transfer.aborted:
                raise _Aborted
            if written != reported:
                progress(written, total)
        finally:
            conn.close()
        if total is not None and written != total:
            raise TransientError(f"connection closed at byte {written} of {total}")
        if expected_size is not None and written != expected_size:
            raise _Restart(f"got {written} bytes, expected {expected_size}")
        return written

    def _open(
        self, url: str, headers: Mapping[str, str], transfer: _Transfer
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send the GET, following redirects; the connection and the response headers."""
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _Permanent(f"not an http(s) URL: {url}")
            conn: http.client.HTTPConnection
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    parts.hostname,
                    parts.port,
                    timeout=self.config.connect_timeout,
                    context=self._ssl_context(),
                )
            else:
                conn = http.client.HTTPConnection(
                    parts.hostname, parts.port, timeout=self.config.connect_timeout
                )
            transfer.attach(conn)
            try:
                conn.connect()
                assert conn.sock is not None
                conn.sock.settimeout(self.config.read_timeout)
                target = parts.path or "/"
                if parts.query:
                    target += "?" + parts.query
                conn.request("GET", target, headers=dict(headers))
                response = conn.getresponse()
            except BaseException:
                conn.close()
                raise
            location = response.getheader("Location")
            if response.status in _REDIRECTS and location:
                conn.close()
                url = urljoin(url, location)
                continue
            return conn, response
        raise _Permanent(f"more than {MAX_REDIRECTS} redirects")


def _body(response: http.client.HTTPResponse, buffer: memoryview) -> Iterator[memoryview]:
    """The body as it arrives, each piece read into ``buffer`` (reused, so no allocation).

    One socket read per piece (``readinto1``): what has arrived is written at
    once, so a cut or a kill loses little. ``HTTPResponse.readinto`` would
    wait until the whole buffer is full, and ``read1`` allocates a new
    ``bytes`` per read. Chunked bodies are rare for images; they go through
    ``read1``, which decodes the framing.
    """
    fp = response.fp
    if response.chunked or fp is None:
        while data := response.read1(len(buffer)):
            yield memoryview(data)
        return
    remaining = response.length  # None: until the server closes
    while remaining is None or remaining > 0:
        want = len(buffer) if remaining is None else min(len(buffer), remaining)
        n = fp.readinto1(buffer[:want])
        if not n:
            return
        if remaining is not None:
            remaining -= n
        yield buffer[:n]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _open_raw_append(path: Path) -> BinaryIO:
    # Unbuffered: every piece goes straight to the kernel, so write-behind
    # sees all bytes written so far.
    return open(path, "ab", buffering=0)  # closed by the caller's with-block


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _write_behind(fd: int, offset: int, length: int) -> None:
    """Start writeback of a written range; on Linux, DONTNEED queues dirty pages for I/O."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _check_response(
    status: int, headers: http.client.HTTPMessage, offset: int, expected_size: int | None
) -> int | None:
    """Validate status and ranges; the total size when known.

    ``None`` together with status 416 means the file on disk is already whole.
    """
    content_range = headers.get("content-range", "")
    if status == 206:
        match = _CONTENT_RANGE.fullmatch(content_range)
        if match is None or int(match.group(1)) != offset:
            raise _Restart(f"unexpected Content-Range {content_range!r}")
        return None if match.group(3) == "*" else int(match.group(3))
    if status == 200:
        length = headers.get("content-length")
        return int(length) if length and length.isdigit() else expected_size
    if status == 416:
        match = _UNSATISFIED_RANGE.fullmatch(content_range)
        if match is not None and int(match.group(1)) == offset:
            return None
        raise _Restart("range not satisfiable")
    if status in (408, 425, 429) or status >= 500:
        raise TransientError(f"HTTP {status}")
    raise _Permanent(f"HTTP {status}")
