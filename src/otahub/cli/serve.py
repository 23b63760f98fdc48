"""``otahub serve``: run the hub."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from otahub.hub.settings import (
    DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_NOTIFY_RATE,
    EnosFileUrl,
    HubSettings,
)

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (a faster MQTT endpoint), else asyncio."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the hub.")] = (
        "127.0.0.1"
    ),
    mqtt_port: Annotated[int, typer.Option(help="Plain MQTT port.")] = 1883,
    http_port: Annotated[int, typer.Option(help="HTTP port (API, downloads).")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="Where the hub keeps its data.")] = Path(
        "otahub-data"
    ),
    mqtt_tls_port: Annotated[int | None, typer.Option(help="MQTT over TLS port.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate (chain).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key.")] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="CA for client certificates (optional).")
    ] = None,
    max_packet_size: Annotated[
        int, typer.Option(help="Largest MQTT packet accepted, in bytes.")
    ] = DEFAULT_MAX_PACKET_SIZE,
    public_url: Annotated[
        str | None,
        typer.Option(help="Base URL devices download from (default: http://HOST:HTTP_PORT)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Database URL, e.g. postgresql://user@host/db (default: SQLite in data dir).",
            envvar="OTAHUB_DATABASE_URL",
        ),
    ] = None,
    update_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds without progress before an update fails (default 3600).",
            envvar="OTAHUB_UPDATE_TIMEOUT",
        ),
    ] = None,
    notify_rate: Annotated[
        float,
        typer.Option(
            help="ThingsBoard devices told of a new assignment per second "
            "(QUEUED to INITIATED; ThingsBoard itself: 100 per 60 s).",
            envvar="OTAHUB_NOTIFY_RATE",
            min=0.01,
        ),
    ] = DEFAULT_NOTIFY_RATE,
    enos_file_url: Annotated[
        EnosFileUrl,
        typer.Option(
            help="EnOS fileUrl form: an absolute URL devices fetch directly, or a relative "
            "path they fetch through the EnOS HTTP broker pair (/auth, /multipart).",
            envvar="OTAHUB_ENOS_FILE_URL",
            case_sensitive=False,
        ),
    ] = EnosFileUrl.ABSOLUTE,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Serve the thin-edge dialects through this broker, e.g. the gateway's "
            "mosquitto: mqtt://host:port (default: the hub's own endpoint).",
            envvar="OTAHUB_BROKER",
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Disable admin auth (loopback only).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the hub: MQTT endpoint, HTTP API and downloads."""
    from otahub.hub.app import run_hub

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if no_auth and not _is_loopback(host):
        raise typer.BadParameter(
            "--no-auth is only allowed when bound to loopback", param_hint="--no-auth"
        )
    if mqtt_tls_port is not None and (tls_cert is None or tls_key is None):
        raise typer.BadParameter("needs --tls-cert and --tls-key", param_hint="--mqtt-tls-port")
    if broker is not None:
        from otahub.hub.broker_transport import parse_broker_url

        try:
            parse_broker_url(broker)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--broker") from None
    settings = HubSettings(
        data_dir=data_dir,
        host=host,
        mqtt_port=mqtt_port,
        http_port=http_port,
        mqtt_tls_port=mqtt_tls_port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        max_packet_size=max_packet_size,
        no_auth=no_auth,
        public_url=public_url,
        database_url=database_url,
        update_timeout_s=update_timeout,
        notify_rate=notify_rate,
        enos_file_url=enos_file_url,
        broker_url=broker,
    )
    try:
        run_async(run_hub(settings))
    except OSError as exc:
        typer.echo(f"otahub: {exc}", err=True)
        raise typer.Exit(1) from exc
