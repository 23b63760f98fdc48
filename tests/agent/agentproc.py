"""Runs ``otahub agent`` as a real subprocess with a generated TOML config."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))


def write_config(path: Path, config: dict[str, Any]) -> Path:
    lines: list[str] = []
    tables: list[str] = []
    for key, value in config.items():
        if isinstance(value, dict):
            tables.append(f"\n[{key}]")
            tables.extend(f"{k} = {toml_value(v)}" for k, v in value.items())
        else:
            lines.append(f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines + tables) + "\n")
    return path


@dataclass
class AgentProcess:
    config_path: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        args = [sys.executable, "-m", "otahub", "agent", "--config", str(self.config_path)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup, like a power cut for the agent."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


class Observer:
    """An MQTT client in the test: publishes as the gateway and records what it sees."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[tuple[str, bytes, bool]] = []
        self._new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _pump(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else b""
            self.messages.append((str(message.topic), data, bool(message.retain)))
            self._new.set()

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on(topic) if p]

    async def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        async def loop() -> None:
            while not predicate():
                self._new.clear()
                await self._new.wait()

        await asyncio.wait_for(loop(), timeout)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        await self.client.publish(topic, payload, qos=1, retain=retain)


@asynccontextmanager
async def observer(port: int, *filters: str) -> AsyncIterator[Observer]:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-gw-{os.getpid()}") as client:
        obs = Observer(client)
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)
        task = asyncio.create_task(obs._pump())
        try:
            yield obs
        finally:
            task.cancel()
