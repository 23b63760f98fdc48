"""Sending files over HTTP: the one code path behind every download URL of the hub.

`file_response` answers GET and HEAD for a file on disk with what device
downloaders rely on (RFC 9110):

- `Content-Length` on every 200 and 206, `Accept-Ranges: bytes`, and a strong
  `ETag` given by the caller (the hub uses the file's SHA-256, so the tag
  changes exactly when the bytes do);
- one byte range per request (`bytes=a-b`, `bytes=a-`, `bytes=-n`) answered
  with 206 and `Content-Range: bytes a-b/size`; a range that starts past the
  end gets 416 with `Content-Range: bytes */size`;
- `If-None-Match` (lists and `*`, weak comparison as the RFC requires) gives
  304; `If-Match` that fails gives 412; `If-Range` honours the range only for
  an identical strong entity tag, otherwise the whole file is sent;
- a Range header the hub does not take is ignored and the whole file sent,
  which RFC 9110 section 14.2 allows: a malformed header, several ranges (no
  downloader resumes with multipart/byteranges, and ignoring them avoids
  building multipart bodies), Range on HEAD (range handling is defined for
  GET only), and any Range on an empty file (an empty range cannot be written
  as a Content-Range).

Where the ASGI server offers the `http.response.zerocopysend` extension (the
hub's own listener, `listener.py`, which serves every GET and HEAD), the open
file and the byte range are handed to it and the kernel sends them with
sendfile, whole files and ranges alike; a server with only
`http.response.pathsend` gets whole files that way. Elsewhere (uvicorn, which
offers neither, and test clients) the body goes out in 2 MiB chunks, each a memoryview of a
read-only memory map of that part of the file rather than bytes read from it
(the ASGI spec says bytes, but uvicorn's httptools and h11 protocols write
any bytes-like body; tests/hub/http/test_files.py runs both). No byte is
copied in user space: the kernel copies from the page cache straight into the
socket, and N connections downloading the same firmware share one copy of it
in memory instead of holding N private buffers. This measured cheapest by far
(docs/benchmarks.md). Two consequences:

- a served file must never be truncated in place, or the process gets SIGBUS;
  every otahub store writes a temporary file and renames it over the old
  name, which keeps served files immutable;
- a file that is not in the page cache is read from disk by the event loop's
  thread when its chunk is mapped (as nginx does without `aio`); firmware
  being downloaded by many devices stays cached.
"""

from __future__ import annotations

import functools
import mmap
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from otahub.hub.metrics.downloads import DownloadStats

__all__ = [
    "CHUNK_SIZE",
    "FileStreamResponse",
    "RangeNotSatisfiable",
    "download_stats",
    "file_response",
    "parse_range",
]

# Bytes handed to the server per ASGI message, each its own mapping. Larger
# chunks cost less CPU per byte, but every chunk still queued in a connection's
# transport stays mapped and counts in the RSS; 2 MiB with MAP_POPULATE measured
# the best trade (docs/benchmarks.md).
CHUNK_SIZE = 2 << 20
# Prefaulting the chunk's pages in one call is cheaper than faulting them in
# one by one while the kernel copies them into the socket.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)

# One entity tag in a list: optional weak prefix, then a quoted opaque tag
# (RFC 9110 section 8.8.3: etagc excludes DQUOTE, so commas may appear inside).
_ENTITY_TAG = re.compile(r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")')
_DIGITS = re.compile(r"[0-9]+")


class RangeNotSatisfiable(Exception):
    """The single requested range starts at or past the end of the file."""


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """The (start, stop) byte offsets, stop exclusive, that a Range header asks for.

    None means the header is to be ignored and the whole file sent: it is
    malformed, names another unit, or asks for more than one range. Raises
    RangeNotSatisfiable when its one range does not overlap the file.
    """
    unit, sep, range_set = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    # A list may carry empty elements (RFC 9110 section 5.6.1); only one real range counts.
    specs = [spec.strip() for spec in range_set.split(",") if spec.strip()]
    if len(specs) != 1:
        return None
    first, dash, last = specs[0].partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not first:
        # Suffix range: the last n bytes. A zero-length suffix overlaps nothing.
        if not _DIGITS.fullmatch(last):
            return None
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable
        return max(size - suffix, 0), size
    if not _DIGITS.fullmatch(first) or (last and not _DIGITS.fullmatch(last)):
        return None
    start = int(first)
    if last:
        end = int(last)
        if end < start:
            return None
        stop = min(end + 1, size)
    else:
        stop = size
    if start >= size:
        raise RangeNotSatisfiable
    return start, stop


def _opaque_tags(value: str) -> list[tuple[bool, str]]:
    """(weak, opaque-tag) for each entity tag in a header list value."""
    return [(weak is not None and weak != "", tag) for weak, tag in _ENTITY_TAG.findall(value)]


# Both are asked with the same few values on every download request; their
# regular expression and percent-encoding showed in its CPU.
@functools.lru_cache(maxsize=1024)
def _quoted_etag(etag: str) -> str:
    tag = etag if len(etag) >= 2 and etag[0] == etag[-1] == '"' else f'"{etag}"'
    if not _ENTITY_TAG.fullmatch(tag):
        raise ValueError(f"not a valid strong entity tag: {etag!r}")
    return tag


@functools.lru_cache(maxsize=1024)
def _content_disposition(filename: str) -> str:
    # A plain ASCII fallback for old clients plus the exact name in RFC 8187 form.
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in filename)
    encoded = quote(filename, safe="")
    if encoded == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _header_list(request: Request, name: str) -> str | None:
    values = request.headers.getlist(name)
    return ",".join(values) if values else None


def file_response(
    request: Request,
    path: Path,
    *,
    etag: str,
    media_type: str = "application/octet-stream",
    filename: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    size: int | None = None,
) -> Response:
    """The response to a GET or HEAD `request` for the file at `path`.

    `etag` is the file's strong entity tag, quoted or not (the hub passes the
    SHA-256 hex digest). `filename` adds a `Content-Disposition: attachment`.
    `extra_headers` (e.g. Cache-Control) go on every response, 304 included;
    the framing headers computed here take precedence over them. `size`, when
    the caller knows it (from its database), is checked against the file's.
    Raises FileNotFoundError (the caller's 404) when the file is missing.
    """
    tag = _quoted_etag(etag)
    actual = os.stat(path).st_size
    if size is not None and size != actual:
        raise RuntimeError(f"{path} is {actual} bytes, expected {size}")
    size = actual
    method = request.scope["method"]
    common = {name.lower(): value for name, value in (extra_headers or {}).items()}
    common["etag"] = tag
    common["accept-ranges"] = "bytes"

    # Preconditions in the order of RFC 9110 section 13.2.2.
    if_match = _header_list(request, "if-match")
    if (
        if_match is not None
        and if_match.strip() != "*"
        and not any(not weak and other == tag for weak, other in _opaque_tags(if_match))
    ):
        return _bodiless(412, common)
    if_none_match = _header_list(request, "if-none-match")
    if if_none_match is not None and (
        if_none_match.strip() == "*"
        or any(other == tag for _weak, other in _opaque_tags(if_none_match))
    ):
        if method in ("GET", "HEAD"):
            return _bodiless(304, common, content_length=False)
        return _bodiless(412, common)

    headers = dict(common)
    headers["content-type"] = media_type
    if filename is not None:
        headers["content-disposition"] = _content_disposition(filename)

    start, stop, status = 0, size, 200
    ranges = request.headers.getlist("range")
    if method == "GET" and len(ranges) == 1 and size > 0:
        if_range = request.headers.get("if-range")
        # If-Range takes a strong comparison; a date or weak tag never matches.
        if if_range is None or if_range.strip() == tag:
            try:
                wanted = parse_range(ranges[0], size)
            except RangeNotSatisfiable:
                headers["content-range"] = f"bytes */{size}"
                return _bodiless(416, headers)
            if wanted is not None:
                start, stop = wanted
                status = 206
                headers["content-range"] = f"bytes {start}-{stop - 1}/{size}"
    headers["content-length"] = str(stop - start)
    return FileStreamResponse(
        path,
        status_code=status,
        headers=headers,
        start=start,
        stop=stop,
        size=size,
        send_body=method != "HEAD",
        stats=download_stats(request),
    )


def download_stats(request: Request) -> DownloadStats | None:
    """The app's download counters (create_http_app puts them there), if it has any."""
    app = request.scope.get("app")
    stats = getattr(getattr(app, "state", None), "downloads", None)
    return stats if isinstance(stats, DownloadStats) else None


def _bodiless(status: int, headers: Mapping[str, str], *, content_length: bool = True) -> Response:
    response = Response(status_code=status)
    # 304 carries no Content-Length: it would have to be the full file's (RFC 9110 8.6).
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if content_length:
        raw.append((b"content-length", b"0"))
    response.raw_headers = raw
    return response


class FileStreamResponse(Response):
    """Streams bytes [start, stop) of a file whose size is `size`.

    Built by `file_response`, which has already decided status and headers.
    """

    def __init__(
        self,
        path: Path,
        *,
        status_code: int,
        headers: Mapping[str, str],
        start: int,
        stop: int,
        size: int,
        send_body: bool,
        stats: DownloadStats | None = None,
    ) -> None:
        # Response.__init__ is not called: it would render an in-memory body.
        self.status_code = status_code
        self.background = None
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        self.path = path
        self.start = start
        self.stop = stop
        self.size = size
        self.send_body = send_body
        self.stats = stats or DownloadStats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start_message: Message = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        if not self.send_body or self.start == self.stop:
            await send(start_message)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        # Opened before the status line goes out, so a vanished or changed file
        # becomes a 500 instead of a body that contradicts its headers. Opening
        # a local file is a metadata operation, not worth a thread.
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        stats = self.stats
        stats.started += 1
        stats.active += 1
        try:
            actual = os.fstat(fd).st_size
            if actual != self.size:
                raise RuntimeError(f"{self.path} is {actual} bytes, expected {self.size}")
            extensions = scope.get("extensions") or {}
            if "http.response.zerocopysend" in extensions:
                # The server sends [start, stop) of this descriptor with sendfile
                # before send returns; the descriptor keeps the file checked above
                # alive even if a new version is renamed over its path meanwhile.
                await send(start_message)
                await send(
                    {
                        "type": "http.response.zerocopysend",
                        "file": fd,
                        "offset": self.start,
                        "count": self.stop - self.start,
                        "more_body": False,
                    }
                )
                # send returned: every byte went out (a vanished client raises)
                stats.bytes_sent += self.stop - self.start
                return
            whole = self.start == 0 and self.stop == self.size
            if whole and "http.response.pathsend" in extensions:
                # The server sends the file itself (sendfile); ranges cannot go this way.
                await send(start_message)
                await send({"type": "http.response.pathsend", "path": str(self.path)})
                stats.bytes_sent += self.size
                return
            await send(start_message)
            offset, stop = self.start, self.stop
            while offset < stop:
                end = min(offset + CHUNK_SIZE, stop)
                # One mapping per chunk, not one for the file: mapped pages count
                # in the process's RSS until unmapped, and a whole-file mapping
                # showed the file's full size there. The body is a view of the
                # page cache, so no byte is copied in user space; the server may
                # keep it queued after send returns, and the chunk is unmapped
                # when the server drops it.
                base = offset - offset % mmap.ALLOCATIONGRANULARITY
                chunk = mmap.mmap(
                    fd, end - base, flags=_MAP_FLAGS, prot=mmap.PROT_READ, offset=base
                )
                body = memoryview(chunk)[offset - base :]
                await send({"type": "http.response.body", "body": body, "more_body": end < stop})
                stats.bytes_sent += end - offset
                offset = end
        finally:
            stats.active -= 1
            os.close(fd)
