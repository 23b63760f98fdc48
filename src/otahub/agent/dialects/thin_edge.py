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
"""

from __future__ import annotations

import logging

from otahub.agent.dialects.base import DialectClient, Step
from otahub.agent.link import ClientOptions
from otahub.agent.state import Outcome, UpdateRecord
from otahub.protocols import thin_edge as te

log = logging.getLogger(__name__)

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
        if command is None or action is te.ExecutorAction.IGNORE:
            if command is not None and not command.is_terminal:
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
