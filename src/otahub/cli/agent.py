"""``otahub agent``: run the device-side agent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from otahub.agent.config import AgentConfig, load_config

#: Seconds a stop signal waits for a clean shutdown before cutting it short.
SHUTDOWN_GRACE = 2.0


async def _run(config: AgentConfig) -> None:
    from otahub.agent.app import Agent  # keeps other commands from loading MQTT and HTTP clients

    agent = Agent(config)
    task = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()

    def stop() -> None:
        task.cancel()
        # The first cancel lets the MQTT client disconnect gracefully; now and
        # then the client waits for a disconnect that never completes (up to
        # its 30 s timeout), so a second cancel ends that wait. The state on
        # disk is always consistent, so nothing is lost by not waiting.
        loop.call_later(SHUTDOWN_GRACE, task.cancel)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def agent(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML config file; every key can also be set as OTAHUB_AGENT_<SECTION>__<KEY>.",
        ),
    ] = None,
) -> None:
    """Run the update agent on a device (thin-edge, tedge-legacy, thingsboard or enos)."""
    try:
        settings = load_config(config)
    except (ValidationError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"invalid agent configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_run(settings))
