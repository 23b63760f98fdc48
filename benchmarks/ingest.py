"""Status ingest: ThingsBoard telemetry durably recorded by otahub serve, against the raw endpoint.

DEVICES ThingsBoard devices (raw-socket clients in one load-generator
process, precomputed packets) each send MESSAGES QoS 1 PUBLISHes on
``v1/devices/me/telemetry``, WINDOW of them in flight per device, to

- ``otahub serve --no-auth`` (SQLite), where each device has an active
  update: each message is written to the hub's ingest journal (fdatasync)
  before its PUBACK goes out, and applied behind it: the first ``fw_state``
  DOWNLOADING moves the update to ``downloading``, later ones record
  progress on it (the update row's ``updated_at`` and deadline);
- the baseline: otahub's MQTT endpoint alone (``otahub.mqtt.server``) with
  an interception handler on the same topic that does nothing, so each
  message is parsed, handed over and acknowledged, with no database.

Printed per server: messages per second (PUBACKs received / time from the
first PUBLISH to the last PUBACK), median and spread over ROUNDS, and
otahub's share of the baseline, and each server's CPU time (user + system)
per message over its rounds, the round's connects included: a figure other
work on the machine disturbs less than the rate. For otahub also the rate
at which the messages were applied (time from the first PUBLISH until the
hub's ``otahub_ingest_backlog`` metric is back to 0), and its CPU is counted
until then; then the hub's check that every update is ``downloading``. The
issue's target is 20,000 msg/s.

    .venv/bin/python benchmarks/ingest.py [--devices 500] [--messages 40]
        [--window 4] [--rounds 3]

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
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.mqtt_endpoint import HOST, _serve_until_stopped
from benchmarks.support import frame_len, start_hub, stop_process

from otahub.mqtt.codec import encode
from otahub.mqtt.packets import Connect, Publish

TOPIC = "v1/devices/me/telemetry"
TARGET = 20_000.0
TIMEOUT = 600.0
TITLE = "ingest-bench"


def _name(i: int) -> str:
    return f"ingest-{i:05d}"


def _token(i: int) -> str:
    return f"ingest-tok-{i:05d}"


def _connect(i: int) -> bytes:
    return encode(Connect(_name(i), 4, True, 600, username=_token(i)), 4)


PAYLOAD = json.dumps(
    {"fw_state": "DOWNLOADING", "current_fw_title": TITLE, "current_fw_version": "1.0"}
).encode()


def _publishes(count: int) -> list[bytes]:
    """``count`` QoS 1 telemetry PUBLISHes with packet ids 1, 2, ... (wrapping)."""
    return [
        encode(Publish(TOPIC, PAYLOAD, qos=1, packet_id=n % 65535 + 1), 4) for n in range(count)
    ]


# --- load generator ---------------------------------------------------------------


class _Device(asyncio.Protocol):
    """One device: CONNECT, then keeps ``window`` PUBLISHes in flight until all are acked."""

    def __init__(self, i: int, packets: list[bytes], window: int, done: asyncio.Future[Any]):
        self.i = i
        self.packets = packets
        self.window = window
        self.done = done
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.sent = 0
        self.acked = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(_connect(self.i))

    def go(self) -> None:
        burst = self.packets[: self.window]
        self.sent = len(burst)
        self.transport.write(b"".join(burst))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (n := frame_len(self.buf)) > 0:
            kind = self.buf[0] >> 4
            code = self.buf[3] if n >= 4 else 0
            del self.buf[:n]
            if kind == 2:  # CONNACK
                if code != 0:
                    self.connected.set_exception(RuntimeError(f"CONNACK {code}"))
                else:
                    self.connected.set_result(None)
            elif kind == 4:  # PUBACK
                self.acked += 1
                if self.sent < len(self.packets):
                    self.transport.write(self.packets[self.sent])
                    self.sent += 1
                elif self.acked == len(self.packets) and not self.done.done():
                    self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"device {self.i}: connection lost ({exc})")
        for future in (self.connected, self.done):
            if not future.done():
                future.set_exception(error)


def _same(client: _Device) -> _Device:
    return client


async def load_main(port: int, devices: int, messages: int, window: int) -> None:
    loop = asyncio.get_running_loop()
    packets = _publishes(messages)
    clients: list[_Device] = []
    for i in range(devices):
        client = _Device(i, packets, window, loop.create_future())
        await loop.create_connection(partial(_same, client), HOST, port)
        clients.append(client)
    await asyncio.wait_for(asyncio.gather(*(c.connected for c in clients)), 120)
    began = time.perf_counter()
    for client in clients:
        client.go()
    await asyncio.wait_for(asyncio.gather(*(c.done for c in clients)), TIMEOUT)
    elapsed = time.perf_counter() - began
    acked = sum(c.acked for c in clients)
    for client in clients:
        client.transport.close()
    wall = time.time() - elapsed  # when the first PUBLISH went out
    print(json.dumps({"messages": acked, "seconds": elapsed, "began": wall}), flush=True)


def _load(port: int, args: argparse.Namespace, server: str) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--role",
            "load",
            "--port",
            str(port),
            "--devices",
            str(args.devices),
            "--messages",
            str(args.messages),
            "--window",
            str(args.window),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT + 120,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"load generator against {server} failed:\n{out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- baseline: the endpoint alone --------------------------------------------------------


async def baseline_main() -> None:
    from otahub.mqtt.server import MQTTServer
    from otahub.mqtt.session import Session

    server = MQTTServer()

    def on_telemetry(session: Session, publish: Publish) -> None:
        pass  # acknowledged at once: no driver, no database

    server.intercept(TOPIC, on_telemetry)
    port = await server.listen(HOST, 0)
    try:
        await _serve_until_stopped(port)
    finally:
        await server.close()


# --- the hub --------------------------------------------------------------------------


def _prepare_hub(url: str, devices: int) -> None:
    """Register the devices (one batch) and give each an active update."""
    with httpx.Client(base_url=f"{url}/api/v1", timeout=600) as api:
        api.post(
            "/firmware",
            params={"title": TITLE, "version": "2.0"},
            content=os.urandom(4096),
            headers={"content-type": "application/octet-stream"},
        ).raise_for_status()
        specs = [
            {"name": _name(i), "dialect": "thingsboard", "token": _token(i)} for i in range(devices)
        ]
        for start in range(0, devices, 1000):
            api.post("/devices/batch", json=specs[start : start + 1000]).raise_for_status()
        for i in range(devices):
            api.post(
                "/updates", json={"device": _name(i), "title": TITLE, "version": "2.0"}
            ).raise_for_status()


def _check_hub(url: str, devices: int) -> str:
    with httpx.Client(base_url=f"{url}/api/v1", timeout=60) as api:
        r = api.get("/updates", params={"state": "downloading", "limit": 1000})
        r.raise_for_status()
        downloading = len(r.json())
    want = min(devices, 1000)
    if downloading < want:
        raise SystemExit(f"only {downloading} of {want} updates are downloading on the hub")
    return f"hub: {downloading} updates listed as downloading (first page of at most 1000)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--messages", type=int, default=40, help="per device and round")
    parser.add_argument("--window", type=int, default=4, help="PUBLISHes in flight per device")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load0 = os.getloadavg()[0]
    rates: dict[str, list[float]] = {"baseline": [], "otahub": [], "applied": []}
    # server CPU (user + system) per message, less disturbed by other work than the rate
    cpu_us: dict[str, list[float]] = {"baseline": [], "otahub": []}
    with tempfile.TemporaryDirectory(prefix="otahub-ingest-") as tmp:
        hub, url = start_hub(Path(tmp) / "data", Path(tmp) / "hub.log")
        base = subprocess.Popen(
            [sys.executable, __file__, "--role", "baseline"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            _prepare_hub(url, args.devices)
            hub_port = _mqtt_port(hub)
            assert base.stdout is not None
            base_port = int(base.stdout.readline().split()[1])
            procs = {"baseline": psutil.Process(base.pid), "otahub": psutil.Process(hub.pid)}
            for _ in range(args.rounds):
                for server, port in (("baseline", base_port), ("otahub", hub_port)):
                    cpu0 = _cpu(procs[server])
                    run = _load(port, args, server)
                    if run["messages"] != args.devices * args.messages:
                        raise SystemExit(f"{server}: {run['messages']} acknowledged, not all")
                    rates[server].append(run["messages"] / run["seconds"])
                    if server == "otahub":
                        applied_at = _wait_applied(url)
                        rates["applied"].append(run["messages"] / (applied_at - run["began"]))
                    cpu_us[server].append((_cpu(procs[server]) - cpu0) / run["messages"] * 1e6)
            check = _check_hub(url, args.devices)
        except BaseException:
            log = (Path(tmp) / "hub.log").read_text(errors="replace").splitlines()
            print("hub log, last lines:", *log[-20:], sep="\n", file=sys.stderr)
            raise
        finally:
            stop_process(base)
            stop_process(hub)
    load1 = os.getloadavg()[0]
    print(
        f"{args.devices} devices x {args.messages} QoS 1 telemetry messages, window "
        f"{args.window}, {args.rounds} rounds"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average before/after {load0:.2f} / {load1:.2f}")
    print()
    print(
        "| server | msg/s median | spread | vs baseline | target 20,000 msg/s "
        "| server CPU per message (median, spread) |"
    )
    print("|---|---|---|---|---|---|")
    base_median = statistics.median(rates["baseline"])
    for server in ("baseline", "otahub"):
        values = rates[server]
        median = statistics.median(values)
        share = "" if server == "baseline" else f"{median / base_median:.2f}x"
        meets = "met" if median >= TARGET else "not met"
        cpu = cpu_us[server]
        print(
            f"| {server} | {median:,.0f} | {min(values):,.0f}-{max(values):,.0f} | {share} "
            f"| {meets} ({median / TARGET:.2f}) "
            f"| {statistics.median(cpu):.0f} us ({min(cpu):.0f}-{max(cpu):.0f}) |"
        )
    applied = rates["applied"]
    print(
        f"| otahub, applied | {statistics.median(applied):,.0f} | "
        f"{min(applied):,.0f}-{max(applied):,.0f} | "
        f"{statistics.median(applied) / base_median:.2f}x | | |"
    )
    print()
    print(check)


def _wait_applied(url: str) -> float:
    """When the hub's ingest backlog was seen empty (Unix time)."""
    deadline = time.monotonic() + TIMEOUT
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            text = client.get(f"{url}/metrics").text
            backlog = [
                line for line in text.splitlines() if line.startswith("otahub_ingest_backlog ")
            ]
            if not backlog or float(backlog[0].split()[1]) == 0:
                return time.time()  # no journal (an older hub): applied before the PUBACK
            time.sleep(0.02)
    raise SystemExit("the hub did not apply its ingest backlog in time")


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _mqtt_port(hub: subprocess.Popen[Any]) -> int:
    """The ``--mqtt-port`` the hub was started with."""
    args = hub.args
    assert isinstance(args, list)
    argv = [str(arg) for arg in args]
    return int(argv[argv.index("--mqtt-port") + 1])


def _role() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role")
    parser.add_argument("--port", type=int)
    parser.add_argument("--devices", type=int)
    parser.add_argument("--messages", type=int)
    parser.add_argument("--window", type=int)
    args = parser.parse_args()
    if args.role == "baseline":
        asyncio.run(baseline_main())
    else:
        asyncio.run(load_main(args.port, args.devices, args.messages, args.window))


if __name__ == "__main__":
    if "--role" in sys.argv:
        _role()
    else:
        main()
