"""The agent's composition root: config, state, MQTT link, dialect, runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from otahub.agent.config import AgentConfig, Dialect
from otahub.agent.dialects.base import DialectClient
from otahub.agent.link import MqttLink
from otahub.agent.runner import Runner
from otahub.agent.state import AgentState, StateStore
from otahub.agent.version import VersionSource

log = logging.getLogger(__name__)


def _dialect_class(dialect: Dialect) -> type[DialectClient]:
    if dialect is Dialect.THIN_EDGE:
        from otahub.agent.dialects.thin_edge import ThinEdgeClient

        return ThinEdgeClient
    if dialect is Dialect.TEDGE_LEGACY:
        from otahub.agent.dialects.tedge_legacy import TedgeLegacyClient

        return TedgeLegacyClient
    if dialect is Dialect.THINGSBOARD:
        from otahub.agent.dialects.thingsboard import ThingsBoardClient

        return ThingsBoardClient
    from otahub.agent.dialects.enos import EnosClient

    return EnosClient


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.store = StateStore(config.state_dir)
        self.state: AgentState = self.store.load()
        self.versions = VersionSource(config.version)
        self.dialect = _dialect_class(config.dialect)(self)
        self.runner = Runner(config, self.store, self.state, self.versions, self.dialect)
        self.link = MqttLink(config.mqtt, self.dialect.client_options)

    async def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            await self.dialect.on_message(topic, payload, retained)
        except Exception:
            # Bad input is handled inside the dialects; this is the last line of
            # defence so that one message never takes the agent down.
            log.exception("error handling a message on %s", topic)

    async def run(self) -> None:
        """Run until cancelled: resume any unfinished update, then serve the dialect."""
        current = self.state.current
        if current is not None:
            if self.dialect.hold_resume(current):
                log.info(
                    "update to %s (%s) resumes once the platform confirms it",
                    current.version,
                    current.phase,
                )
            else:
                log.info("resuming update to %s (%s)", current.version, current.phase)
                self.runner.start()
        background = asyncio.create_task(self.dialect.background(), name="otahub-background")
        try:
            await self.link.run(self.dialect.on_connect, self._on_message)
        finally:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
            await self.runner.stop()
