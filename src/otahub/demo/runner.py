"""Runs the demo: hub, four agents, one update each, live progress, a summary."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from otahub.demo.fleet import FIRMWARE_NAME, DemoDevice, agent_config, demo_devices
from otahub.demo.processes import Child, free_port, wait_for_hub

TERMINAL = {"succeeded", "failed", "canceled"}
#: Dialects whose update requests are not retained: a request published
#: before the agent subscribed is lost, so it is asked for again.
UNRETAINED = {"tedge-legacy"}
#: Seconds between such repeats while the device has not answered.
REPEAT_INTERVAL = 2.0


class DemoFailed(Exception):
    """The demo could not finish; the message names what failed."""


@dataclass
class Tracked:
    device: DemoDevice
    agent: Child
    update_id: int | None = None
    state: str = "waiting"
    progress: int | None = None
    reason: str | None = None
    seconds: float | None = None
    requested_at: float = 0.0


@dataclass(frozen=True)
class DemoOptions:
    image_size: int = 1024 * 1024
    to_version: str = "1.1.0"
    timeout: float = 180.0
    keep: bool = False


def run_demo(options: DemoOptions, console: Console) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="otahub-demo-"))
    children: list[Child] = []
    try:
        _run(options, console, workdir, children)
    finally:
        for child in reversed(children):
            child.stop()
        if options.keep:
            console.print(f"[dim]kept {workdir} (hub and agent logs, state)[/dim]")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(options: DemoOptions, console: Console, workdir: Path, children: list[Child]) -> None:
    mqtt_port, http_port = free_port(), free_port()
    http_url = f"http://127.0.0.1:{http_port}"
    console.print(f"[bold]otahub demo[/bold] in {workdir}")
    hub = Child.spawn(
        "hub",
        [
            "serve",
            "--mqtt-port",
            str(mqtt_port),
            "--http-port",
            str(http_port),
            "--data-dir",
            str(workdir / "hub"),
            "--no-auth",
        ],
        workdir / "hub.log",
        {"OTAHUB_UPDATE_TIMEOUT": str(int(options.timeout))},
    )
    children.append(hub)
    wait_for_hub(hub, http_url, mqtt_port)
    console.print(f"hub ready: mqtt://127.0.0.1:{mqtt_port} {http_url}")

    with httpx.Client(base_url=f"{http_url}/api/v1", timeout=30.0) as api:
        image = workdir / f"{FIRMWARE_NAME}-{options.to_version}.bin"
        with open(image, "wb") as f:
            f.write(os.urandom(options.image_size))
        with open(image, "rb") as f:
            package = _ok(
                api.post(
                    "/firmware",
                    params={
                        "title": FIRMWARE_NAME,
                        "version": options.to_version,
                        "filename": image.name,
                    },
                    content=f,
                    headers={"content-type": "application/octet-stream"},
                ),
                "upload the firmware image",
            )
        console.print(f"uploaded {FIRMWARE_NAME} {options.to_version} ({package['size']} bytes)")
        tracked: list[Tracked] = []
        for device in demo_devices():
            _ok(api.post("/devices", json=device.registration), f"register {device.name}")
            config = agent_config(device, workdir, mqtt_port)
            agent = Child.spawn(
                device.name,
                ["agent", "--config", str(config)],
                workdir / device.name / "agent.log",
                {},
            )
            children.append(agent)
            tracked.append(Tracked(device, agent))
        _start_updates(api, tracked, options)
        _follow(api, tracked, options, console)
    _summary(tracked, options, package["size"], console)
    failed = [t for t in tracked if t.state != "succeeded"]
    if failed:
        names = ", ".join(
            f"{t.device.name} ({t.device.dialect}): {t.state}{' - ' + t.reason if t.reason else ''}"
            for t in failed
        )
        raise DemoFailed(f"not every device was updated: {names}")


def _ok(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise DemoFailed(f"could not {what}: HTTP {response.status_code}: {detail}")
    return response.json()


def _start_updates(api: httpx.Client, tracked: list[Tracked], options: DemoOptions) -> None:
    """Start each device's update as soon as its agent is ready for one."""
    deadline = time.monotonic() + 60.0
    pending = list(tracked)
    while pending:
        for item in list(pending):
            if not item.agent.running:
                raise DemoFailed(f"the {item.device.dialect} agent exited:\n{item.agent.tail()}")
            response = api.post(
                "/updates",
                json={
                    "device": item.device.name,
                    "title": FIRMWARE_NAME,
                    "version": options.to_version,
                },
            )
            if response.status_code < 400:
                item.update_id = int(response.json()["id"])
                item.state = str(response.json()["state"])
                item.requested_at = time.monotonic()
                pending.remove(item)
            elif response.status_code not in (409, 422) or time.monotonic() > deadline:
                _ok(response, f"start the update of {item.device.name}")
        if pending:
            if time.monotonic() > deadline:
                names = ", ".join(item.device.name for item in pending)
                raise DemoFailed(f"these agents never became ready for an update: {names}")
            time.sleep(0.3)


def _follow(
    api: httpx.Client, tracked: list[Tracked], options: DemoOptions, console: Console
) -> None:
    progress = Progress(
        TextColumn("{task.fields[device]:<14} {task.fields[dialect]:<13}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[state]:<12}"),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[int, TaskID] = {}
    deadline = time.monotonic() + options.timeout
    with progress:
        for item in tracked:
            assert item.update_id is not None
            tasks[item.update_id] = progress.add_task(
                "",
                total=100,
                device=item.device.name,
                dialect=item.device.dialect,
                state=item.state,
            )
        while True:
            for item in tracked:
                if item.state in TERMINAL:
                    continue
                update = _ok(api.get(f"/updates/{item.update_id}"), "read an update")
                item.state = update["state"]
                item.progress = update["progress"]
                item.reason = update["reason"]
                done = 100 if item.state == "succeeded" else (item.progress or _guess(item.state))
                assert item.update_id is not None
                progress.update(tasks[item.update_id], completed=done, state=item.state)
                if item.state in TERMINAL and update.get("finished_at"):
                    item.seconds = _seconds(update["created_at"], update["finished_at"])
                _repeat_if_unheard(api, item, options)
            if all(item.state in TERMINAL for item in tracked):
                return
            for item in tracked:
                if item.state not in TERMINAL and not item.agent.running:
                    raise DemoFailed(
                        f"the {item.device.dialect} agent exited:\n{item.agent.tail()}"
                    )
            if time.monotonic() > deadline:
                late = ", ".join(
                    f"{t.device.name} ({t.state})" for t in tracked if t.state not in TERMINAL
                )
                raise DemoFailed(f"timed out after {options.timeout:.0f}s waiting for: {late}")
            time.sleep(0.2)


def _repeat_if_unheard(api: httpx.Client, item: Tracked, options: DemoOptions) -> None:
    """Ask again for an unretained request the agent may have missed.

    A tedge-legacy child cannot announce itself, so the hub takes the update
    (and publishes the request) before the agent has subscribed. Asking
    again for the running update makes the hub re-send the same request
    with ``attempt + 1``; an agent that already has it just answers again.
    """
    if item.device.dialect not in UNRETAINED or item.state not in ("pending", "sent"):
        return
    if time.monotonic() - item.requested_at < REPEAT_INTERVAL:
        return
    item.requested_at = time.monotonic()
    _ok(
        api.post(
            "/updates",
            json={
                "device": item.device.name,
                "title": FIRMWARE_NAME,
                "version": options.to_version,
            },
        ),
        f"repeat the update request of {item.device.name}",
    )


_STATE_PERCENT = {
    "pending": 0,
    "sent": 5,
    "downloading": 10,
    "downloaded": 60,
    "verified": 70,
    "installing": 85,
}


def _guess(state: str) -> int:
    """A bar position for dialects that report states but no percentage."""
    return _STATE_PERCENT.get(state, 0)


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _summary(tracked: list[Tracked], options: DemoOptions, size: int, console: Console) -> None:
    table = Table(title="otahub demo")
    for column in ("device", "dialect", "version", "result", "bytes", "seconds"):
        table.add_column(column, justify="right" if column in ("bytes", "seconds") else "left")
    for item in tracked:
        result = item.state if item.state == "succeeded" else f"{item.state}: {item.reason or ''}"
        table.add_row(
            item.device.name,
            item.device.dialect,
            f"{item.device.from_version} -> {options.to_version}",
            result,
            str(size),
            f"{item.seconds:.1f}" if item.seconds is not None else "-",
        )
    console.print(table)
