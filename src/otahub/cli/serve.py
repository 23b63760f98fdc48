"""``otahub serve``: run the hub.

Every option here is a field of :class:`otahub.hub.settings.HubSettings` of
the same name, with the field's default; ``resolve_settings`` merges them with
the environment and the ``--config`` file (that module says how to add one).
"""

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
    EnosFileUrl,
    HubSettings,
    LogFormat,
    LogLevel,
    SettingsError,
    resolve_settings,
)

T = TypeVar("T")
log = logging.getLogger("otahub.hub")
# What closing the event loop and joining threads may add to the shutdown bound.
CLOSE_TIMEOUT_S = 1.0
#: The defaults every option shows, from the one place they are set.
_D = HubSettings()


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
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML file of settings: each option as a key in underscores "
            "(mqtt_port = 1883). The environment (OTAHUB_MQTT_PORT) wins over it, "
            "the command line over both.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the hub.")] = _D.host,
    mqtt_port: Annotated[int, typer.Option(help="Plain MQTT port.")] = _D.mqtt_port,
    http_port: Annotated[int, typer.Option(help="HTTP port (API, downloads).")] = _D.http_port,
    data_dir: Annotated[Path, typer.Option(help="Where the hub keeps its data.")] = _D.data_dir,
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
    ] = _D.require_client_cert,
    client_cert_identity: Annotated[
        CertIdentity,
        typer.Option(
            help="What of a client certificate names its device: its SHA-256 fingerprint "
            "or its subject CN."
        ),
    ] = _D.client_cert_identity,
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
    ] = _D.max_packet_size,
    public_url: Annotated[
        str | None,
        typer.Option(help="Base URL devices download from (default: http://HOST:HTTP_PORT)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Database URL, e.g. postgresql://user@host/db (default: SQLite in data dir).",
        ),
    ] = None,
    update_timeout: Annotated[
        float, typer.Option(help="Seconds without progress before an update fails.")
    ] = _D.update_timeout,
    notify_rate: Annotated[
        float,
        typer.Option(
            help="ThingsBoard devices told of a new assignment per second "
            "(QUEUED to INITIATED; ThingsBoard itself: 100 per 60 s).",
        ),
    ] = _D.notify_rate,
    enos_file_url: Annotated[
        EnosFileUrl,
        typer.Option(
            help="EnOS fileUrl form: an absolute URL devices fetch directly, or a relative "
            "path they fetch through the EnOS HTTP broker pair (/auth, /multipart).",
            case_sensitive=False,
        ),
    ] = _D.enos_file_url,
    enos_login_window: Annotated[
        float,
        typer.Option(
            help="Refuse EnOS logins whose signed timestamp lies more than this many seconds "
            "from the hub's clock (replayed logins); 0 turns the check off.",
        ),
    ] = _D.enos_login_window,
    enos_push_grace: Annotated[
        float,
        typer.Option(
            help="Seconds the hub waits after an EnOS device connects for its first version "
            "report before pushing an update to it.",
        ),
    ] = _D.enos_push_grace,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Serve the thin-edge dialects through this broker, e.g. the gateway's "
            "mosquitto: mqtt://host:port (default: the hub's own endpoint).",
        ),
    ] = None,
    shutdown_timeout: Annotated[
        float,
        typer.Option(help="Seconds stopping may take (device work drains, then is cut short)."),
    ] = _D.shutdown_timeout,
    max_subscriptions: Annotated[
        int, typer.Option(help="MQTT subscriptions one client may hold.")
    ] = _D.max_subscriptions,
    max_retained_per_client: Annotated[
        int, typer.Option(help="Retained MQTT messages one client may have set.")
    ] = _D.max_retained_per_client,
    max_retained_bytes_per_client: Annotated[
        int, typer.Option(help="Payload bytes of one client's retained messages.")
    ] = _D.max_retained_bytes_per_client,
    max_retained: Annotated[
        int, typer.Option(help="Retained MQTT messages of all clients together.")
    ] = _D.max_retained,
    max_retained_bytes: Annotated[
        int, typer.Option(help="Payload bytes of all retained messages together.")
    ] = _D.max_retained_bytes,
    max_pre_connect_bytes: Annotated[
        int,
        typer.Option(
            help="Bytes an MQTT connection may send before its CONNECT is accepted "
            "(CONNECT and will included); more closes it.",
        ),
    ] = _D.max_pre_connect_bytes,
    max_inflight: Annotated[
        int,
        typer.Option(
            help="QoS 1/2 MQTT messages in flight per client, each way (MQTT 5 Receive Maximum).",
        ),
    ] = _D.max_inflight,
    max_stored_messages: Annotated[
        int,
        typer.Option(
            help="QoS 1/2 MQTT messages kept for persistent sessions, all together; "
            "more are dropped.",
        ),
    ] = _D.max_stored_messages,
    max_queued_handlers: Annotated[
        int,
        typer.Option(
            help="MQTT messages of one client waiting for the hub to handle its earlier "
            "ones; past it the hub stops reading from that client until half are done.",
        ),
    ] = _D.max_queued_handlers,
    anonymous_from: Annotated[
        str,
        typer.Option(
            help="Networks (CIDR[,CIDR...]) MQTT clients without credentials may connect from.",
        ),
    ] = ",".join(_D.anonymous_from),
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous",
            help="Accept MQTT clients without credentials from anywhere (a trusted network).",
        ),
    ] = _D.allow_anonymous,
    file_transfer_max_bytes: Annotated[
        int, typer.Option(help="Largest body a PUT on /te/v1/files may store (413 above).")
    ] = _D.file_transfer_max_bytes,
    file_transfer_min_free_bytes: Annotated[
        int,
        typer.Option(
            help="Refuse a PUT on /te/v1/files (507) that would leave less free space "
            "than this in the data dir.",
        ),
    ] = _D.file_transfer_min_free_bytes,
    signing_keys: Annotated[
        Path | None,
        typer.Option(
            help="Serve signed metadata under /tuf/ and re-sign it with the online keys in "
            "this directory (a key directory's online/, from `otahub keys init`).",
        ),
    ] = _D.signing_keys,
    require_signed: Annotated[
        bool,
        typer.Option(
            "--require-signed",
            help="Refuse to start an update of a package without a matching signed target "
            "(409). Needs --signing-keys.",
        ),
    ] = _D.require_signed,
    hub_signs_targets: Annotated[
        bool,
        typer.Option(
            "--hub-signs-targets",
            help="Sign uploaded packages with a targets key kept in --signing-keys "
            "(targets.pem): convenient, but whoever controls the hub can then sign too.",
        ),
    ] = _D.hub_signs_targets,
    timestamp_lifetime: Annotated[
        float,
        typer.Option(
            help="Seconds a signed timestamp is valid; the hub re-signs it at half-time. "
            "Devices refuse updates once it expired (a frozen or cut-off hub).",
            min=1,
        ),
    ] = _D.timestamp_lifetime,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Disable admin auth (loopback only).")
    ] = _D.no_auth,
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False)] = _D.log_level,
    log_format: Annotated[
        LogFormat,
        typer.Option(help="text, or json: one JSON object per line.", case_sensitive=False),
    ] = _D.log_format,
) -> None:
    """Run the hub: MQTT endpoint, HTTP API and downloads.

    Every option can also be set as OTAHUB_<OPTION> in the environment
    (OTAHUB_MQTT_PORT=1884) or as a key of the --config file (mqtt_port = 1884),
    and the admin token as OTAHUB_ADMIN_TOKEN or admin_token.
    """
    require_hub()
    given = {
        name: value
        for name, value in ctx.params.items()
        if name != "config" and _on_command_line(ctx, name)
    }
    try:
        settings = resolve_settings(given, os.environ, config)
    except SettingsError as exc:
        typer.echo(f"otahub serve: {exc}", err=True)
        raise typer.Exit(2) from None

    from otahub.hub.app import HubPartFailed, run_hub
    from otahub.hub.gc_tuning import tune_for_server
    from otahub.hub.open_files import raise_open_files_limit
    from otahub.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    raise_open_files_limit()
    tune_for_server()
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


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"
