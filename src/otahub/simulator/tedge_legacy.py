"""A legacy child connector on ``tedge/<child>/commands`` (seed 001, ``c8y-firmware-plugin``).

Subscribes to its request topic on every connection; answers ``executing``
at the start, then ``successful`` or ``failed`` with ``reason``. A request
whose ``id`` it knows, running or finished (the hub re-sends with
``attempt + 1`` when the child comes back), is answered with its current
status and never installed again. The image comes from the file-transfer
``url`` with Range resume and is checked against ``sha256``.
"""

from __future__ import annotations

import logging

from otahub.mqtt.packets import Connect
from otahub.protocols import tedge_legacy as legacy
from otahub.simulator.config import Dialect
from otahub.simulator.device import Job, SimDevice, Step

log = logging.getLogger("otahub.simulator")

BUSY_REASON = "another firmware update is in progress"


class TedgeLegacyDevice(SimDevice):
    dialect = Dialect.TEDGE_LEGACY

    def connect_packet(self) -> Connect:
        if not self.fleet.cfg.passwords:
            return Connect(client_id=self.name, keep_alive=self.fleet.cfg.keepalive)
        return Connect(
            client_id=self.name,
            username=self.name,
            password=self.spec.password.encode(),
            keep_alive=self.fleet.cfg.keepalive,
        )

    def on_connect(self) -> None:
        assert self.conn is not None
        self.conn.subscribe(legacy.request_topic(self.name), qos=legacy.REQUEST_QOS)

    def _respond(self, operation_id: str, status: legacy.LegacyStatus, reason: str | None) -> None:
        self.publish_now(
            legacy.response_topic(self.name), legacy.build_response(operation_id, status, reason)
        )

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if legacy.parse_request_topic(topic) != self.name:
            return
        request = legacy.parse_request(payload)
        if isinstance(request, legacy.Ignored):
            log.warning("%s: ignoring firmware request: %s", self.name, request.reason)
            return
        local: legacy.LegacyStatus | None = None
        reason: str | None = None
        if self.job is not None and self.job.key == request.id:
            local = legacy.LegacyStatus.EXECUTING
        elif request.id in self.finished:
            reason = self.finished[request.id]
            local = legacy.LegacyStatus.SUCCESSFUL if reason is None else legacy.LegacyStatus.FAILED
        decision = legacy.child_decision(local)
        if decision.action is legacy.ChildAction.REPORT and decision.status is not None:
            self._respond(request.id, decision.status, reason)
            return
        if self.busy:
            self._respond(request.id, legacy.LegacyStatus.FAILED, BUSY_REASON)
            return
        self.start(
            Job(
                key=request.id,
                name=request.name,
                version=request.version,
                size=None,
                checksums={"SHA256": request.sha256},
                context=request.url,
            )
        )

    async def report(self, job: Job, step: Step) -> None:
        if step is Step.ACCEPTED:
            status, reason = legacy.LegacyStatus.EXECUTING, None
        elif step is Step.SUCCEEDED:
            status, reason = legacy.LegacyStatus.SUCCESSFUL, None
        elif step is Step.FAILED:
            status, reason = legacy.LegacyStatus.FAILED, job.reason
        else:
            return
        await self.send(
            legacy.response_topic(self.name),
            legacy.build_response(job.key, status, reason),
            reliable=status.is_terminal,
        )

    async def download(self, job: Job) -> None:
        await self.http_download(job, [str(job.context)])
