"""ThingsBoard chunk download throughput: otahub serve versus a raw asyncio baseline.

DEVICES devices (default 200) each download a 1 MiB image through the real
``v2/fw/request/{rid}/chunk/{n}`` protocol, once in 64 KiB and once in 8 KiB
chunks, against ``otahub serve`` (ThingsBoard driver, access-token auth,
active updates, progress tracking). Each device is a raw-socket client in
one load-generator process: precomputed packets, one request in flight,
QoS 0 replies (the clients subscribe ``v2/fw/response/+/chunk/+`` at QoS 0).

The baseline is a bare asyncio server, run with the ``mqtt_endpoint.py``
harness, that frames each request by its MQTT length and answers with the
very bytes otahub sends (precomputed with otahub's encoder): the same load,
no MQTT logic. Reported: MB/s, chunks/s and otahub's share of the baseline.

    .venv/bin/python benchmarks/tb_chunks.py [--devices 200] [--image-mib 1] [--rounds 2]

Binds 127.0.0.1 only and stops every process it starts by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.mqtt_endpoint import HOST, _serve_until_stopped
from benchmarks.support import frame_len, stop_process

from otahub.mqtt.codec import encode
from otahub.mqtt.packets import (
    Connack,
    Connect,
    Publish,
    Suback,
    Subscribe,
    Subscription,
)

CHUNK_SIZES = (65536, 8192)
TIMEOUT = 300.0


def image(mib: int) -> bytes:
    return bytes((i * 131 + 7) & 0xFF for i in range(256)) * (mib * 4096)


def _chunk_count(size: int, chunk: int) -> int:
    return -(-size // chunk)


def _response(data: bytes, rid: int, chunk: int, index: int) -> bytes:
    topic = f"v2/fw/response/{rid}/chunk/{index}"
    return encode(Publish(topic, data[index * chunk : (index + 1) * chunk]), 4)


def _request(rid: int, chunk: int, index: int) -> bytes:
    return encode(Publish(f"v2/fw/request/{rid}/chunk/{index}", str(chunk).encode()), 4)


def _connect(i: int) -> bytes:
    return encode(Connect(f"bench-{i:04d}", 4, True, 60, username=f"bench-tok-{i:04d}"), 4)


SUBSCRIBE = encode(Subscribe(1, [Subscription("v2/fw/response/+/chunk/+", 0)]), 4)


# --- baseline server ----------------------------------------------------------------


class _Baseline(asyncio.Protocol):
    def __init__(self, responses: dict[bytes, bytes]) -> None:
        self.responses = responses
        self.buf = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (n := frame_len(self.buf)) > 0:
            packet = bytes(self.buf[:n])
            del self.buf[:n]
            kind = packet[0] >> 4
            if kind == 1:
                self.transport.write(encode(Connack(False, 0), 4))
            elif kind == 8:
                self.transport.write(encode(Suback(1, [0]), 4))
            else:
                self.transport.write(self.responses[packet])


async def baseline_main(mib: int) -> None:
    data = image(mib)
    responses = {}
    for chunk in CHUNK_SIZES:
        rid = 1 if chunk == CHUNK_SIZES[0] else 2
        for index in range(_chunk_count(len(data), chunk)):
            responses[_request(rid, chunk, index)] = _response(data, rid, chunk, index)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Baseline(responses), HOST, 0)
    try:
        await _serve_until_stopped(server.sockets[0].getsockname()[1])
    finally:
        server.close()


# --- load generator -------------------------------------------------------------------


async def _device(
    port: int,
    i: int,
    rid: int,
    chunk: int,
    count: int,
    ready: asyncio.Event,
    go: asyncio.Event,
    totals: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(_connect(i) + SUBSCRIBE)
    await reader.readexactly(4)  # CONNACK
    await reader.readexactly(5)  # SUBACK
    requests = [_request(rid, chunk, n) for n in range(count)]
    ready.set()
    await go.wait()
    got = 0
    for request in requests:
        writer.write(request)
        head = await reader.readexactly(2)
        mult, value, byte = 1, head[1] & 0x7F, head[1]
        while byte & 0x80:
            byte = (await reader.readexactly(1))[0]
            mult *= 128
            value += (byte & 0x7F) * mult
        body = await reader.readexactly(value)
        topic_len = int.from_bytes(body[:2], "big")
        got += len(body) - 2 - topic_len
    totals.append(got)
    writer.close()


async def load_main(port: int, devices: int, rid: int, chunk: int, size: int) -> None:
    count = _chunk_count(size, chunk)
    readies = [asyncio.Event() for _ in range(devices)]
    go = asyncio.Event()
    totals: list[int] = []
    tasks = [
        asyncio.create_task(_device(port, i, rid, chunk, count, readies[i], go, totals))
        for i in range(devices)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
    began = time.perf_counter()
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    elapsed = time.perf_counter() - began
    result = {"bytes": sum(totals), "chunks": devices * count, "seconds": elapsed}
    print(json.dumps(result), flush=True)


# --- orchestration ----------------------------------------------------------------------


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _load(port: int, devices: int, rid: int, chunk: int, size: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--role",
            "load",
            "--port",
            str(port),
            "--devices",
            str(devices),
            "--rid",
            str(rid),
            "--chunk",
            str(chunk),
            "--size",
            str(size),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 60,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _start_hub(data_dir: Path, devices: int, data: bytes) -> tuple[subprocess.Popen[str], int]:
    mqtt, http = _free_port(), _free_port()
    hub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otahub",
            "serve",
            "--no-auth",
            "--log-level",
            "warning",
            "--mqtt-port",
            str(mqtt),
            "--http-port",
            str(http),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://{HOST}:{http}/api/v1"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://{HOST}:{http}/healthz", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or hub.poll() is not None:
                hub.kill()
                raise RuntimeError("otahub serve did not start") from None
            time.sleep(0.1)
    with httpx.Client(base_url=base, timeout=60) as api:
        api.post("/firmware", params={"title": "bench", "version": "1"}, content=data)
        for i in range(devices):
            api.post(
                "/devices",
                json={
                    "name": f"bench-{i:04d}",
                    "dialect": "thingsboard",
                    "token": f"bench-tok-{i:04d}",
                },
            ).raise_for_status()
            api.post(
                "/updates", json={"device": f"bench-{i:04d}", "title": "bench", "version": "1"}
            ).raise_for_status()
    return hub, mqtt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--image-mib", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = image(args.image_mib)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        hub, hub_port = _start_hub(Path(tmp) / "data", args.devices, data)
        base = _spawn(
            [sys.executable, __file__, "--role", "baseline", "--image-mib", str(args.image_mib)]
        )
        try:
            assert base.stdout is not None
            base_port = int(base.stdout.readline().split()[1])
            for round_ in range(args.rounds):
                for chunk in CHUNK_SIZES:
                    rid = 1 if chunk == CHUNK_SIZES[0] else 2
                    # a fresh rid per round on the hub: each round resolves the package anew
                    hub_rid = rid + 10 * (round_ + 1)
                    results.setdefault(("baseline", chunk), []).append(
                        _load(base_port, args.devices, rid, chunk, len(data))
                    )
                    results.setdefault(("otahub", chunk), []).append(
                        _load(hub_port, args.devices, hub_rid, chunk, len(data))
                    )
        finally:
            stop_process(base)
            stop_process(hub)
    print(f"{args.devices} devices x {args.image_mib} MiB, median of {args.rounds} rounds")
    print(f"{'chunk':>7} {'server':>9} {'MB/s':>9} {'chunks/s':>10} {'vs baseline':>12}")
    for chunk in CHUNK_SIZES:
        rates = {}
        for server in ("baseline", "otahub"):
            runs = results[(server, chunk)]
            mbs = statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in runs)
            cps = statistics.median(r["chunks"] / r["seconds"] for r in runs)
            for r in runs:
                assert r["bytes"] == args.devices * len(data), r
            rates[server] = mbs
            share = "" if server == "baseline" else f"{mbs / rates['baseline']:.2f}x"
            print(f"{chunk:>7} {server:>9} {mbs:>9.1f} {cps:>10.0f} {share:>12}")


def _role() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role")
    parser.add_argument("--port", type=int)
    parser.add_argument("--devices", type=int)
    parser.add_argument("--rid", type=int)
    parser.add_argument("--chunk", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--image-mib", type=int, default=1)
    args = parser.parse_args()
    if args.role == "baseline":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(baseline_main(args.image_mib))
    else:
        asyncio.run(load_main(args.port, args.devices, args.rid, args.chunk, args.size))


if __name__ == "__main__":
    if "--role" in sys.argv:
        _role()
    else:
        main()
