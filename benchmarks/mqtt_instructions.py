"""Instructions per intercepted round trip in the MQTT endpoint, compiled against plain Python.

Counts what the CPU executes, not time, so it repeats to the instruction on
a busy machine. A driver claims ``bench/req/+`` and answers each request
through direct delivery with a PUBLISH on ``bench/res/<n>`` (the
``rr-8k`` scenario of ``mqtt_endpoint.py``); 100 connections get their
requests through ``Connection.data_received`` with a transport that only
counts bytes. The loop runs under ``valgrind --tool=callgrind`` twice, with
two request counts, and the difference divided by the difference in
requests is the cost of one round trip (start-up cancels out). The baseline
is the same run on the plain sources (a copy without the compiled modules).

    .venv/bin/python benchmarks/mqtt_instructions.py [--response-size 8192]

Needs valgrind (Debian package). About a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parent.parent / "src"
CONNECTIONS = 100
COUNTS = (2000, 12000)


class _CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def write(self, data: Any) -> None:
        self.sent += len(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.sent += len(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def _round_trips(requests: int, response_size: int) -> None:
    from otahub.mqtt.codec import encode
    from otahub.mqtt.connection import Connection
    from otahub.mqtt.packets import Connect, Publish
    from otahub.mqtt.server import MQTTServer
    from otahub.mqtt.session import Session

    server = MQTTServer()
    response = bytes(response_size)

    def on_request(session: Session, publish: Publish) -> None:
        session.send("bench/res/" + publish.topic[10:], response)

    server.intercept("bench/req/+", on_request)
    clients = []
    for i in range(CONNECTIONS):
        conn = Connection(server, "mqtt")
        transport = _CountingTransport()
        conn.connection_made(transport)
        conn.data_received(encode(Connect(f"bench-p{i:02d}", 4, True, 60), 4))
        clients.append((conn, transport, encode(Publish(f"bench/req/{i:02d}", bytes(32)), 4)))
    await asyncio.sleep(0.05)  # the CONNECTs are accepted in tasks
    if not all(conn.state == "connected" for conn, _, _ in clients):
        raise SystemExit("not every connection was accepted")
    for _ in range(requests // CONNECTIONS):
        for conn, _, request in clients:
            conn.data_received(request)
    answered = sum(transport.sent for _, transport, _ in clients)
    if answered < requests * response_size:
        raise SystemExit(f"only {answered} bytes answered for {requests} requests")


def _instructions(pythonpath: Path, requests: int, response_size: int) -> int:
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "_run", str(requests), str(response_size),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return int(found.group(1))


def _per_round_trip(pythonpath: Path, response_size: int) -> float:
    low, high = (_instructions(pythonpath, n, response_size) for n in COUNTS)
    return (high - low) / (COUNTS[1] - COUNTS[0])


def _compiled_at(pythonpath: Path) -> bool:
    probe = "import otahub.mqtt as m; print(m.compiled())"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.strip() == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--response-size", type=int, default=8192)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    if not _compiled_at(SRC):
        raise SystemExit(
            "otahub.mqtt is not compiled here: install otahub without OTAHUB_PURE_PYTHON"
        )
    with tempfile.TemporaryDirectory() as pure:
        shutil.copytree(
            SRC / "otahub", Path(pure) / "otahub", ignore=shutil.ignore_patterns("*.so")
        )
        if _compiled_at(Path(pure)):
            raise SystemExit("the plain copy still imports compiled modules")
        plain = _per_round_trip(Path(pure), args.response_size)
    compiled = _per_round_trip(SRC, args.response_size)
    print(f"{CONNECTIONS} connections, {args.response_size}-byte responses, requests {COUNTS}")
    print(f"plain Python   {plain:9.0f} instructions per round trip")
    print(f"compiled       {compiled:9.0f} instructions per round trip")
    print(f"ratio compiled/plain: {compiled / plain:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_run":
        asyncio.run(_round_trips(int(sys.argv[2]), int(sys.argv[3])))
    else:
        main()
