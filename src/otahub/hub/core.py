"""The dialect-independent heart of the hub: store, blobs, bus and services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from otahub.hub.drivers.download_links import link_signer, shared_key
from otahub.hub.health import Health
from otahub.hub.ingest import IngestJournal
from otahub.hub.metrics import HubMetrics
from otahub.hub.rollouts.engine import RolloutEngine
from otahub.hub.rollouts.service import RolloutService
from otahub.hub.services.devices import DeviceService
from otahub.hub.services.events import EventBus
from otahub.hub.services.firmware import FirmwareService
from otahub.hub.services.fleet_queries import FleetQueries
from otahub.hub.services.groups import GroupService
from otahub.hub.services.integrity import IntegrityService
from otahub.hub.services.updates import UpdateService, check_timeout
from otahub.hub.store.blobs import BlobStore, FileBlobStore
from otahub.hub.store.database import Database, sqlite_url
from otahub.hub.supervision import Supervisor

log = logging.getLogger("otahub.hub")

DEFAULT_UPDATE_TIMEOUT_S = 3600.0


@dataclass(frozen=True, slots=True)
class CoreConfig:
    data_dir: Path
    database_url: str | None = None  # None: SQLite file in the data dir
    update_timeout_s: float = DEFAULT_UPDATE_TIMEOUT_S


HUB_ID_FILE = "hub-id"
INGEST_DIR = "ingest"


def hub_id(data_dir: Path) -> str:
    """This hub's name among those on one database: its host and a random part,
    kept in the data dir (created on first start), so it stays one hub however
    often it restarts, and two hubs never share it, whatever their host names."""
    path = data_dir / HUB_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing[:255]
    created = f"{socket.gethostname()[:200]}-{uuid.uuid4().hex[:12]}"
    tmp = path.with_name(f".{HUB_ID_FILE}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(f"{created}\n")
    tmp.replace(path)
    return created


class HubCore:
    def __init__(self, config: CoreConfig, *, blobs: BlobStore | None = None) -> None:
        self.config = config
        check_timeout(config.update_timeout_s)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(config.database_url or sqlite_url(config.data_dir))
        # this hub among those sharing the database, as its update claims name it:
        # the same across its restarts, so it keeps delivering what it delivered
        self.hub_id = hub_id(config.data_dir)
        # download links; its key is replaced by the database's at start
        self.links = link_signer(config.data_dir)
        self.blobs = blobs or FileBlobStore(config.data_dir / "blobs")
        self.bus = EventBus()
        # device reports acknowledged once on disk, applied behind (drivers record
        # them). Only with SQLite: hubs sharing a PostgreSQL database take over each
        # other's devices, and what one hub's disk holds is lost to the others for
        # good if it never comes back, so there reports are committed before PUBACK.
        self.ingest = IngestJournal(config.data_dir / INGEST_DIR, enabled=self.db.is_sqlite)
        self.firmware = FirmwareService(self.db, self.blobs, self.bus)
        self.updates = UpdateService(self.db, self.bus, default_timeout_s=config.update_timeout_s)
        self.devices = DeviceService(self.db, self.bus, self.updates)
        self.groups = GroupService(self.db, self.bus)
        self.fleet = FleetQueries(self.db)  # paged and counted reads for views
        self.rollouts = RolloutService(self.db, self.updates, self.groups)
        self.rollout_engine = RolloutEngine(
            self.db, self.bus, self.updates, self.rollouts, self.groups
        )
        self.parts = Supervisor()  # the hub's long-running tasks, watched
        self.integrity = IntegrityService(self.db, self.blobs, self.updates)
        self.health = Health(self.db)
        self.metrics = HubMetrics()
        self.metrics.watch_database(self.db)
        self.metrics.watch_blobs(self.blobs)
        self.metrics.watch_updates(self.updates.count_by_state)
        self.metrics.watch_rollouts(self.rollouts.active_counts)
        self.metrics.watch_ingest(self.ingest)
        self._sweeper: asyncio.Task[None] | None = None
        self._engine: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Migrate the database and start the timeout sweeper (``start_rollouts``
        starts the rollout engine)."""
        await self.db.migrate()
        self.links.rekey(await shared_key(self.db, self.links.key))
        self._sweeper = self.parts.start("update timeouts", self.updates.run_sweeper())

    def start_rollouts(self) -> None:
        """Start the rollout engine: once devices can reach the hub, since every
        update it starts is sent to a device at once and downloaded from here."""
        if self._engine is None:
            self._engine = self.parts.start("rollout engine", self.rollout_engine.run())

    async def close(self) -> None:
        self.parts.stopping()
        for task in (self._engine, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            await self.ingest.close()
        except Exception:
            log.exception("applying the ingest journal at shutdown failed")
        try:
            await self.devices.close()
        except Exception:
            log.exception("storing the devices' last-seen times at shutdown failed")
        await self.db.close()
