"""What every dialect driver is given and what it must provide."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from fastapi import FastAPI

from otahub.hub.core import HubCore
from otahub.hub.services.views import DeviceView, UpdateView
from otahub.hub.settings import HubSettings
from otahub.hub.transport import MessageTransport
from otahub.mqtt import Endpoint, Identity


@dataclass(slots=True)
class DriverContext:
    core: HubCore
    # the hub's own MQTT endpoint (ThingsBoard and EnOS devices always connect here)
    mqtt: Endpoint
    # where the thin-edge dialects publish and subscribe: the hub's own endpoint,
    # or an external broker with --broker
    transport: MessageTransport
    settings: HubSettings

    @property
    def public_url(self) -> str:
        """Base URL devices use to download from the hub (no trailing slash)."""
        return self.settings.public_base_url()


class Driver(ABC):
    """One dialect on the hub.

    ``start`` installs the driver's MQTT hooks and event-bus subscriptions,
    and registers ``start_update`` with the update service
    (``UpdateService.set_starter``); ``mount`` adds its HTTP routes (if any),
    ``stop`` undoes what ``start`` did.
    """

    dialect: ClassVar[str]

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx

    def mount(self, app: FastAPI) -> None:  # noqa: B027  (optional hook)
        """Add the driver's device-facing HTTP routes (downloads, device APIs)."""

    def mount_admin(self, app: FastAPI) -> None:  # noqa: B027  (optional hook)
        """Add the driver's admin REST routes; ``app`` is the admin listener's when
        ``--admin-port`` gives the admin API its own (else the same as ``mount``'s)."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def start_update(self, update: UpdateView) -> None:
        """Deliver a new update of this dialect to its device (or queue it to be).

        Called by the update service once the update is committed; what it
        raises fails the update, and whoever created it sees it failed.
        """

    async def stop(self) -> None:  # noqa: B027  (optional hook)
        """Release what start() acquired; nothing by default."""

    def session_identity(self, device: DeviceView) -> Identity | None:
        """The MQTT identity of ``device`` when its client certificate names it: what
        its dialect's own login gives it. None: it cannot log in that way."""
        return None
