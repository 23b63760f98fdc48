"""The ``thin-edge`` dialect: a child device connector for the v1 ``te/`` API.

On every connect: registration (optional), the ``firmware_update``
capability and ``twin/firmware``, all retained at QoS 1, then a
subscription to ``…/cmd/firmware_update/+``. A command is decided by
``(topic, status)`` (:func:`otahub.protocols.thin_edge.executor_action`), so
retained replays after a reconnect or a restart never start an update again.

Statuses published (always the whole received payload, ``status`` replaced).
Intermediate ones are custom statuses, which other requesters ignore; the
hub records them as the canonical states of the same name (``verifying`` is
kept for the check after a restart, where it means what it means for the
ESP32 client):

=============  ==============================================================
step           status
=============  ==============================================================
accepted       ``executing``
downloading    ``downloading`` (with otahub's optional ``progress`` 0..100)
downloaded     ``downloaded``
verified       ``verified`` (the checksums matched)
installing     ``installing``
restarting     ``restart``
restarted      ``verifying``, like the ESP32 client after its reboot
succeeded      new ``twin/firmware`` first, then ``successful``
failed         ``failed`` with ``reason``
=============  ==============================================================

Cancel: the requester clears the retained command (an empty retained
payload on its topic). Until the install hook starts, the agent then stops
the update, deletes its download and publishes nothing more on that topic
(a status would put a retained command back). An update found on disk at
startup resumes only once its retained command is replayed; if it is not
within ``thin_edge.resume_grace`` seconds of the subscription, it was cleared
while the agent was stopped and is dropped. Once the install hook has
started, the update completes and reports as usual.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from otahub.agent.dialects.base import DialectClient, Step
from otahub.agent.link import ClientOptions
from otahub.agent.state import Outcome, Phase, UpdateRecord
from otahub.protocols import thin_edge as te

if TYPE_CHECKING:
    from otahub.agent.app import Agent

log = logging.getLogger(__name__)

CLEARED_REASON = "the requester cleared the command"
CLEARED_WHILE_STOPPED = "the requester cleared the command while the agent was stopped"
#: Phases resumed at startup without waiting for the command: the install ran.
_INSTALL_STARTED = (Phase.INSTALLING, Phase.REBOOT_PENDING)

_STATUS: dict[Step, str] = {
    Step.ACCEPTED: te.CommandStatus.EXECUTING.value,
    Step.DOWNLOADING: "downloading",
    Step.DOWNLOADED: "downloaded",
    Step.VERIFIED: "verified",
    Step.INSTALLING: "installing",
    Step.RESTARTING: "restart",
    Step.RESTARTED: "verifying",
    Step.SUCCEEDED: te.CommandStatus.SUCCESSFUL.value,
    Step.FAILED: te.CommandStatus.FAILED.value,
}


class ThinEdgeClient(DialectClient):
    def __init__(self, agent: Agent) -> None:
        super().__init__(agent)
        #: The command topic of an update found on disk whose retained command
        #: has not been replayed yet (see :meth:`hold_resume`).
        self._unconfirmed: str | None = None
        self._grace: asyncio.Task[None] | None = None

    def hold_resume(self, record: UpdateRecord) -> bool:
        # The requester cancels by clearing the retained command, possibly while
        # the agent is stopped: resume only once the command is replayed.
        if record.phase in _INSTALL_STARTED:
            return False
        self._unconfirmed = record.key
        return True

    async def _drop_unless_replayed(self, topic: str) -> None:
        await asyncio.sleep(self.agent.config.thin_edge.resume_grace)
        if self._unconfirmed == topic:
            self._unconfirmed = None
            await self.agent.runner.abandon(topic, CLEARED_WHILE_STOPPED)

    @property
    def entity(self) -> te.EntityTopicId:
        return te.EntityTopicId(self.agent.config.thin_edge.device_id)

    def client_options(self) -> ClientOptions:
        cfg = self.agent.config
        return ClientOptions(identifier=cfg.mqtt.client_id or f"{cfg.thin_edge.device_id}")

    async def _publish(self, topic: str, payload: bytes, *, best_effort: bool = False) -> None:
        await self.agent.link.publish(
            topic, payload, qos=te.QOS, retain=te.RETAIN, best_effort=best_effort
        )

    async def on_connect(self) -> None:
        cfg = self.agent.config.thin_edge
        if cfg.registration:
            parent = te.EntityTopicId.parse(cfg.parent) if cfg.parent else None
            await self._publish(
                te.entity_topic(self.entity),
                te.build_registration(name=cfg.name, device_type=cfg.type, parent=parent),
            )
        await self._publish(te.capability_topic(self.entity), te.CAPABILITY_PAYLOAD)
        name, version = await self.agent.runner.installed()
        await self._publish(te.twin_topic(self.entity), te.build_twin(name, version))
        await self.agent.link.subscribe(te.command_filter(self.entity), qos=te.QOS)
        if self._unconfirmed is not None and self._grace is None:
            # Retained commands follow the subscription at once.
            self._grace = asyncio.create_task(self._drop_unless_replayed(self._unconfirmed))

    def _local_status(self, topic: str) -> str | None:
        current = self.agent.runner.current
        if current is not None and current.key == topic:
            return te.CommandStatus.EXECUTING.value
        done = self.agent.state.finished(topic)
        if done is None:
            return None
        if done.outcome is Outcome.SUCCEEDED:
            return te.CommandStatus.SUCCESSFUL.value
        return te.CommandStatus.FAILED.value

    async def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = te.parse_topic(topic)
        if (
            parsed is None
            or parsed.kind is not te.TopicKind.COMMAND
            or parsed.entity != self.entity
        ):
            return
        try:
            command = te.parse_command(payload)
        except te.ThinEdgeError as exc:
            # Not an object we could echo back: nothing to answer in protocol terms.
            log.warning("ignoring malformed command on %s: %s", topic, exc)
            return
        local = self._local_status(topic)
        action = te.executor_action(command, local_status=local, busy=self.agent.runner.busy)
        if action is te.ExecutorAction.WITHDRAW:
            # Also the requester closing a finished command, no longer current.
            if topic == self._unconfirmed:
                self._unconfirmed = None
            await self.agent.runner.abandon(topic, CLEARED_REASON)
            return
        assert command is not None  # only a clear is withdrawn
        if topic == self._unconfirmed:
            self._unconfirmed = None
            log.info("command %s replayed; resuming its update", topic)
            self.agent.runner.start()
            return
        if action is te.ExecutorAction.IGNORE:
            if not command.is_terminal:
                log.info("ignoring %s on %s: another update is in progress", command.status, topic)
            return
        if action is te.ExecutorAction.START:
            await self._start(topic, command)
        elif action is te.ExecutorAction.REPORT:
            await self._report_again(topic, command)
        elif local is None:
            # A non-terminal command this agent has no record of (state lost, or
            # an executor before it): it cannot be resumed, so it is failed.
            await self._publish(
                topic,
                command.with_status(
                    te.CommandStatus.FAILED, reason="OTA update is not in progress"
                ).to_payload(),
            )

    async def _start(self, topic: str, command: te.FirmwareCommand) -> None:
        try:
            command.check_executable()
        except te.ThinEdgeError as exc:
            await self._publish(
                topic, command.with_status(te.CommandStatus.FAILED, reason=str(exc)).to_payload()
            )
            return
        checksums = {"SHA256": command.sha256} if command.sha256 else {}
        record = UpdateRecord(
            key=topic,
            name=command.name or "",
            version=command.version or "",
            urls=list(command.download_urls),
            checksums=checksums,
            size=command.size,
            extra={"fields": dict(command.fields)},
        )
        log.info("starting %s %s from %s", record.name, record.version, topic)
        self.agent.runner.accept(record)

    async def _report_again(self, topic: str, command: te.FirmwareCommand) -> None:
        done = self.agent.state.finished(topic)
        if done is None:
            return
        base = te.FirmwareCommand(done.extra.get("fields", command.fields))
        if done.outcome is Outcome.SUCCEEDED:
            payload = base.with_status(te.CommandStatus.SUCCESSFUL).to_payload()
        else:
            payload = base.with_status(te.CommandStatus.FAILED, reason=done.reason).to_payload()
        await self._publish(topic, payload)

    async def report(self, record: UpdateRecord, step: Step, percent: int | None = None) -> None:
        status = _STATUS.get(step)
        if status is None:
            return
        command = te.FirmwareCommand(record.extra["fields"])
        if step is Step.SUCCEEDED:
            await self._publish(
                te.twin_topic(self.entity), te.build_twin(record.name, record.version)
            )
            message = command.with_status(status)
        elif step is Step.FAILED:
            message = command.with_status(status, reason=record.reason)
        elif step is Step.DOWNLOADING and percent is not None:
            message = command.with_status(status, progress=percent)
        else:
            message = command.with_status(status)
        # Percentages are nice to have; never hold the download up for them.
        best_effort = step is Step.DOWNLOADING and bool(percent)
        await self._publish(record.key, message.to_payload(), best_effort=best_effort)
