"""A thin-edge child device on the ``te/`` API, as seed 000 and the ESP32 client behave.

On every connection, all retained at QoS 1: registration
(``te/device/<name>//``), the ``firmware_update`` capability and
``twin/firmware``; then a subscription to its commands. A command is
decided by ``(topic, status)``
(:func:`otahub.protocols.thin_edge.executor_action`), so the retained
replay after a reconnect never starts an update again. Status messages
echo the whole command: ``executing``, then the new twin and
``successful``, or ``failed`` with ``reason``. The image comes from
``tedgeUrl`` (``remoteUrl`` as fallback) with Range resume and is checked
against otahub's ``sha256`` and ``size`` when present.
"""

from __future__ import annotations

import logging

from otahub.mqtt.packets import Connect
from otahub.protocols import thin_edge as te
from otahub.simulator.config import DeviceSpec, Dialect
from otahub.simulator.device import Fleet, Job, SimDevice, Step

log = logging.getLogger("otahub.simulator")

NOT_IN_PROGRESS = "OTA update is not in progress"


class ThinEdgeDevice(SimDevice):
    dialect = Dialect.THIN_EDGE

    def __init__(self, spec: DeviceSpec, fleet: Fleet) -> None:
        super().__init__(spec, fleet)
        self.entity = te.EntityTopicId(spec.name)
        self.title = fleet.cfg.firmware_name

    def connect_packet(self) -> Connect:
        if not self.fleet.cfg.passwords:
            return Connect(client_id=self.name, keep_alive=self.fleet.cfg.keepalive)
        return Connect(
            client_id=self.name,
            username=self.name,
            password=self.spec.password.encode(),
            keep_alive=self.fleet.cfg.keepalive,
        )

    def _retain(self, topic: str, payload: bytes) -> None:
        self.publish_now(topic, payload, qos=te.QOS, retain=te.RETAIN)

    def on_connect(self) -> None:
        self._retain(
            te.entity_topic(self.entity),
            te.build_registration(name=self.name, device_type="otahub-simulator"),
        )
        self._retain(te.capability_topic(self.entity), te.CAPABILITY_PAYLOAD)
        self._retain(te.twin_topic(self.entity), te.build_twin(self.title, self.version))
        assert self.conn is not None
        self.conn.subscribe(te.command_filter(self.entity), qos=te.QOS)

    def _local_status(self, topic: str) -> str | None:
        if self.job is not None and self.job.key == topic:
            return te.CommandStatus.EXECUTING.value
        if topic not in self.finished:
            return None
        if self.finished[topic] is None:
            return te.CommandStatus.SUCCESSFUL.value
        return te.CommandStatus.FAILED.value

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
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
            log.warning("%s: ignoring malformed command on %s: %s", self.name, topic, exc)
            return
        local = self._local_status(topic)
        action = te.executor_action(command, local_status=local, busy=self.busy)
        if command is None or action in (te.ExecutorAction.WITHDRAW, te.ExecutorAction.IGNORE):
            return
        if action is te.ExecutorAction.REPORT:
            failure = self.finished.get(topic)
            if failure is None:
                again = command.with_status(te.CommandStatus.SUCCESSFUL)
            else:
                again = command.with_status(te.CommandStatus.FAILED, reason=failure)
            self._retain(topic, again.to_payload())
        elif action is te.ExecutorAction.RESUME:
            if local is None:  # executing, but not here: state from before a restart
                failed = command.with_status(te.CommandStatus.FAILED, reason=NOT_IN_PROGRESS)
                self._retain(topic, failed.to_payload())
        elif action is te.ExecutorAction.START:
            try:
                command.check_executable()
            except te.ThinEdgeError as exc:
                failed = command.with_status(te.CommandStatus.FAILED, reason=str(exc))
                self._retain(topic, failed.to_payload())
                return
            self.start(
                Job(
                    key=topic,
                    name=command.name or "",
                    version=command.version or "",
                    size=command.size,
                    checksums={"SHA256": command.sha256} if command.sha256 else {},
                    context=command,
                )
            )

    async def report(self, job: Job, step: Step) -> None:
        command: te.FirmwareCommand = job.context
        if step is Step.ACCEPTED:
            message = command.with_status(te.CommandStatus.EXECUTING)
        elif step is Step.SUCCEEDED:
            self.title = job.name
            await self.send(
                te.twin_topic(self.entity),
                te.build_twin(job.name, job.version),
                qos=te.QOS,
                retain=te.RETAIN,
                # as the status after it: a connection lost here must not lose the
                # version the device now runs (a real one queues it in its broker)
                reliable=True,
            )
            message = command.with_status(te.CommandStatus.SUCCESSFUL)
        elif step is Step.FAILED:
            message = command.with_status(te.CommandStatus.FAILED, reason=job.reason)
        else:
            return
        terminal = step is not Step.ACCEPTED
        await self.send(
            job.key, message.to_payload(), qos=te.QOS, retain=te.RETAIN, reliable=terminal
        )

    async def download(self, job: Job) -> None:
        command: te.FirmwareCommand = job.context
        await self.http_download(job, list(command.download_urls))
