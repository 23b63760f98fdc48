"""``otahub serve``: run the hub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from otahub.cli.hub_extra import require_hub
from otahub.hub.device_auth.certificates import CertIdentity
from otahub.hub.settings import (
    DEFAULT_ENOS_LOGIN_WINDOW,
    DEFAULT_FILE_TRANSFER_MAX_BYTES,
    DEFAULT_FILE_TRANSFER_MIN_FREE_BYTES,
    DEFAULT_MAX_PACKET_SIZE,
    DEFAULT_NOTIFY_RATE,
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    EnosFileUrl,
    HubSettings,
)
from otahub.mqtt.anonymous import LOOPBACK, parse_networks
from otahub.mqtt.limits import Limits

T = TypeVar("T")
log = logging.getLogger("otahub.hub")
# What closing the event loop and joining threads may add to the shutdown bound.
CLOSE_TIMEOUT_S = 1.0
_LIMITS = Limits()


def run_async(coro: Coroutine[Any, Any, T], *, close_timeout: float = CLOSE_TIMEOUT_S) -> T:
    """Run on uvloop where it is installed (a faster MQTT endpoint), else asyncio.

    Unlike ``asyncio.run``, closing the loop afterwards waits at most
    ``close_timeout`` for tasks still running (it would wait forever for a
    task stuck in its cancellation); such tasks are logged and left.
    """
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    with contextlib.suppress(ImportError):
        import uvloop

        factory = uvloop.new_event_loop
    loop = factory()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            _close_loop(loop, close_timeout)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _close_loop(loop: asyncio.AbstractEventLoop, timeout: float) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        _, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
        if pending:
            log.warning(
                "shutdown cut short: %d task(s) did not end: %s",
                len(pending),
                ", ".join(sorted(t.get_name() for t in pending)),
            )
    loop.run_until_complete(loop.shutdown_asyncgens())
    with contextlib.suppress(TimeoutError):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), timeout))


def exit_without_waiting_for_stuck_threads(status: int, timeout: float = CLOSE_TIMEOUT_S) -> None:
    """Exit now with ``status`` if threads are left that would keep the process alive.

    A database connection whose task was cut short keeps its worker thread
    (not a daemon), and Python waits for such threads forever at exit.
    """
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [
        t.name
        for t in threading.enumerate()
        if t is not threading.current_thread() and not t.daemon and t.is_alive()
    ]
    if stuck:
        log.warning("shutdown cut short: threads %s still running; exiting", ", ".join(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


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
        Path | None,
        typer.Option(
            help="CA for MQTT client certificates: a client may present one signed by it "
            "(it then logs in as the device registered with it, see --cert-file)."
        ),
    ] = None,
    require_client_cert: Annotated[
        bool,
        typer.Option(
            "--require-client-cert",
            help="Refuse MQTT TLS clients without a certificate signed by --tls-ca.",
        ),
    ] = False,
    client_cert_identity: Annotated[
        CertIdentity,
        typer.Option(
            help="What of a client certificate names its device: its SHA-256 fingerprint "
            "or its subject CN."
        ),
    ] = CertIdentity.FINGERPRINT,
    admin_host: Annotated[
        str | None,
        typer.Option(
            help="Serve the admin REST API on its own listener at this address "
            "(default 127.0.0.1 when --admin-port is given)."
        ),
    ] = None,
    admin_port: Annotated[
        int | None,
        typer.Option(
            help="Serve the admin REST API on this port only; the HTTP port keeps "
            "downloads and the device APIs (default: the admin API is on the HTTP port)."
        ),
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
    enos_login_window: Annotated[
        float,
        typer.Option(
            help="Refuse EnOS logins whose signed timestamp lies more than this many seconds "
            "from the hub's clock (replayed logins); 0 turns the check off.",
            envvar="OTAHUB_ENOS_LOGIN_WINDOW",
            min=0,
        ),
    ] = DEFAULT_ENOS_LOGIN_WINDOW,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Serve the thin-edge dialects through this broker, e.g. the gateway's "
            "mosquitto: mqtt://host:port (default: the hub's own endpoint).",
            envvar="OTAHUB_BROKER",
        ),
    ] = None,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds stopping may take (device work drains, then is cut short).",
            min=0.1,
        ),
    ] = DEFAULT_SHUTDOWN_TIMEOUT_S,
    max_subscriptions: Annotated[
        int, typer.Option(help="MQTT subscriptions one client may hold.", min=1)
    ] = _LIMITS.max_subscriptions,
    max_retained_per_client: Annotated[
        int, typer.Option(help="Retained MQTT messages one client may have set.", min=1)
    ] = _LIMITS.max_retained_per_client,
    max_retained_bytes_per_client: Annotated[
        int, typer.Option(help="Payload bytes of one client's retained messages.", min=1)
    ] = _LIMITS.max_retained_bytes_per_client,
    max_retained: Annotated[
        int, typer.Option(help="Retained MQTT messages of all clients together.", min=1)
    ] = _LIMITS.max_retained,
    max_retained_bytes: Annotated[
        int, typer.Option(help="Payload bytes of all retained messages together.", min=1)
    ] = _LIMITS.max_retained_bytes,
    max_pre_connect_bytes: Annotated[
        int,
        typer.Option(
            help="Bytes an MQTT connection may send before its CONNECT is accepted "
            "(CONNECT and will included); more closes it.",
            min=1,
        ),
    ] = _LIMITS.max_pre_connect_bytes,
    max_inflight: Annotated[
        int,
        typer.Option(
            help="QoS 1/2 MQTT messages in flight per client, each way (MQTT 5 Receive Maximum).",
            min=1,
            max=65535,
        ),
    ] = _LIMITS.max_inflight,
    anonymous_from: Annotated[
        str,
        typer.Option(
            help="Networks (CIDR[,CIDR...]) MQTT clients without credentials may connect from.",
            envvar="OTAHUB_ANONYMOUS_FROM",
        ),
    ] = ",".join(LOOPBACK),
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous",
            help="Accept MQTT clients without credentials from anywhere (a trusted network).",
        ),
    ] = False,
    file_transfer_max_bytes: Annotated[
        int,
        typer.Option(
            help="Largest body a PUT on /te/v1/files may store (413 above).",
            envvar="OTAHUB_FILE_TRANSFER_MAX_BYTES",
            min=0,
        ),
    ] = DEFAULT_FILE_TRANSFER_MAX_BYTES,
    file_transfer_min_free_bytes: Annotated[
        int,
        typer.Option(
            help="Refuse a PUT on /te/v1/files (507) that would leave less free space "
            "than this in the data dir.",
            envvar="OTAHUB_FILE_TRANSFER_MIN_FREE_BYTES",
            min=0,
        ),
    ] = DEFAULT_FILE_TRANSFER_MIN_FREE_BYTES,
    signing_keys: Annotated[
        Path | None,
        typer.Option(
            help="Serve signed metadata under /tuf/ and re-sign it with the online keys in "
            "this directory (a key directory's online/, from `otahub keys init`).",
            envvar="OTAHUB_SIGNING_KEYS",
        ),
    ] = None,
    require_signed: Annotated[
        bool,
        typer.Option(
            "--require-signed",
            help="Refuse to start an update of a package without a matching signed target "
            "(409). Needs --signing-keys.",
        ),
    ] = False,
    hub_signs_targets: Annotated[
        bool,
        typer.Option(
            "--hub-signs-targets",
            help="Sign uploaded packages with a targets key kept in --signing-keys "
            "(targets.pem): convenient, but whoever controls the hub can then sign too.",
        ),
    ] = False,
    timestamp_lifetime: Annotated[
        float,
        typer.Option(
            help="Seconds a signed timestamp is valid; the hub re-signs it at half-time. "
            "Devices refuse updates once it expired (a frozen or cut-off hub).",
            min=1,
        ),
    ] = 86400.0,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Disable admin auth (loopback only).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the hub: MQTT endpoint, HTTP API and downloads."""
    require_hub()
    from otahub.hub.app import HubPartFailed, is_loopback_host, run_hub

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if admin_host is not None and admin_port is None:
        raise typer.BadParameter("needs --admin-port", param_hint="--admin-host")
    if admin_port is not None and admin_host is None:
        admin_host = "127.0.0.1"
    if no_auth and not is_loopback_host(host if admin_host is None else admin_host):
        raise typer.BadParameter(
            "--no-auth is only allowed when bound to loopback", param_hint="--no-auth"
        )
    if mqtt_tls_port is not None and (tls_cert is None or tls_key is None):
        raise typer.BadParameter("needs --tls-cert and --tls-key", param_hint="--mqtt-tls-port")
    if require_client_cert and (tls_ca is None or mqtt_tls_port is None):
        raise typer.BadParameter(
            "needs --tls-ca and --mqtt-tls-port", param_hint="--require-client-cert"
        )
    if (require_signed or hub_signs_targets) and signing_keys is None:
        raise typer.BadParameter(
            "needs --signing-keys",
            param_hint="--require-signed" if require_signed else "--hub-signs-targets",
        )
    try:
        anonymous_networks = tuple(str(n) for n in parse_networks(anonymous_from.split(",")))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--anonymous-from") from None
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
        require_client_cert=require_client_cert,
        client_cert_identity=client_cert_identity,
        admin_host=admin_host,
        admin_port=admin_port,
        max_packet_size=max_packet_size,
        no_auth=no_auth,
        public_url=public_url,
        database_url=database_url,
        update_timeout_s=update_timeout,
        notify_rate=notify_rate,
        enos_file_url=enos_file_url,
        enos_login_window=enos_login_window,
        mqtt_limits=Limits(
            max_subscriptions=max_subscriptions,
            max_retained_per_client=max_retained_per_client,
            max_retained_bytes_per_client=max_retained_bytes_per_client,
            max_retained=max_retained,
            max_retained_bytes=max_retained_bytes,
            max_pre_connect_bytes=max_pre_connect_bytes,
            max_inflight=max_inflight,
        ),
        broker_url=broker,
        shutdown_timeout_s=shutdown_timeout,
        anonymous_from=anonymous_networks,
        allow_anonymous=allow_anonymous,
        file_transfer_max_bytes=file_transfer_max_bytes,
        file_transfer_min_free_bytes=file_transfer_min_free_bytes,
        signing_keys=signing_keys,
        require_signed=require_signed,
        hub_signs_targets=hub_signs_targets,
        timestamp_lifetime_s=timestamp_lifetime,
    )
    status = 0
    try:
        run_async(run_hub(settings))
    except HubPartFailed:
        status = 1  # logged where the part died
    except OSError as exc:
        typer.echo(f"otahub: {exc}", err=True)
        status = 1
    exit_without_waiting_for_stuck_threads(status)
    if status:
        raise typer.Exit(status)
