"""The composition root: builds every part of the hub and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from otahub import mqtt
from otahub.hub.broker_transport import BrokerTransport, client_id_for, parse_broker_url
from otahub.hub.core import CoreConfig, HubCore
from otahub.hub.drivers.base import Driver, DriverContext
from otahub.hub.drivers.registry import DRIVERS
from otahub.hub.http.app import create_http_app
from otahub.hub.http.auth import load_or_create_token
from otahub.hub.settings import HubSettings
from otahub.hub.transport import LocalTransport, MessageTransport
from otahub.mqtt.server import MQTTServer, ServerConfig

log = logging.getLogger("otahub.hub")


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the hub owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def tls_context(settings: HubSettings) -> ssl.SSLContext:
    if settings.tls_cert is None or settings.tls_key is None:
        raise ValueError("the MQTT TLS listener needs --tls-cert and --tls-key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_ca is not None:
        ctx.load_verify_locations(settings.tls_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


async def run_hub(settings: HubSettings, stop: asyncio.Event | None = None) -> None:
    """Run the hub until ``stop`` is set or the process gets SIGINT/SIGTERM."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    core = await _start_core(settings)
    admin_token = None if settings.no_auth else load_or_create_token(settings.data_dir)
    try:
        await _serve(settings, core, admin_token, stop)
    finally:
        await core.close()


async def _start_core(settings: HubSettings) -> HubCore:
    """Open the database (migrating it) and the blob store; start the timeout sweeper."""
    try:
        core = HubCore(
            CoreConfig.from_env(
                settings.data_dir,
                database_url=settings.database_url,
                update_timeout_s=settings.update_timeout_s,
            )
        )
    except ValueError as exc:
        # Reported like the other start-up failures: one line, no traceback.
        raise OSError(f"cannot start the hub: {exc}") from exc
    try:
        await core.start()
    except BaseException:
        await core.close()
        raise
    return core


async def _serve(
    settings: HubSettings, core: HubCore, admin_token: str | None, stop: asyncio.Event
) -> None:
    mqtt = MQTTServer(ServerConfig(max_packet_size=settings.max_packet_size))
    transport: MessageTransport
    if settings.broker_url:
        broker = BrokerTransport(
            parse_broker_url(settings.broker_url),
            client_id=client_id_for(str(settings.data_dir.resolve())),
        )
        await broker.start()
        transport = broker
    else:
        transport = LocalTransport(mqtt)
    ctx = DriverContext(core=core, mqtt=mqtt, transport=transport, settings=settings)
    drivers = [driver_class(ctx) for driver_class in DRIVERS]
    app = create_http_app(core, admin_token=admin_token)
    for driver in drivers:
        driver.mount(app)
    started: list[Driver] = []
    try:
        for driver in drivers:
            await driver.start()
            started.append(driver)
        await mqtt.listen(settings.host, settings.mqtt_port)
        if settings.mqtt_tls_port is not None:
            await mqtt.listen(settings.host, settings.mqtt_tls_port, ssl=tls_context(settings))
        await _run_http(settings, app, stop)
    finally:
        await mqtt.close()
        for driver in reversed(started):
            try:
                await driver.stop()
            except Exception:
                log.exception("driver %s failed to stop", driver.dialect)
        await transport.close()
        log.info("otahub stopped")


async def _run_http(settings: HubSettings, app: FastAPI, stop: asyncio.Event) -> None:
    http = _EmbeddedUvicorn(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.http_port,
            log_level="warning",
            lifespan="on",
        )
    )
    http_task = asyncio.create_task(http.serve(), name="http")
    try:
        while not http.started:
            if http_task.done():
                await http_task
                raise RuntimeError(f"HTTP server could not start on port {settings.http_port}")
            await asyncio.sleep(0.02)
        log.info(
            "otahub ready: mqtt://%s:%d http://%s:%d data in %s (MQTT endpoint %s)",
            settings.host,
            settings.mqtt_port,
            settings.host,
            settings.http_port,
            settings.data_dir,
            "compiled" if mqtt.compiled() else "pure Python",
        )
        stale = mqtt.stale_compiled_modules()
        if stale:
            log.warning(
                "otahub.mqtt modules %s changed after they were compiled and run as built; "
                "reinstall otahub to rebuild them",
                ", ".join(stale),
            )
        stop_task = asyncio.create_task(stop.wait())
        await asyncio.wait({stop_task, http_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
    finally:
        http.should_exit = True
        with contextlib.suppress(Exception):
            await http_task
