"""A fleet against ``otahub serve``: register, connect, start, update, and what each costs the hub.

DEVICES simulated devices (``otahub.simulator``, in this process) of one
dialect or ``mixed`` against ``otahub serve --no-auth`` (SQLite) on free
loopback ports, one IMAGE_MIB image for all. Measured, each printed with the
issue's target (10,000-device targets scaled to DEVICES where they are
totals) and the ratio to it (>= 1.00 meets it):

- register: all devices through the REST API (``POST /api/v1/devices/batch``
  where the hub has it, else one call each);
- connect: from the first CONNECT until every device is connected;
- start: one update per device, ``POST /api/v1/updates/batch`` where the hub
  has it, else one REST call each (32 in flight); printed beside it, when the
  last device had its command (the simulator's count of updates begun);
- updated per minute: from the first update started until the last one
  reported succeeded; every update must end ``succeeded`` on the hub;
- hub CPU per updated device: the hub's user+system CPU over that span / DEVICES;
- hub RSS per idle connection: hub RSS with every device connected and idle,
  less its RSS before the first connect, / DEVICES; and the hub's peak RSS.

    .venv/bin/python benchmarks/fleet.py [--devices 1000] [--dialect thingsboard]
        [--image-mib 1] [--chunk-size 65536] [--sim-processes 2] [--connect-only]
        [--profile-start FILE]

The simulator runs in ``--sim-processes`` worker processes forked before
the benchmark's own event loop (``otahub simulate --processes``), the
fleet's ``--connect-concurrency`` shared among them; with 1 it runs in the
benchmark's own loop. One asyncio process cannot open connections as fast
as the hub accepts them, and would measure itself. The CPU the hub and the
simulator spent during the connect wave is printed with the rates, and
what the rest of the machine took meanwhile (other processes' CPU, this
benchmark's own included, and the hypervisor's steal).
``--connect-only`` stops after the idle RSS. ``--profile-start FILE``
samples the hub with py-spy (raw, collapsed stacks) while the updates are
started, from just before the first request to its answer.

thin-edge and tedge-legacy devices are registered without passwords and
connect anonymously from loopback (``--anonymous``): a password login costs
an argon2 verification by design, which is not what this measures. Binds
127.0.0.1 only and stops the hub it starts by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.support import RssSampler, free_port

from otahub.simulator.config import DeviceSpec, Endpoint, SimConfig, fleet
from otahub.simulator.processes import Workers
from otahub.simulator.registration import register
from otahub.simulator.runner import raise_open_files_limit, run_fleet

TITLE = "fleet-bench"
#: The issue's targets are for 10,000 devices.
TARGET_DEVICES = 10_000


@dataclass
class Row:
    measure: str
    value: float
    unit: str
    target: float
    higher_is_better: bool

    @property
    def ratio(self) -> float:
        if self.value == 0:
            return float("inf") if not self.higher_is_better else 0.0
        return self.value / self.target if self.higher_is_better else self.target / self.value

    def line(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        return (
            f"| {self.measure} | {self.value:,.2f} {self.unit} | {sign} {self.target:,.2f} "
            f"{self.unit} | {self.ratio:.2f} |"
        )


def start_hub(
    data_dir: Path, log_path: Path, pythonpath: str | None = None
) -> tuple[subprocess.Popen[bytes], str, int]:
    http_port, mqtt_port = free_port(), free_port()
    env = dict(os.environ)
    if pythonpath:  # another hub's sources (a "before"), the simulator stays this one
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
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
                str(mqtt_port),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"otahub serve exited:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url, mqtt_port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("otahub serve did not become ready")


def hub_cpu(hub: psutil.Process) -> float:
    times = hub.cpu_times()
    return float(times.user + times.system)


async def settled(hub: psutil.Process, timeout: float = 60.0) -> float:
    """Wait until the hub is idle (under 5 % of a core for a second), at least 2 s.

    Connected is not idle: on a loaded machine the hub may still be working
    off the wave (announcements, reports), and that work's memory is not
    what an idle connection costs. Returns the seconds waited.
    """
    t0 = time.monotonic()
    await asyncio.sleep(1.0)
    while True:
        cpu0 = hub_cpu(hub)
        await asyncio.sleep(1.0)
        waited = time.monotonic() - t0
        if (hub_cpu(hub) - cpu0 < 0.05 and waited >= 2.0) or waited > timeout:
            return waited


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait for ``predicate``; returns when it became true (monotonic)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic()


async def start_updates(api: httpx.AsyncClient, names: list[str]) -> str:
    """One update per device; returns how (batch route or single calls)."""
    bodies = [{"device": n, "title": TITLE, "version": "2.0.0"} for n in names]
    began = time.monotonic()
    r = await api.post("/updates/batch", json=bodies)
    if r.status_code < 300:
        calls, sent, in_route = 1, bodies, time.monotonic() - began
        retried = 0
        for _ in range(100):
            refused = [item for item in r.json()["items"] if item["update"] is None]
            if not refused:
                return (
                    f"POST /api/v1/updates/batch: {calls} call(s), {in_route:.2f} s in them; "
                    f"{retried} item(s) retried"
                )
            # a thin-edge child takes updates once the hub has seen its capability
            if any(item["problem"]["status"] not in (404, 409) for item in refused):
                raise SystemExit(f"batch start refused items: {refused[:3]}")
            await asyncio.sleep(0.2)
            sent = [sent[item["row"] - 1] for item in refused]
            retried += len(sent)
            began = time.monotonic()
            r = await api.post("/updates/batch", json=sent)
            r.raise_for_status()
            in_route += time.monotonic() - began
            calls += 1
        raise SystemExit(f"batch start: still refused after {calls} calls: {refused[:3]}")
    if r.status_code not in (404, 405):
        raise SystemExit(f"batch start refused: {r.status_code} {r.text[:300]}")
    queue = list(bodies)

    async def worker() -> None:
        while queue:
            body = queue.pop()
            for _ in range(100):
                r = await api.post("/updates", json=body)
                if r.status_code < 300:
                    break
                # a thin-edge child takes updates once its capability arrived
                if r.status_code not in (404, 409, 422):
                    raise SystemExit(f"start refused: {r.status_code} {r.text[:300]}")
                await asyncio.sleep(0.2)

    await asyncio.gather(*(worker() for _ in range(32)))
    return "one POST /api/v1/updates each, 32 in flight"


class InProcess:
    """The fleet in this process's own event loop."""

    def __init__(self, cfg: SimConfig, specs: list[DeviceSpec]) -> None:
        self.cfg, self.specs = cfg, specs
        self.latest: dict[str, Any] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[dict[str, Any]] | None = None

    def go(self) -> None:
        self._task = asyncio.create_task(
            run_fleet(
                self.cfg,
                self.specs,
                report=lambda c: self.latest.update(c),
                report_interval=0.05,
                stop=self._stop,
            )
        )

    def counts(self) -> dict[str, Any]:
        task = self._task
        if task is not None and task.done():
            raise SystemExit(f"the fleet stopped: {task.exception()!r}")
        return self.latest

    def pids(self) -> list[int]:
        return [os.getpid()]

    async def stop(self) -> dict[str, Any]:
        self._stop.set()
        assert self._task is not None
        return await self._task


class Forked:
    """The fleet in worker processes forked before this process's loop ran."""

    def __init__(self, workers: Workers, cfg: SimConfig) -> None:
        self.workers, self.cfg = workers, cfg

    def go(self) -> None:
        self.workers.go(self.cfg)

    def counts(self) -> dict[str, Any]:
        self.workers.poll(0)
        if len(self.workers.finals) or not self.workers.running:
            raise SystemExit("a simulator worker stopped")
        return self.workers.counts()

    def pids(self) -> list[int]:
        return self.workers.pids()

    async def stop(self) -> dict[str, Any]:
        self.workers.signal(signal.SIGTERM)
        while self.workers.running:
            self.workers.poll(0)
            await asyncio.sleep(0.05)
        self.workers.join()
        return self.workers.final()


@dataclass(frozen=True)
class MachineShare:
    """What else the machine did during a stretch: a run slower than its
    neighbours with the same work is told apart from one that shared the CPUs."""

    others_s: float  # CPU seconds of every other process
    steal: float  # share of the machine's time the hypervisor gave elsewhere

    @classmethod
    def between(cls, before: Any, after: Any, ours_s: float) -> MachineShare:
        spent = {field: getattr(after, field) - getattr(before, field) for field in after._fields}
        total = sum(spent.values())
        busy = total - spent["idle"] - spent.get("iowait", 0.0) - spent.get("steal", 0.0)
        steal = spent.get("steal", 0.0) / total if total else 0.0
        return cls(max(busy - ours_s, 0.0), steal)

    def __str__(self) -> str:
        return f"other processes {self.others_s:.2f} s of CPU, steal {self.steal:.1%}"


def cpu_of(pids: list[int]) -> float:
    return sum(hub_cpu(psutil.Process(pid)) for pid in pids)


@contextlib.contextmanager
def start_profile(pid: int, out: str | None) -> Iterator[None]:
    """py-spy sampling the hub while updates are started (``--profile-start``)."""
    if out is None:
        yield
        return
    spy = Path(sys.executable).with_name("py-spy")
    argv = [str(spy), "record", "--gil", "--nonblocking", "-r", "100", "--format", "raw"]
    proc = subprocess.Popen(
        [*argv, "-p", str(pid), "-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1.0)  # attached before the first request
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it sampled
        proc.wait(timeout=60)


async def failed_on_hub(api: httpx.AsyncClient) -> int:
    r = await api.get("/updates", params={"state": "failed", "limit": 1000})
    r.raise_for_status()
    return len(r.json())


def sim_config(args: argparse.Namespace, mqtt_port: int) -> SimConfig:
    return SimConfig(
        endpoints=(Endpoint("127.0.0.1", mqtt_port),),
        passwords=False,
        install_seconds=args.install_seconds,
        chunk_size=args.chunk_size,
        connect_concurrency=args.connect_concurrency,
    )


async def bench(
    args: argparse.Namespace,
    hub: psutil.Process,
    url: str,
    sim: InProcess | Forked,
    specs: list[DeviceSpec],
) -> None:
    n = args.devices
    names = [s.name for s in specs]
    scale = n / TARGET_DEVICES
    async with httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=600) as api:
        image = os.urandom(args.image_mib * 1024 * 1024)
        r = await api.post(
            "/firmware",
            params={"title": TITLE, "version": "2.0.0"},
            content=image,
            headers={"content-type": "application/octet-stream"},
        )
        r.raise_for_status()

        t0 = time.monotonic()
        await register(url, specs, passwords=False, admin_token=None)
        register_s = time.monotonic() - t0

        rss_before = hub.memory_info().rss
        peak = RssSampler(hub.pid, interval=0.1)
        peak.start()
        spy = None
        if args.profile_connect:
            # py-spy on the hub for the connect wave only (GIL holder, raw stacks)
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--gil",
                "--nonblocking",
                "-r",
                "100",
                "--format",
                "raw",
                "-o",
                args.profile_connect,
                "-p",
                str(hub.pid),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1.0)
        hub_cpu0, sim_cpu0 = hub_cpu(hub), cpu_of(sim.pids())
        machine0 = psutil.cpu_times()
        t_connect = time.monotonic()
        sim.go()

        def wait(predicate: Callable[[], bool], timeout: float, what: str) -> Awaitable[float]:
            return until(predicate, timeout, what)

        connected_at = await wait(lambda: sim.counts().get("connected", 0) >= n, 600, "connections")
        connect_s = connected_at - t_connect
        connect_cpu = (hub_cpu(hub) - hub_cpu0, cpu_of(sim.pids()) - sim_cpu0)
        machine = MachineShare.between(machine0, psutil.cpu_times(), sum(connect_cpu))
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            await spy.wait()
        settle_s = await settled(hub)  # announcements and their writes settle
        rss_idle = hub.memory_info().rss
        sim_rss = sum(psutil.Process(pid).memory_info().rss for pid in sim.pids())
        rows = [
            Row("register (scaled target)", register_s, "s", 10.0 * scale, False),
            Row("connect", n / connect_s, "conn/s", 1000.0, True),
            Row(
                "hub RSS per idle connection",
                (rss_idle - rss_before) / n / 1024,
                "KiB",
                20.0,
                False,
            ),
        ]
        load = os.getloadavg()
        print(f"{n} {args.dialect} devices, simulator in {args.sim_processes} process(es)")
        print(
            f"machine: {os.cpu_count()} CPUs, "
            f"load average before/after {args.load0} / {load[0]:.2f}"
        )
        print(
            f"connect wave {connect_s:.2f} s: hub CPU {connect_cpu[0]:.2f} s "
            f"({connect_cpu[0] / connect_s:.0%} of a core), simulator CPU {connect_cpu[1]:.2f} s "
            f"({connect_cpu[1] / connect_s:.0%} of a core); {machine}"
        )
        print(
            f"hub RSS before connect {rss_before / 2**20:.1f} MiB, idle {rss_idle / 2**20:.1f} MiB"
            f" (idle {settle_s:.1f} s after the last connect);"
            f" simulator RSS {sim_rss / 2**20:.1f} MiB, reconnects {sim.counts().get('reconnects')}"
        )
        if args.connect_only:
            await sim.stop()
            peak.stop()
            print()
            print("| measure | measured | target | ratio (>= 1 meets) |")
            print("|---|---|---|---|")
            for row in rows:
                print(row.line())
            return

        cpu0 = hub_cpu(hub)
        with start_profile(hub.pid, args.profile_start):
            t_start = time.monotonic()
            how = await start_updates(api, names)
            start_s = time.monotonic() - t_start
        print(f"start {start_s:.2f} s ({how}), load {os.getloadavg()[0]:.2f}", flush=True)
        # the hub hands a batch to its drivers behind the call: when had every device its command?
        got_at = await wait(lambda: sim.counts().get("updates_started", 0) >= n, 3600, "commands")
        commands_s = got_at - t_start
        print(f"every device had its command {commands_s:.2f} s after the start began", flush=True)

        def updated() -> bool:
            counts = sim.counts()
            return counts.get("updates_succeeded", 0) + counts.get("updates_failed", 0) >= n

        done_at = await wait(
            updated,
            3600,
            "updates",
        )
        cpu = hub_cpu(hub) - cpu0
        update_s = done_at - t_start
        final = await sim.stop()
        peak.stop()
        failed = await failed_on_hub(api)

    per_minute = n / update_s * 60
    rows[2:2] = [
        Row("start updates (scaled target)", start_s, "s", 5.0 * scale, False),
        Row("devices updated per minute", per_minute, "/min", 2000.0, True),
        Row("hub CPU per updated device", cpu / n * 1000, "ms", 25.0, False),
    ]
    load = os.getloadavg()
    print(f"{args.image_mib} MiB image, chunk {args.chunk_size}, load average now {load[0]:.2f}")
    print(f"register {register_s:.1f} s, connect {connect_s:.1f} s, start {start_s:.2f} s ({how}),")
    print(f"every command out {commands_s:.1f} s,", end=" ")
    print(f"updates {update_s:.1f} s (first start to last report)")
    print()
    print("| measure | measured | target | ratio (>= 1 meets) |")
    print("|---|---|---|---|")
    for row in rows:
        print(row.line())
    print()
    print(f"hub peak RSS {peak.peak / 2**20:.1f} MiB ({peak.peak_detail})")
    print(
        f"simulator: succeeded {final['updates_succeeded']}, failed {final['updates_failed']}, "
        f"installs per device max {final['installs_per_device_max']}; hub: failed {failed}"
    )
    if final["updates_succeeded"] != n or failed:
        raise SystemExit("not every update succeeded")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--dialect",
        default="thingsboard",
        choices=["thingsboard", "enos", "thin-edge", "tedge-legacy", "mixed"],
    )
    parser.add_argument("--image-mib", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--install-seconds", type=float, default=0.0)
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--profile-start", metavar="FILE", help="py-spy raw profile of the start")
    parser.add_argument("--sim-processes", type=int, default=2)
    parser.add_argument("--connect-only", action="store_true")
    parser.add_argument(
        "--hub-pythonpath", metavar="SRC", help="run the hub from these sources (a before)"
    )
    parser.add_argument(
        "--profile-connect", metavar="PATH", help="py-spy the hub during the connect wave"
    )
    args = parser.parse_args()
    args.load0 = f"{os.getloadavg()[0]:.2f}"
    specs = fleet(args.devices, args.dialect, "bench")
    with tempfile.TemporaryDirectory(prefix="otahub-fleet-") as tmp:
        proc, url, mqtt_port = start_hub(
            Path(tmp) / "data", Path(tmp) / "hub.log", args.hub_pythonpath
        )
        cfg = sim_config(args, mqtt_port)
        sim: InProcess | Forked
        if args.sim_processes > 1:
            # forked before this process's event loop and HTTP client exist
            sim = Forked(
                Workers(cfg, specs, args.sim_processes, report_interval=0.05, gated=True), cfg
            )
        else:
            raise_open_files_limit(len(specs) + 200)
            sim = InProcess(cfg, specs)
        try:
            asyncio.run(bench(args, psutil.Process(proc.pid), url, sim, specs))
        finally:
            if isinstance(sim, Forked):
                sim.workers.signal(signal.SIGTERM)
                sim.workers.join()
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log = (Path(tmp) / "hub.log").read_text(errors="replace")
            lines = log.splitlines()
            errors = [n for n, line in enumerate(lines) if " ERROR " in line]
            if errors:
                print(f"hub logged {len(errors)} errors, the first:")
                # its traceback: the lines up to the next log record
                first = errors[0]
                following = lines[first + 1 : first + 40]
                end = next((i for i, x in enumerate(following) if x[:4].isdigit()), 39)
                print("\n".join(lines[first : first + 1 + end]))


if __name__ == "__main__":
    main()
