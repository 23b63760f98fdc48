"""HTTP download throughput: otahub versus nginx serving the same file.

By default the otahub side is a real `otahub serve` (MQTT endpoint included):
the file is uploaded through the REST API and downloaded from its content URL,
which answers through `otahub.hub.http.files.file_response`. `--server app`
serves the file from a minimal FastAPI app with file_response instead, to try
uvicorn options (`--http`, `--loop`). nginx (sendfile on) serves the same file
from a temporary directory. Both listen on 127.0.0.1 only.

One client process (asyncio on uvloop, HTTP/1.1 keep-alive, every connection
reading into one reused buffer, bytes counted and never kept) runs CLIENTS
concurrent connections, each downloading the file DOWNLOADS times, against
one server at a time. Rounds alternate the order (otahub first, then nginx
first) because the machine is shared and its load drifts. Printed: MB/s per
run, the median per server, the medians of the per-round ratios otahub/nginx
of throughput (target >= 1.0) and of server CPU seconds per GiB sent (target
<= 1.3), server CPU milliseconds per request and the otahub process's peak
RSS. `--range-kib N` asks for N KiB ranges (206) at rotating offsets instead
of the whole file.

    .venv/bin/python benchmarks/http_download.py [--size-mib 100] [--clients 20]
    .venv/bin/python benchmarks/http_download.py --size-mib 64 --range-kib 1024 --downloads 10

Needs nginx (Debian package `nginx`; scripts/test.sh installs it). Starts and
stops its own processes only, and bounds every run in time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from fastapi import Request, Response

MIB = 1 << 20
GIB = 1 << 30
RUN_TIMEOUT = 120.0  # seconds for one client run; far above any sane duration
START_TIMEOUT = 30.0


# --- client process -------------------------------------------------------


class _Download(asyncio.BufferedProtocol):
    """Downloads one path `count` times over one keep-alive connection."""

    def __init__(
        self, buffer: bytearray, requests: list[bytes], count: int, size: int, status: bytes
    ) -> None:
        self.buffer = buffer
        self.requests = requests
        self.sent = 0
        self.left = count
        self.size = size
        self.status = status
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.body_left = -1
        self.received = 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._ask()

    def _ask(self) -> None:
        assert self.transport is not None
        self.transport.write(self.requests[self.sent % len(self.requests)])
        self.sent += 1

    def get_buffer(self, sizehint: int) -> bytearray:
        # One buffer for all connections: the loop fills it and reports it
        # synchronously, and the bytes are only counted.
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.body_left < 0:
            self.head += self.buffer[:nbytes]
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._start_body(bytes(self.head[:end]))
            nbytes = len(self.head) - end - 4
            self.head.clear()
        self.body_left -= nbytes
        self.received += nbytes
        if self.body_left < 0:
            self._fail(f"{-self.body_left} bytes past Content-Length")
        elif self.body_left == 0:
            self.body_left = -1
            self.left -= 1
            assert self.transport is not None
            if self.left > 0:
                self._ask()
                return
            self.transport.close()
            if not self.done.done():
                self.done.set_result(self.received)

    def _start_body(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 " + self.status + b" "):
            self._fail(f"unexpected status line {lines[0]!r}")
        length = -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length != self.size:
            self._fail(f"Content-Length {length}, expected {self.size}")
        self.body_left = length

    def _fail(self, why: str) -> None:
        if self.transport is not None:
            self.transport.abort()
        if not self.done.done():
            self.done.set_exception(RuntimeError(why))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(f"connection lost early: {exc}"))


async def _client(
    port: int, path: str, clients: int, count: int, size: int, part: int
) -> dict[str, Any]:
    """``part`` > 0: each request asks for a ``part``-byte range, at offsets that rotate."""
    loop = asyncio.get_running_loop()
    buffer = bytearray(MIB)
    base = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if part:
        starts = range(0, size - part + 1, part)
        requests = [f"{base}Range: bytes={a}-{a + part - 1}\r\n\r\n".encode() for a in starts]
        status, length = b"206", part
    else:
        requests, status, length = [f"{base}\r\n".encode()], b"200", size
    protocols: list[_Download] = []
    started = time.perf_counter()
    for i in range(clients):
        # Each connection starts at another range, so the requests cover the file.
        mine = requests[i % len(requests) :] + requests[: i % len(requests)]
        _, protocol = await loop.create_connection(
            lambda mine=mine: _Download(buffer, mine, count, length, status), "127.0.0.1", port
        )
        protocols.append(protocol)
    received = sum(await asyncio.gather(*(p.done for p in protocols)))
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"bytes": received, "seconds": elapsed, "cpu": usage.ru_utime + usage.ru_stime}


def client_main(port: int, path: str, clients: int, count: int, size: int, part: int) -> None:
    import uvloop

    result = uvloop.run(
        asyncio.wait_for(_client(port, path, clients, count, size, part), RUN_TIMEOUT)
    )
    print(json.dumps(result))


# --- minimal otahub app process (--server app) ----------------------------


def app_main(fd: int, file: Path, etag: str, http_impl: str, loop: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    from otahub.hub.http.files import file_response

    app = FastAPI()

    @app.api_route("/firmware.bin", methods=["GET", "HEAD"])
    async def firmware(request: Request) -> Response:
        return file_response(request, file, etag=etag, filename=file.name)

    config = uvicorn.Config(
        app,
        fd=fd,
        http=http_impl,
        loop=loop,
        log_level="warning",
        lifespan="off",
    )
    uvicorn.Server(config).run()


# --- orchestration --------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    path: str


@dataclass
class Run:
    rate: float  # MiB/s
    server_cpu: float  # server CPU seconds per GiB sent
    client_cpu: float  # client CPU seconds per GiB received
    server_ms: float  # server CPU milliseconds per request


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: Server, probe: str = "") -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.proc.returncode} before serving")
        try:
            if probe:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=1)
                try:
                    conn.request("GET", probe)
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            else:
                with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{server.name} did not serve on 127.0.0.1:{server.port} in time")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start_hub(root: Path, file: Path, log: Path, started: list[subprocess.Popen[bytes]]) -> Server:
    """A real `otahub serve` with the file uploaded through the REST API."""
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "otahub",
        "serve",
        "--host",
        "127.0.0.1",
        "--http-port",
        str(port),
        "--mqtt-port",
        str(_free_port()),
        "--data-dir",
        str(root / "hub-data"),
        "--no-auth",
        "--log-level",
        "warning",
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    started.append(proc)
    server = Server("otahub", proc, port, "")
    _wait_ready(server, "/healthz")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        with open(file, "rb") as body:
            conn.request(
                "POST",
                "/api/v1/firmware?title=bench&version=1&filename=firmware.bin",
                body=body,
                headers={"Content-Type": "application/octet-stream"},
                encode_chunked=False,
            )
            response = conn.getresponse()
            text = response.read()
        if response.status != 201:
            raise SystemExit(f"upload to otahub failed: {response.status} {text!r}")
        server.path = json.loads(text)["content_url"]
    finally:
        conn.close()
    return server


def _start_app(
    file: Path, etag: str, http_impl: str, loop: str, started: list[subprocess.Popen[bytes]]
) -> Server:
    """The minimal app, on a socket bound here so there is no port race."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = int(sock.getsockname()[1])
    args = [sys.executable, __file__, "_app", str(sock.fileno()), str(file), etag, http_impl, loop]
    proc = subprocess.Popen(args, pass_fds=[sock.fileno()])
    started.append(proc)
    sock.close()
    server = Server("otahub", proc, port, "/firmware.bin")
    _wait_ready(server)
    return server


def _start_nginx(
    nginx: str, root: Path, www: Path, workers: str, started: list[subprocess.Popen[bytes]]
) -> Server:
    port = _free_port()
    conf = root / "nginx.conf"
    temp = root / "nginx-temp"
    temp.mkdir(exist_ok=True)
    # Everything nginx writes stays in the temporary directory.
    conf.write_text(
        f"""
daemon off;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
"""
    )
    args = [nginx, "-p", str(root), "-e", str(root / "nginx-error.log"), "-c", str(conf)]
    server = Server("nginx", subprocess.Popen(args), port, "/firmware.bin")
    started.append(server.proc)
    _wait_ready(server)
    return server


def _sha256_over_http(server: Server) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("GET", server.path)
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"GET {server.path} on {server.name}: {response.status}")
        digest = hashlib.sha256()
        while chunk := response.read(MIB):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        conn.close()


def _cpu_seconds(proc: subprocess.Popen[bytes]) -> float:
    """CPU time of a server so far, its worker processes included."""
    import psutil

    root = psutil.Process(proc.pid)
    total = 0.0
    for p in (root, *root.children(recursive=True)):
        times = p.cpu_times()
        total += times.user + times.system
    return total


def _peak_rss_mib(proc: subprocess.Popen[bytes]) -> float:
    with open(f"/proc/{proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _run_client(server: Server, clients: int, count: int, size: int, part: int) -> Run:
    args = [
        sys.executable,
        __file__,
        "_client",
        str(server.port),
        server.path,
        str(clients),
        str(count),
        str(size),
        str(part),
    ]
    cpu_before = _cpu_seconds(server.proc)
    out = subprocess.run(args, capture_output=True, check=False, timeout=RUN_TIMEOUT + 30)
    server_cpu = _cpu_seconds(server.proc) - cpu_before
    if out.returncode != 0:
        raise SystemExit(f"client failed against {server.name}: {out.stderr.decode()}")
    result = json.loads(out.stdout)
    total = clients * count * (part or size)
    if result["bytes"] != total:
        raise SystemExit(f"client got {result['bytes']} bytes, expected {total}")
    gib = total / GIB
    return Run(
        total / MIB / float(result["seconds"]),
        server_cpu / gib,
        result["cpu"] / gib,
        server_cpu / (clients * count) * 1000,
    )


def _write_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MIB))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--downloads", type=int, default=2, help="downloads per client per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--range-kib",
        type=int,
        default=0,
        help="ask for ranges of this many KiB (206) instead of the whole file",
    )
    parser.add_argument(
        "--server",
        choices=["hub", "app"],
        default="hub",
        help="hub: a real `otahub serve`; app: a minimal app using file_response",
    )
    parser.add_argument("--http", default="auto", help="uvicorn HTTP implementation (app)")
    parser.add_argument("--loop", default="auto", help="uvicorn event loop (app)")
    parser.add_argument(
        "--nginx-workers",
        default="1",
        help="nginx worker_processes; 1 matches the single otahub process",
    )
    parser.add_argument("--json", action="store_true", help="print the runs as JSON too")
    args = parser.parse_args()

    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if nginx is None:
        raise SystemExit("nginx not found: install the Debian package nginx (scripts/test.sh does)")

    size = args.size_mib * MIB
    part = args.range_kib * 1024
    if part > size:
        raise SystemExit("--range-kib is larger than the file")
    started: list[subprocess.Popen[bytes]] = []
    runs: dict[str, list[Run]] = {"otahub": [], "nginx": []}
    with tempfile.TemporaryDirectory(prefix="otahub-bench-") as tmp:
        root = Path(tmp)
        www = root / "www"
        www.mkdir()
        # nginx workers drop to an unprivileged user when started as root.
        for p in (root, www):
            p.chmod(0o755)
        file = www / "firmware.bin"
        sha = _write_file(file, size)
        file.chmod(0o644)
        try:
            if args.server == "hub":
                ota = _start_hub(root, file, root / "hub.log", started)
            else:
                ota = _start_app(file, sha, args.http, args.loop, started)
            ngx = _start_nginx(nginx, root, www, args.nginx_workers, started)
            for server in (ota, ngx):
                if _sha256_over_http(server) != sha:
                    raise SystemExit(f"{server.name} served different bytes")
            for round_no in range(args.rounds):
                order = (ota, ngx) if round_no % 2 == 0 else (ngx, ota)
                for server in order:
                    run = _run_client(server, args.clients, args.downloads, size, part)
                    runs[server.name].append(run)
                    print(
                        f"round {round_no + 1} {server.name:7s} {run.rate:7.0f} MB/s"
                        f"  server {run.server_cpu:5.2f} CPU s/GiB"
                        f" ({run.server_ms:6.2f} ms/request)"
                        f"  client {run.client_cpu:5.2f} CPU s/GiB",
                        flush=True,
                    )
            peak_rss = _peak_rss_mib(ota.proc)
        finally:
            for proc in started:
                _stop(proc)

    ota_runs, ngx_runs = runs["otahub"], runs["nginx"]
    ratios = [o.rate / n.rate for o, n in zip(ota_runs, ngx_runs, strict=True)]
    ota_mbs = statistics.median(r.rate for r in ota_runs)
    ngx_mbs = statistics.median(r.rate for r in ngx_runs)
    ota_cpu = statistics.median(r.server_cpu for r in ota_runs)
    ngx_cpu = statistics.median(r.server_cpu for r in ngx_runs)
    ota_ms = statistics.median(r.server_ms for r in ota_runs)
    ngx_ms = statistics.median(r.server_ms for r in ngx_runs)
    # nginx may show no CPU tick at all in a short run of small ranges (10 ms resolution)
    cpu_ratios = [
        o.server_cpu / n.server_cpu if n.server_cpu else float("inf")
        for o, n in zip(ota_runs, ngx_runs, strict=True)
    ]
    what = "otahub serve" if args.server == "hub" else f"app http={args.http} loop={args.loop}"
    unit = f"{args.range_kib} KiB ranges of a" if part else "downloads of a"
    print(
        f"{args.clients} clients x {args.downloads} {unit} {args.size_mib} MiB file per run, "
        f"median of {args.rounds} rounds (MB = MiB):"
    )
    print(
        f"otahub {ota_mbs:7.0f} MB/s  {ota_cpu:5.2f} CPU s/GiB  {ota_ms:6.2f} ms/request ({what})"
    )
    print(
        f"nginx  {ngx_mbs:7.0f} MB/s  {ngx_cpu:5.2f} CPU s/GiB  {ngx_ms:6.2f} ms/request"
        f"  (worker_processes {args.nginx_workers}, sendfile on)"
    )
    print(f"otahub peak RSS {peak_rss:.0f} MiB")
    print(
        f"throughput otahub/nginx {statistics.median(ratios):.2f} (median of per-round ratios"
        f" {', '.join(f'{r:.2f}' for r in ratios)}; target >= 1.0)"
    )
    print(
        f"CPU s/GiB otahub/nginx {statistics.median(cpu_ratios):.2f} (median of per-round ratios"
        f" {', '.join(f'{r:.2f}' for r in cpu_ratios)}; target <= 1.3)"
    )
    if args.json:
        print(json.dumps({name: [vars(r) for r in rs] for name, rs in runs.items()}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        port, path, clients, count, size, part = sys.argv[2:8]
        client_main(int(port), path, int(clients), int(count), int(size), int(part))
    elif len(sys.argv) > 1 and sys.argv[1] == "_app":
        fd, file, etag, http_impl, loop = sys.argv[2:7]
        app_main(int(fd), Path(file), etag, http_impl, loop)
    else:
        main()
