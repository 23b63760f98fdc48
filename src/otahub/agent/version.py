"""The version the device runs: from a file, a command, or the agent's own record."""

from __future__ import annotations

import asyncio
import logging

from otahub.agent.config import VersionConfig
from otahub.agent.hooks import render

log = logging.getLogger(__name__)


class VersionSource:
    def __init__(self, config: VersionConfig) -> None:
        self.config = config

    async def current(self, recorded: str | None) -> str:
        """The running version; ``recorded`` is what the agent last installed."""
        if self.config.file is not None:
            try:
                text = self.config.file.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                text = ""
            if text:
                return text
        if self.config.command:
            proc = await asyncio.create_subprocess_exec(
                *render(self.config.command, {}),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                out = b""
            text = out.decode("utf-8", errors="replace").strip()
            if proc.returncode == 0 and text:
                return text.splitlines()[0].strip()
            log.warning("version command failed (exit %s)", proc.returncode)
        return recorded or self.config.initial

    @property
    def authoritative(self) -> bool:
        """True when the version comes from the device, not only from the agent's record."""
        return self.config.file is not None or bool(self.config.command)
