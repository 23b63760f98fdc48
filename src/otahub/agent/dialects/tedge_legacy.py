"""The ``tedge-legacy`` dialect: a child connector for ``c8y-firmware-plugin``.

Requests arrive on ``tedge/<child>/commands/req/firmware_update`` (not
retained); responses go to ``…/res/firmware_update`` as the reference
connector sends them (QoS 0 would do; QoS 1 is used so a terminal status is
not lost). A request whose ``id`` the agent knows, running or finished, is
answered with its current status and never installed again, whatever its
``attempt`` (:func:`otahub.protocols.tedge_legacy.child_decision`).

=============  ===============================================================
step           response
=============  ===============================================================
accepted       ``executing``
restarted      ``executing`` (restarts the gateway's timeout after a reboot)
succeeded      ``successful``
failed         ``failed`` with ``reason``
=============  ===============================================================

Cancel: the legacy protocol has no way to withdraw a request (requests are
not retained and there is no cancel message), so the agent cannot learn of
a cancel: a started update runs to its end, also across an agent restart,
and its late responses are for the gateway to ignore.
"""

from __future__ import annotations

import logging

from otahub.agent.dialects.base import DialectClient, Step
from otahub.agent.link import ClientOptions
from otahub.agent.state import Outcome, UpdateRecord
from otahub.protocols import tedge_legacy as legacy

log = logging.getLogger(__name__)

BUSY_REASON = "another firmware update is in progress"


class TedgeLegacyClient(DialectClient):
    @property
    def child(self) -> str:
        child: str = self.agent.config.tedge_legacy.child_id
        return child

    def client_options(self) -> ClientOptions:
        cfg = self.agent.config
        return ClientOptions(identifier=cfg.mqtt.client_id or f"{self.child}")

    async def on_connect(self) -> None:
        topic = legacy.request_topic(self.child)
        await self.agent.link.subscribe(topic, qos=legacy.REQUEST_QOS)
        # Requests are not retained: one published before this point is lost.
        log.info("waiting for firmware requests on %s", topic)

    async def _respond(
        self, operation_id: str, status: legacy.LegacyStatus, reason: str | None = None
    ) -> None:
        await self.agent.link.publish(
            legacy.response_topic(self.child),
            legacy.build_response(operation_id, status, reason),
            qos=1,
        )

    def _local_status(self, operation_id: str) -> tuple[legacy.LegacyStatus | None, str | None]:
        current = self.agent.runner.current
        if current is not None and current.key == operation_id:
            return legacy.LegacyStatus.EXECUTING, None
        done = self.agent.state.finished(operation_id)
        if done is None:
            return None, None
        if done.outcome is Outcome.SUCCEEDED:
            return legacy.LegacyStatus.SUCCESSFUL, None
        return legacy.LegacyStatus.FAILED, done.reason

    async def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if legacy.parse_request_topic(topic) != self.child:
            return
        request = legacy.parse_request(payload)
        if isinstance(request, legacy.Ignored):
            log.warning("ignoring firmware request: %s", request.reason)
            return
        status, reason = self._local_status(request.id)
        decision = legacy.child_decision(status)
        if decision.action is legacy.ChildAction.REPORT and decision.status is not None:
            log.info("request %s attempt %d: already %s", request.id, request.attempt, status)
            await self._respond(request.id, decision.status, reason)
            return
        if self.agent.runner.busy:
            await self._respond(request.id, legacy.LegacyStatus.FAILED, BUSY_REASON)
            return
        record = UpdateRecord(
            key=request.id,
            name=request.name,
            version=request.version,
            urls=[request.url],
            checksums={"SHA256": request.sha256},
            extra={"attempt": request.attempt},
        )
        log.info("starting %s %s (operation %s)", record.name, record.version, record.key)
        self.agent.runner.accept(record)

    async def report(self, record: UpdateRecord, step: Step, percent: int | None = None) -> None:
        if step in (Step.ACCEPTED, Step.RESTARTED):
            await self._respond(record.key, legacy.LegacyStatus.EXECUTING)
        elif step is Step.SUCCEEDED:
            await self._respond(record.key, legacy.LegacyStatus.SUCCESSFUL)
        elif step is Step.FAILED:
            await self._respond(record.key, legacy.LegacyStatus.FAILED, record.reason)
