"""The composition root: builds every part of the hub and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from otahub.hub.broker_transport import BrokerTransport, client_id_for, parse_broker_url
from otahub.hub.core import CoreConfig, HubCore
from otahub.hub.data_dir_watch import watch_paths
from otahub.hub.device_auth.certificate_check import CertificateCheck
from otahub.hub.device_auth.install import install_device_auth
from otahub.hub.drivers.base import Driver, DriverContext
from otahub.hub.drivers.registry import DRIVERS
from otahub.hub.http.app import create_http_app
from otahub.hub.http.auth import load_or_create_token
from otahub.hub.http.listener import HubHttpServer, ListenFailed
from otahub.hub.metrics.loop_lag import watch_loop_lag
from otahub.hub.services.signing import SigningService
from otahub.hub.settings import HubSettings, is_loopback_host
from otahub.hub.shutdown import Shutdown
from otahub.hub.startup_log import log_ready
from otahub.hub.supervision import HubPartFailed, Supervisor
from otahub.hub.transport import LocalTransport, MessageTransport
from otahub.mqtt import LogStore, MQTTServer, ServerConfig
from otahub.signing.keys import KeyFileError
from otahub.signing.metadata import MetadataError

__all__ = ["HubPartFailed", "is_loopback_host", "run_hub"]

log = logging.getLogger("otahub.hub")


def tls_context(settings: HubSettings) -> ssl.SSLContext:
    if settings.tls_cert is None or settings.tls_key is None:
        raise ValueError("the MQTT TLS listener needs --tls-cert and --tls-key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_ca is not None:
        ctx.load_verify_locations(settings.tls_ca)
        # A client may present a certificate (verified against the CA: then it
        # names its device) or log in with its dialect's credentials instead,
        # unless --require-client-cert makes the certificate mandatory.
        ctx.verify_mode = ssl.CERT_REQUIRED if settings.require_client_cert else ssl.CERT_OPTIONAL
    elif settings.require_client_cert:
        raise ValueError("--require-client-cert needs --tls-ca")
    return ctx


async def run_hub(settings: HubSettings, stop: asyncio.Event | None = None) -> None:
    """Run the hub until ``stop`` is set or the process gets SIGINT/SIGTERM.

    Raises :class:`HubPartFailed` when it stopped because a part of it died.
    """
    stop = stop or asyncio.Event()
    outside = asyncio.all_tasks()  # the caller's: not the hub's to cancel when it stops
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    core = await _start_core(settings)
    await _serve(settings, core, stop, outside)
    core.parts.check()


async def _start_core(settings: HubSettings) -> HubCore:
    """Open the database (migrating it) and the blob store; start the timeout sweeper."""
    try:
        core = HubCore(
            CoreConfig(
                data_dir=settings.data_dir,
                database_url=settings.database_url,
                update_timeout_s=settings.update_timeout,
            )
        )
    except ValueError as exc:
        # Reported like the other start-up failures: one line, no traceback.
        raise OSError(f"cannot start the hub: {exc}") from exc
    try:
        await core.start()
        if settings.signing_keys is not None:
            _start_signing(settings, settings.signing_keys, core)
    except BaseException:
        await core.close()
        raise
    return core


def _start_signing(settings: HubSettings, keys: Path, core: HubCore) -> None:
    """Serve signed metadata from the data dir, re-signed with the online keys in ``keys``."""
    try:
        signing = SigningService.open(
            settings.data_dir,
            keys,
            require_signed=settings.require_signed,
            hub_signs_targets=settings.hub_signs_targets,
            timestamp_lifetime=timedelta(seconds=settings.timestamp_lifetime),
        )
    except (MetadataError, KeyFileError, OSError) as exc:
        raise OSError(f"cannot start the hub: signing keys {keys}: {exc}") from exc
    core.firmware.signing = signing
    if settings.require_signed:
        core.updates.package_check = signing.unsigned_reason
    core.parts.start("metadata signing", signing.run())


# retained messages and persistent MQTT sessions, in the data dir
MQTT_STORE_FILE = "mqtt-state.log"


async def _serve(
    settings: HubSettings, core: HubCore, stop: asyncio.Event, outside: set[asyncio.Task[Any]]
) -> None:
    """Run every part of the hub on ``core`` until ``stop`` or a part dies; then stop it all."""
    parts = core.parts
    mqtt_server = MQTTServer(
        ServerConfig(
            max_packet_size=settings.max_packet_size,
            limits=settings.mqtt_limits,
            anonymous_from=settings.anonymous_from,
            allow_anonymous=settings.allow_anonymous,
        ),
        store=LogStore(settings.data_dir / MQTT_STORE_FILE),
    )
    core.metrics.watch_mqtt(mqtt_server)
    # before the drivers start: they subscribe to retained messages kept from the last run
    mqtt_server.recover()
    certificates = CertificateCheck(core.devices, settings.client_cert_identity)
    stop_device_auth = await install_device_auth(core, mqtt_server, certificates)
    warn_anonymous(settings)
    transport: MessageTransport = LocalTransport(mqtt_server)
    started: list[Driver] = []
    http: _HttpListeners | None = None
    http_task: asyncio.Task[None] | None = None
    try:
        admin_token = (
            None
            if settings.no_auth
            else load_or_create_token(settings.data_dir, settings.admin_token)
        )
        app = create_http_app(core, admin_token=admin_token, admin=not settings.separate_admin)
        admin_app = app
        listeners = [_HttpListener("HTTP server", settings.host, settings.http_port, app)]
        if settings.admin_port is not None:
            admin_app = create_http_app(core, admin_token=admin_token)
            admin_host = settings.admin_host or "127.0.0.1"
            listeners.append(
                _HttpListener("admin HTTP server", admin_host, settings.admin_port, admin_app)
            )
        http = _HttpListeners(settings, listeners)
        if settings.broker:
            broker = BrokerTransport(
                parse_broker_url(settings.broker),
                client_id=client_id_for(str(settings.data_dir.resolve())),
            )
            await broker.start(parts)
            transport = broker
        ctx = DriverContext(core=core, mqtt=mqtt_server, transport=transport, settings=settings)
        drivers = [driver_class(ctx) for driver_class in DRIVERS]
        for driver in drivers:  # device_auth already speaks for thin-edge and legacy
            certificates.dialects.setdefault(driver.dialect, driver.session_identity)
        for driver in drivers:
            driver.mount(app)
            driver.mount_admin(admin_app)
        for driver in drivers:
            await driver.start()
            started.append(driver)
        # what devices reported before the last stop and were told was stored
        await core.ingest.replay()
        await mqtt_server.listen(settings.host, settings.mqtt_port)
        if settings.mqtt_tls_port is not None:
            await mqtt_server.listen(
                settings.host, settings.mqtt_tls_port, ssl=tls_context(settings)
            )
        http_task = await http.start(parts)
        core.start_rollouts()
        parts.start("data dir watch", watch_paths(_watched_paths(settings, core)))
        parts.start("event loop lag", watch_loop_lag(core.metrics.observe_loop_lag))
        core.health.listener("MQTT", mqtt_server.listening)
        for listener, server in zip(http.listeners, http.servers, strict=True):
            core.health.listener(listener.name, _http_up(server))
        log_ready(settings, database_url=core.db.url, admin_app=admin_app)
        await parts.wait(stop)
    finally:
        core.health.forget_listeners()
        try:
            await Shutdown(settings.shutdown_timeout, outside=outside).run(
                core, mqtt_server, transport, started, http, http_task
            )
        finally:
            stop_device_auth()


def warn_anonymous(settings: HubSettings) -> None:
    """Say at start-up who may connect without credentials; warn when it is anyone."""
    beyond_loopback = not is_loopback_host(settings.host)
    if settings.allow_anonymous and beyond_loopback:
        log.warning(
            "--allow-anonymous: MQTT clients without credentials are accepted from anywhere "
            "that reaches %s; they may act for every device without a password",
            settings.host,
        )
    elif settings.allow_anonymous:
        log.info("--allow-anonymous: MQTT clients without credentials are accepted")
    elif beyond_loopback and (
        wider := [n for n in settings.anonymous_from if not ipaddress.ip_network(n).is_loopback]
    ):
        log.warning(
            "MQTT clients without credentials are accepted from %s, beyond this machine; "
            "they may act for every device without a password",
            ", ".join(wider),
        )
    else:
        log.info(
            "MQTT clients without credentials are accepted from %s only",
            ", ".join(settings.anonymous_from) or "nowhere",
        )


@dataclass(frozen=True, slots=True)
class _HttpListener:
    name: str
    host: str
    port: int
    app: FastAPI


class _HttpListeners:
    """The HTTP server devices reach and, with ``--admin-port``, the admin API's own;
    started and stopped together."""

    def __init__(self, settings: HubSettings, listeners: list[_HttpListener]) -> None:
        self.listeners = listeners
        self.servers = [
            HubHttpServer(
                uvicorn.Config(
                    listener.app,
                    host=listener.host,
                    port=listener.port,
                    log_level="warning",
                    # its lines go through the hub's handler (text or JSON), not its own
                    log_config=None,
                    lifespan="on",
                    # open requests (downloads, event streams) get the shutdown's time, no more
                    timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout / 2)),
                )
            )
            for listener in listeners
        ]

    @property
    def should_exit(self) -> bool:
        return all(server.should_exit for server in self.servers)

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        for server in self.servers:
            server.should_exit = value

    async def start(self, parts: Supervisor) -> asyncio.Task[None]:
        """Start every server; the task returned ends when all of them have."""
        tasks = []
        for listener, server in zip(self.listeners, self.servers, strict=True):
            task = asyncio.create_task(_serve_http(server, listener), name=listener.name)
            while not server.started:
                if task.done():  # a start-up failure: the caller reports it
                    await task
                    raise OSError(f"the {listener.name} could not start on port {listener.port}")
                await asyncio.sleep(0.02)
            tasks.append(parts.adopt(listener.name, task))
        return asyncio.create_task(_all_ended(tasks), name="HTTP servers")


async def _all_ended(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.wait(tasks)


async def _serve_http(http: HubHttpServer, listener: _HttpListener) -> None:
    try:
        await http.serve()
    except SystemExit:
        # uvicorn exits the process when its start-up fails; the hub reports it instead
        raise OSError(f"the {listener.name} could not start on port {listener.port}") from None
    except ListenFailed as exc:
        raise OSError(
            f"the {listener.name} could not start on port {listener.port}: {exc.reason}"
        ) from None


def _http_up(server: uvicorn.Server) -> Callable[[], bool]:
    return lambda: server.started and not server.should_exit


def _watched_paths(settings: HubSettings, core: HubCore) -> list[Path]:
    paths = [settings.data_dir]
    if core.db.is_sqlite:
        database = make_url(core.db.url).database
        if database and database != ":memory:":
            paths.append(Path(database))
    return paths
