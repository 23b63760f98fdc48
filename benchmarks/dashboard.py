"""Dashboard page loads with a large fleet: the devices list and a rollout's page.

Builds a hub core on a fresh SQLite data dir, inserts ``--devices`` devices
(labels, versions, half online), uploads a package and starts a rollout over
all of them (``--concurrent`` updates started, the rest waiting), then times
each page request through the hub's ASGI app in this process: the server's
time per request (routing, session check, queries, template), without the
socket. Prints a Markdown table of p50/p95 per page and the load average.

    .venv/bin/python benchmarks/dashboard.py --devices 10000 --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from otahub.hub.core import CoreConfig, HubCore
from otahub.hub.http.app import create_http_app
from otahub.hub.rollouts.spec import RolloutSpec, parse_stages
from otahub.hub.services.firmware import PackageMeta
from otahub.hub.store.models import Device

SITES = ("berlin", "paris", "madrid", "oslo")


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def populate(core: HubCore, devices: int, concurrent: int) -> None:
    async with core.db.session() as s, s.begin():
        s.add_all(
            Device(
                name=f"dev-{i:05d}",
                dialect="thin-edge",
                device_type="gateway-x" if i % 3 else "sensor-y",
                current_fw_title="fw",
                current_fw_version=f"1.{i % 5}",
                online=i % 2 == 0,
                labels={"site": SITES[i % len(SITES)], "ring": str(i % 10)},
            )
            for i in range(devices)
        )
    meta = PackageMeta(title="fw", version="2.0")
    await core.firmware.upload(meta, _chunks(os.urandom(64 * 1024)))
    spec = RolloutSpec(
        name="bench",
        title="fw",
        version="2.0",
        filter="dialect=thin-edge",
        stages=parse_stages("1%,10%,100%"),
        success_threshold=95.0,
        error_threshold=5.0,
        min_finished=10,
        max_concurrent=concurrent,
        seed=1,
    )
    await core.rollouts.create(spec)
    await core.rollouts.start("bench")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(client: httpx.AsyncClient, path: str, requests: int) -> tuple[float, float]:
    await client.get(path)  # templates compiled, caches warm
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        response = await client.get(path)
        times.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return statistics.median(times), percentile(times, 0.95)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=200, help="updates the rollout starts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        core = HubCore(CoreConfig(Path(tmp)))
        await core.start()
        try:
            await populate(core, args.devices, args.concurrent)
            for _ in range(100):  # the engine starts the first stage's updates
                rollout = await core.rollouts.get("bench")
                if rollout.counts["started"] >= min(args.concurrent, args.devices // 100):
                    break
                await asyncio.sleep(0.1)
            app = create_http_app(core, admin_token=None)  # the dashboard as --no-auth serves it
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
                pages = {
                    "devices, first page": "/devices",
                    "devices, page at offset 5000": "/devices?offset=5000",
                    "devices, filtered (label site=oslo, online, version 1.3)": (
                        "/devices?label=site%3Doslo&online=yes&version=1.3"
                    ),
                    "devices, name search (dev-09)": "/devices?q=dev-09",
                    "rollout page (first stage running)": "/rollouts/bench",
                    "overview": "/",
                }
                rows = []
                for label, path in pages.items():
                    p50, p95 = await measure(client, path, args.requests)
                    rows.append((label, p50, p95))
            counts = (await core.rollouts.get("bench")).counts
        finally:
            await core.close()
    load = os.getloadavg()
    print(f"{args.devices} devices, {args.requests} requests per page, rollout counts {counts}")
    print("| page | p50 | p95 |\n|---|---|---|")
    for label, p50, p95 in rows:
        print(f"| {label} | {p50:.1f} ms | {p95:.1f} ms |")
    print(f"\nload average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
