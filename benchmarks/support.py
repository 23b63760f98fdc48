"""What several benchmarks share: free ports, a hub subprocess, an RSS sampler."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil


def frame_len(buf: bytearray) -> int:
    """Length of the first MQTT packet in ``buf``, 0 if incomplete."""
    mult, value, pos = 1, 0, 1
    while pos < len(buf):
        byte = buf[pos]
        value += (byte & 0x7F) * mult
        pos += 1
        if not byte & 0x80:
            total = pos + value
            return total if len(buf) >= total else 0
        mult *= 128
    return 0


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """End a process the benchmark started: its stdin closed, SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_hub(
    data_dir: Path, log_path: Path, extra_args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """``otahub serve --no-auth`` on free loopback ports; returns it and its HTTP base URL."""
    http_port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otahub",
                "serve",
                "--no-auth",
                "--data-dir",
                str(data_dir),
                "--http-port",
                str(http_port),
                "--mqtt-port",
                str(free_port()),
                "--log-level",
                "warning",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"otahub serve exited:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("otahub serve did not become ready")


class RssSampler(threading.Thread):
    """Peak resident set size of one process, with the anonymous/file split at the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.peak_detail = ""
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        while not self._stop_event.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            self.samples += 1
            if rss > self.peak:
                self.peak = rss
                try:
                    fields = dict(
                        line.split(":", 1)
                        for line in status.read_text().splitlines()
                        if ":" in line
                    )
                    self.peak_detail = ", ".join(
                        f"{k} {fields[k].strip()}"
                        for k in ("RssAnon", "RssFile", "RssShmem")
                        if k in fields
                    )
                except OSError:
                    pass
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
