"""MQTT endpoint throughput: otahub's MQTTServer versus a bare asyncio TCP server.

Scenarios (MQTT 3.1.1, CONNECTIONS concurrent connections, each closed loop):

- rr-8k, rr-64k: a small QoS 0 PUBLISH on bench/req/<n>; a test driver
  intercepts `bench/req/+` and answers through direct delivery
  (`session.send`) with an 8 KiB / 64 KiB QoS 0 PUBLISH on bench/res/<n>.
  Counts round trips.
- qos1-fanin: a 256-byte QoS 1 PUBLISH on bench/in/<n>, routed to one
  subscriber of `bench/in/+` (QoS 0); the publisher waits for its PUBACK.
  Counts acknowledged publishes; the subscriber's bytes are counted too.
- qos1-intercept: the same QoS 1 PUBLISH on bench/ev/<n>, claimed by the
  driver (interception instead of routing); counts acknowledged publishes.

The baseline is a minimal asyncio server on the same event loop (uvloop)
that frames the same fixed-size requests by byte count and writes back the
very bytes otahub sends (precomputed with otahub's own encoder), so both
servers see byte-identical load. The round-trip scenarios have a second
baseline: mosquitto (started on a free loopback port with a temporary
configuration) with a paho-mqtt client that subscribes to `bench/req/+` and
answers each request with the same PUBLISH on bench/res/<n>, to which the
load generator's connections subscribe first: the bytes each side sees are
the same again. The load generator is a separate process:
precomputed packets, one reused receive buffer, responses read by byte
count. Baseline, otahub (and mosquitto) run in turn for several rounds; the
medians are compared.

    .venv/bin/python benchmarks/mqtt_endpoint.py [--duration 5] [--rounds 3]
        [--connections 100] [--scenarios rr-8k,rr-64k,qos1-fanin,qos1-intercept]

Binds 127.0.0.1 only, stops every process it starts by its pid, and bounds
every run in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from otahub.cli.serve import run_async
from otahub.mqtt.codec import encode
from otahub.mqtt.packets import Connack, Connect, Puback, Publish, Suback, Subscribe, Subscription

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

HOST = "127.0.0.1"
REQUEST_PAYLOAD = 32  # bytes in a request/response scenario's request
PUBLISH_PAYLOAD = 256  # bytes in a QoS 1 scenario's publish
START_TIMEOUT = 20.0
SETUP_TIMEOUT = 30.0  # connecting and checking every connection
SERVER_LIFETIME = 1800.0  # a server left behind by a killed benchmark exits on its own


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "rr", "fanin" or "intercept"
    response_size: int = 0  # rr: payload bytes of the response
    unit: str = "round trips"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("rr-8k", "rr", 8 * 1024),
        Scenario("rr-64k", "rr", 64 * 1024),
        Scenario("qos1-fanin", "fanin", unit="acked msgs"),
        Scenario("qos1-intercept", "intercept", unit="acked msgs"),
    )
}


# --- the bytes on the wire -------------------------------------------------------


def _payload(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


@dataclass
class Wire:
    """Every packet of a scenario, as both servers must send and receive them."""

    connects: list[bytes]  # one per publishing connection
    requests: list[bytes]
    responses: list[bytes]
    connack: bytes = encode(Connack(False, 0), 4)
    # fan-in only: the subscriber's handshake and what it receives per publish
    sub_connect: bytes = b""
    subscribe: bytes = b""
    suback: bytes = b""
    forwarded: list[bytes] = field(default_factory=list)
    # rr against a broker: each connection subscribes to its response topic first
    res_subscribes: list[bytes] = field(default_factory=list)


def build_wire(scenario: Scenario, connections: int) -> Wire:
    width = len(str(max(connections - 1, 0)))
    names = [f"{i:0{width}d}" for i in range(connections)]
    # equal-length client ids, so the baseline can frame CONNECTs by size
    connects = [encode(Connect(f"bench-p{n}", 4, True, 60), 4) for n in names]
    if scenario.kind == "rr":
        request = _payload(REQUEST_PAYLOAD)
        response = _payload(scenario.response_size)
        return Wire(
            connects,
            [encode(Publish(f"bench/req/{n}", request), 4) for n in names],
            [encode(Publish(f"bench/res/{n}", response), 4) for n in names],
            suback=encode(Suback(1, [0]), 4),
            res_subscribes=[
                encode(Subscribe(1, [Subscription(f"bench/res/{n}", 0)]), 4) for n in names
            ],
        )
    prefix = "bench/in/" if scenario.kind == "fanin" else "bench/ev/"
    payload = _payload(PUBLISH_PAYLOAD)
    # one message in flight per connection: packet id 1 is free again after each PUBACK
    requests = [encode(Publish(prefix + n, payload, 1, packet_id=1), 4) for n in names]
    wire = Wire(connects, requests, [encode(Puback(1), 4)] * connections)
    if scenario.kind == "fanin":
        wire.sub_connect = encode(Connect("bench-s" + "0" * width, 4, True, 60), 4)
        wire.subscribe = encode(Subscribe(1, [Subscription("bench/in/+", 0)]), 4)
        wire.suback = encode(Suback(1, [0]), 4)
        wire.forwarded = [encode(Publish(prefix + n, payload), 4) for n in names]
    return wire


# --- servers under test ----------------------------------------------------------


async def _serve_until_stopped(port: int) -> None:
    """Announce the port, then run until stdin closes or the lifetime ends."""
    print(f"READY {port}", flush=True)
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            stopped.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    try:
        await asyncio.wait_for(stopped.wait(), SERVER_LIFETIME)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(sys.stdin.fileno())


async def otahub_server(response_size: int) -> None:
    from otahub.mqtt.packets import Publish as PublishPacket
    from otahub.mqtt.server import MQTTServer
    from otahub.mqtt.session import Session

    server = MQTTServer()
    response = _payload(response_size)

    # The test driver: what a dialect driver answering device requests does.
    def on_request(session: Session, publish: PublishPacket) -> None:
        session.send("bench/res/" + publish.topic[10:], response)

    def on_event(session: Session, publish: PublishPacket) -> None:
        pass

    server.intercept("bench/req/+", on_request)
    server.intercept("bench/ev/+", on_event)
    port = await server.listen(HOST, 0)
    try:
        await _serve_until_stopped(port)
    finally:
        await server.close()


class _BaselineConnection(asyncio.Protocol):
    """Answers by byte count with precomputed bytes; no MQTT logic at all."""

    def __init__(self, wire: Wire, shared: dict[str, Any]) -> None:
        self.wire = wire
        self.shared = shared  # "subscriber": the fan-in subscriber's transport
        self.transport: asyncio.Transport | None = None
        self.handshake = bytearray()
        self.size = 0  # request size once the handshake is done
        self.pending = 0
        self.response = b""
        self.forward = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        size = self.size
        if size:
            pending = self.pending + len(data)
            while pending >= size:
                pending -= size
                self.transport.write(self.response)  # type: ignore[union-attr]
                if self.forward:
                    subscriber = self.shared.get("subscriber")
                    if subscriber is not None:
                        subscriber.write(self.forward)
            self.pending = pending
            return
        self._handshake(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.shared.get("subscriber") is self.transport:
            del self.shared["subscriber"]

    def _handshake(self, data: bytes) -> None:
        # Runs once per connection, before any timed traffic.
        assert self.transport is not None
        wire = self.wire
        self.handshake += data
        size = len(wire.connects[0])
        if len(self.handshake) < size:
            return
        connect = bytes(self.handshake[:size])
        if connect == wire.sub_connect:
            total = size + len(wire.subscribe)
            if len(self.handshake) < total:
                return
            self.transport.write(wire.connack + wire.suback)
            self.shared["subscriber"] = self.transport
            self.size = sys.maxsize  # the subscriber sends nothing more
            return
        index = wire.connects.index(connect)
        self.response = wire.responses[index]
        self.forward = wire.forwarded[index] if wire.forwarded else b""
        self.size = len(wire.requests[index])
        self.transport.write(wire.connack)
        rest = bytes(self.handshake[size:])
        self.handshake.clear()
        if rest:
            self.data_received(rest)


async def baseline_server(wire: Wire) -> None:
    loop = asyncio.get_running_loop()
    shared: dict[str, Any] = {}
    server = await loop.create_server(
        lambda: _BaselineConnection(wire, shared), HOST, 0, reuse_address=True
    )
    try:
        await _serve_until_stopped(server.sockets[0].getsockname()[1])
    finally:
        server.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def mosquitto_server(response_size: int) -> None:
    """mosquitto on a free loopback port, and a paho-mqtt client answering requests.

    Prints ``READY <port> <mosquitto pid>``: the broker's CPU time counts
    with the responder's (this process).
    """
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    response = _payload(response_size)
    with tempfile.TemporaryDirectory(prefix="otahub-bench-mosquitto-") as tmp:
        port = _free_port()
        config = os.path.join(tmp, "mosquitto.conf")
        with open(config, "w") as f:
            f.write(
                f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
                "log_dest none\nset_tcp_nodelay true\nmax_queued_messages 0\n"
            )
        broker = subprocess.Popen(
            [MOSQUITTO, "-c", config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # not our stdout: the benchmark reads READY there
        )
        # stopped by SIGTERM: the finally clauses below still stop the broker
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:  # until the broker listens
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    break
                except OSError:
                    if broker.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("mosquitto did not start") from None
                    time.sleep(0.05)
            subscribed = threading.Event()
            client = paho.Client(
                CallbackAPIVersion.VERSION2,
                client_id="bench-responder",
                protocol=paho.MQTTv311,
            )

            def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
                c.subscribe("bench/req/+", 0)

            def on_subscribe(c: Any, userdata: Any, mid: Any, codes: Any, props: Any) -> None:
                subscribed.set()

            def on_message(c: Any, userdata: Any, message: Any) -> None:
                c.publish("bench/res/" + message.topic[10:], response, 0)

            client.on_connect = on_connect
            client.on_subscribe = on_subscribe
            client.on_message = on_message
            client.connect(HOST, port, 60)
            client.loop_start()
            try:
                if not subscribed.wait(START_TIMEOUT):
                    raise SystemExit("the paho-mqtt responder did not subscribe")
                print(f"READY {port} {broker.pid}", flush=True)
                ready, _, _ = select.select([sys.stdin], [], [], SERVER_LIFETIME)
                if ready:
                    sys.stdin.read()  # returns when the benchmark closes our stdin
            finally:
                client.loop_stop()
        finally:
            broker.terminate()
            try:
                broker.wait(5)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait(5)


# --- load generator --------------------------------------------------------------


class _Client(asyncio.BufferedProtocol):
    """One connection of the load generator.

    While timed it only counts bytes: a response is complete when exactly its
    size has arrived, which is all the closed loop needs. Before that, every
    connection checks one exchange byte for byte (``expect``).
    """

    def __init__(self, buffer: bytearray) -> None:
        self.buffer = buffer
        self.transport: asyncio.Transport | None = None
        self.request = b""
        self.size = 0  # response size while timed; 0 while checking
        self.left = 0
        self.done = 0  # round trips completed
        self.received = 0  # bytes, for the fan-in subscriber
        self.sink = False
        self.expected = b""
        self.got = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> bytearray:
        # One buffer for every connection: the loop fills and reports it
        # synchronously, and its bytes are counted, not kept.
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        left = self.left - nbytes
        if left > 0:
            self.left = left
        elif left == 0 and self.size:
            self.left = self.size
            self.done += 1
            self.transport.write(self.request)  # type: ignore[union-attr]
        elif self.sink:
            self.received += nbytes
        else:
            self._check(nbytes)

    def _check(self, nbytes: int) -> None:
        if self.size:
            self._fail(f"{-(self.left - nbytes)} bytes more than a response")
            return
        self.got += self.buffer[:nbytes]
        if len(self.got) < len(self.expected):
            return
        if self.got != self.expected:
            self._fail(f"expected {self.expected[:40]!r}..., got {bytes(self.got[:40])!r}...")
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def expect(self, send: bytes, expected: bytes) -> asyncio.Future[None]:
        """Send ``send`` and wait for exactly ``expected`` in return."""
        assert self.transport is not None
        self.expected = expected
        self.got.clear()
        self.waiter = asyncio.get_running_loop().create_future()
        if send:
            self.transport.write(send)
        return self.waiter

    def start(self, request: bytes, response_size: int) -> None:
        assert self.transport is not None
        self.request = request
        self.size = self.left = response_size
        self.transport.write(request)

    def _fail(self, why: str) -> None:
        self.error = why
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None and self.transport is not None and not self.transport.is_closing():
            self.error = f"connection lost: {exc}"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(RuntimeError(self.error or "connection lost"))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _generate(
    port: int,
    wire: Wire,
    warmup: float,
    duration: float,
    server_pids: list[int],
    subscribe: bool,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    buffer = bytearray(1 << 18)
    clients: list[_Client] = []
    subscriber: _Client | None = None

    async def connect() -> _Client:
        _, client = await loop.create_connection(lambda: _Client(buffer), HOST, port)
        return client

    # Connections one after another: a burst could overflow the listen backlog.
    if wire.sub_connect:
        subscriber = await connect()
        await subscriber.expect(wire.sub_connect + wire.subscribe, wire.connack + wire.suback)
    for _ in wire.connects:
        clients.append(await connect())
    await asyncio.gather(*(c.expect(wire.connects[i], wire.connack) for i, c in enumerate(clients)))
    if subscribe:  # a broker sends the responses to subscribers only
        await asyncio.gather(
            *(c.expect(wire.res_subscribes[i], wire.suback) for i, c in enumerate(clients))
        )
    # One checked exchange per connection: both servers send exactly these bytes.
    for i, client in enumerate(clients):
        forwarded = subscriber.expect(b"", wire.forwarded[i]) if subscriber else None
        await client.expect(wire.requests[i], wire.responses[i])
        if forwarded is not None:
            await forwarded
    if subscriber is not None:
        subscriber.sink = True

    for i, client in enumerate(clients):
        client.start(wire.requests[i], len(wire.responses[i]))
    await asyncio.sleep(warmup)
    done0 = sum(c.done for c in clients)
    sub0 = subscriber.received if subscriber else 0
    server_cpu0 = sum(map(_cpu_seconds, server_pids))
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    elapsed = time.perf_counter() - t0
    done = sum(c.done for c in clients) - done0
    sub_bytes = (subscriber.received if subscriber else 0) - sub0
    cpu = time.process_time() - cpu0
    server_cpu = sum(map(_cpu_seconds, server_pids)) - server_cpu0
    everyone = [*clients, *([subscriber] if subscriber else [])]
    errors = [c.error for c in everyone if c.error]
    # publishers first: the subscriber keeps draining what they still cause
    for client in everyone:
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(0.1)  # let the closes go out before the loop ends
    return {
        "done": done,
        "seconds": elapsed,
        "subscriber_bytes": sub_bytes,
        "generator_cpu": cpu / elapsed,
        "server_cpu": server_cpu / elapsed,
        "errors": errors[:3],
    }


def generator_main(args: argparse.Namespace) -> None:
    wire = build_wire(SCENARIOS[args.scenario], args.connections)
    limit = SETUP_TIMEOUT + args.warmup + args.duration
    result = run_async(
        asyncio.wait_for(
            _generate(
                args.port,
                wire,
                args.warmup,
                args.duration,
                [int(pid) for pid in args.server_pids.split(",")],
                args.subscribe,
            ),
            limit,
        )
    )
    print(json.dumps(result))


# --- orchestration ---------------------------------------------------------------


@dataclass
class Run:
    rate: float  # round trips (or acked messages) per second
    mbps: float  # wire bytes per second, both directions (and forwarded), in MB
    server_cpu: float  # fraction of one core
    generator_cpu: float
    delivered: float | None = None  # fan-in: messages the subscriber got / acked

    @property
    def cpu_us(self) -> float:
        """Server CPU time per round trip (or acked message), in microseconds."""
        return self.server_cpu / self.rate * 1e6 if self.rate else float("inf")


class ServerProcess:
    def __init__(self, args: list[str], subscribe: bool = False) -> None:
        self.subscribe = subscribe  # clients subscribe to their responses (a broker)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.port, extra_pids = self._wait_ready()
        # every process whose CPU time counts as the server's
        self.pids = [self.proc.pid, *extra_pids]

    def _wait_ready(self) -> tuple[int, list[int]]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise SystemExit(f"server {self.proc.args!r} did not start (got {line!r})")
        _, port, *pids = line.split()
        return int(port), [int(pid) for pid in pids]

    def stop(self) -> None:
        proc = self.proc
        if proc.stdin is not None:
            proc.stdin.close()  # the servers stop when their stdin closes
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def run_load(
    server: ServerProcess, scenario: Scenario, wire: Wire, args: argparse.Namespace
) -> Run:
    cmd = [
        sys.executable, __file__, "_generate",
        "--scenario", scenario.name,
        "--port", str(server.port),
        "--server-pids", ",".join(map(str, server.pids)),
        "--connections", str(args.connections),
        "--warmup", str(args.warmup),
        "--duration", str(args.duration),
    ]  # fmt: skip
    if server.subscribe:
        cmd.append("--subscribe")
    timeout = SETUP_TIMEOUT + args.warmup + args.duration + 30
    out = subprocess.run(cmd, capture_output=True, check=False, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed:\n{out.stderr.decode(errors='replace')}")
    result = json.loads(out.stdout)
    if result["errors"]:
        raise SystemExit(f"load generator saw errors: {result['errors']}")
    rate = result["done"] / result["seconds"]
    per_exchange = len(wire.requests[0]) + len(wire.responses[0])
    delivered = None
    if wire.forwarded:
        per_exchange += len(wire.forwarded[0])
        delivered = result["subscriber_bytes"] / len(wire.forwarded[0]) / max(result["done"], 1)
    return Run(
        rate,
        rate * per_exchange / 1e6,
        result["server_cpu"],
        result["generator_cpu"],
        delivered,
    )


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> dict[str, list[Run]]:
    wire = build_wire(scenario, args.connections)
    names = ["baseline", "otahub"]
    if scenario.kind == "rr" and not args.no_mosquitto:
        names.append("mosquitto")
    runs: dict[str, list[Run]] = {name: [] for name in names}
    servers: dict[str, ServerProcess] = {}
    size = str(scenario.response_size)
    try:
        servers["otahub"] = ServerProcess(["_otahub", "--response-size", size])
        servers["baseline"] = ServerProcess(
            ["_baseline", "--scenario", scenario.name, "--connections", str(args.connections)]
        )
        if "mosquitto" in names:
            servers["mosquitto"] = ServerProcess(
                ["_mosquitto", "--response-size", size], subscribe=True
            )
        for round_no in range(args.rounds):
            # rotate who goes first, so drifting machine load hits all alike
            shift = round_no % len(names)
            order = names[shift:] + names[:shift]
            if round_no % 2:
                order.reverse()
            for name in order:
                run = run_load(servers[name], scenario, wire, args)
                runs[name].append(run)
                extra = f"  delivered {run.delivered:.3f}" if run.delivered is not None else ""
                print(
                    f"  round {round_no + 1} {name:9s} {run.rate:9.0f} {scenario.unit}/s"
                    f" {run.mbps:8.1f} MB/s  server CPU {run.server_cpu:4.0%}"
                    f" ({run.cpu_us:5.1f} us/op)  generator CPU {run.generator_cpu:4.0%}{extra}",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="timed seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="untimed seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--json", metavar="FILE", help="also write every run to FILE")
    parser.add_argument(
        "--no-mosquitto", action="store_true", help="leave out the mosquitto baseline"
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    if args.connections < 1 or args.rounds < 1 or args.duration <= 0:
        parser.error("--connections, --rounds and --duration must be positive")

    print(
        f"{args.connections} connections, {args.rounds} rounds of {args.warmup:g}+"
        f"{args.duration:g} s per server, MQTT 3.1.1",
        flush=True,
    )
    results: dict[str, dict[str, list[Run]]] = {}
    for name in names:
        print(f"{name}:", flush=True)
        results[name] = run_scenario(SCENARIOS[name], args)

    print(
        "\nmedians; MB/s counts request and response bytes (and forwarded ones for fan-in);"
        "\nCPU is the server's CPU time per round trip or acked message, which a busy"
        "\nmachine disturbs less than throughput:"
    )
    header = f"{'scenario':16s} {'otahub':>9s} {'MB/s':>7s} {'baseline':>9s} {'MB/s':>7s}"
    print(f"{header} {'ratio':>6s} {'CPU us':>7s} {'base us':>7s} {'ratio':>6s}  unit")
    for name, runs in results.items():
        ota = statistics.median(r.rate for r in runs["otahub"])
        base = statistics.median(r.rate for r in runs["baseline"])
        ota_mb = statistics.median(r.mbps for r in runs["otahub"])
        base_mb = statistics.median(r.mbps for r in runs["baseline"])
        ota_us = statistics.median(r.cpu_us for r in runs["otahub"])
        base_us = statistics.median(r.cpu_us for r in runs["baseline"])
        print(
            f"{name:16s} {ota:9.0f} {ota_mb:7.1f} {base:9.0f} {base_mb:7.1f} {ota / base:6.2f}"
            f" {ota_us:7.1f} {base_us:7.1f} {base_us / ota_us:6.2f}  {SCENARIOS[name].unit}/s"
        )
    for name, runs in results.items():
        if "mosquitto" not in runs:
            continue
        ota = statistics.median(r.rate for r in runs["otahub"])
        mosq = statistics.median(r.rate for r in runs["mosquitto"])
        base = statistics.median(r.rate for r in runs["baseline"])
        mosq_us = statistics.median(r.cpu_us for r in runs["mosquitto"])
        spread = min(r.rate for r in runs["mosquitto"]), max(r.rate for r in runs["mosquitto"])
        print(
            f"{name:16s} mosquitto + paho-mqtt responder {mosq:9.0f} {SCENARIOS[name].unit}/s"
            f" ({spread[0]:.0f}..{spread[1]:.0f}), {mosq / base:.2f} of the bare server,"
            f" otahub/mosquitto {ota / mosq:.2f}, CPU {mosq_us:.1f} us/op (broker + responder)"
        )
    for name, runs in results.items():
        spreads = ", ".join(
            f"{k} {min(r.rate for r in v):.0f}..{max(r.rate for r in v):.0f}"
            for k, v in runs.items()
        )
        print(f"{name:16s} spread (min..max): {spreads}")
    print("target: otahub/baseline >= 0.7 for round trips")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    n: {k: [{**vars(r), "cpu_us": r.cpu_us} for r in v] for k, v in rs.items()}
                    for n, rs in results.items()
                },
                f,
                indent=2,
            )


def _role_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", default="rr-8k")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--response-size", type=int, default=8192)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--server-pids", default="0", help="comma-separated")
    parser.add_argument("--subscribe", action="store_true")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    return parser.parse_args(argv)


ROLES: dict[str, Callable[[argparse.Namespace], None]] = {
    "_otahub": lambda a: run_async(otahub_server(a.response_size)),
    "_baseline": lambda a: run_async(
        baseline_server(build_wire(SCENARIOS[a.scenario], a.connections))
    ),
    "_mosquitto": lambda a: mosquitto_server(a.response_size),
    "_generate": generator_main,
}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](_role_args(sys.argv[2:]))
    else:
        main()
