"""A small HTTP file server with Range support that can cut connections mid-body.

With ``upstream`` set it relays every request to that server instead (a hub,
say), so the same pacing, cuts and counters apply to what the hub serves.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)
    #: For the next N responses, close the connection after this many body bytes.
    cut_after: int | None = None
    cuts_left: int = 0
    #: Send this many bytes per write with a pause, so a test can kill a client mid-body.
    slow_piece: int | None = None
    slow_delay: float = 0.0
    honour_range: bool = True
    #: ``http://host:port`` to relay requests to, instead of serving ``files``.
    upstream: str | None = None
    bytes_sent: int = 0
    #: The Range header of every GET.
    requests: list[str | None] = field(default_factory=list)
    #: ``METHOD path`` of every request (without the query).
    calls: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def start(self) -> FileServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append(self.headers.get("Range"))
                owner.calls.append(f"GET {self.path.split('?')[0]}")
                if owner.upstream is not None:
                    self._relay("GET")
                    return
                data = owner.files.get(self.path.lstrip("/"))
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and owner.honour_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if owner.cuts_left > 0 and owner.cut_after is not None:
                    owner.cuts_left -= 1
                    body = body[: owner.cut_after]
                    self._send(body)
                    self.close_connection = True
                    return
                self._send(body)

            def do_POST(self) -> None:
                owner.calls.append(f"POST {self.path.split('?')[0]}")
                if owner.upstream is None:
                    self.send_error(405)
                    return
                self._relay("POST")

            def _relay(self, method: str) -> None:
                assert owner.upstream is not None
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k in ("Range", "Content-Type") if (v := self.headers.get(k))}
                target = urlsplit(owner.upstream)
                conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
                try:
                    conn.request(method, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                self.send_response(response.status)
                for name in ("Content-Type", "Content-Range", "Accept-Ranges"):
                    if value := response.getheader(name):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self._send(data)

            def _send(self, body: bytes) -> None:
                piece = owner.slow_piece or len(body) or 1
                for i in range(0, len(body), piece):
                    chunk = body[i : i + piece]
                    try:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    except OSError:
                        return
                    owner.bytes_sent += len(chunk)
                    if owner.slow_delay:
                        threading.Event().wait(owner.slow_delay)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
