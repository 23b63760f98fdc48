"""``otahub simulate``: a fleet of simulated devices against a hub."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from otahub.simulator.config import (
    MIXED,
    Endpoint,
    FailAt,
    FaultRates,
    SimConfig,
    fleet,
    parse_endpoint,
)

DIALECT_CHOICES = ("thingsboard", "enos", "thin-edge", "tedge-legacy", MIXED)
ADMIN_TOKEN_ENV = "OTAHUB_ADMIN_TOKEN"


def _rate(value: float, option: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise typer.BadParameter("must be a share between 0 and 1", param_hint=option)
    return value


def _endpoints(hub: str, endpoints: str | None) -> tuple[Endpoint, ...]:
    texts = [hub] if not endpoints else [e for e in endpoints.split(",") if e.strip()]
    try:
        return tuple(parse_endpoint(text) for text in texts)
    except ValueError as exc:
        raise typer.BadParameter(
            str(exc), param_hint="--endpoints" if endpoints else "--hub"
        ) from None


def simulate(
    hub: Annotated[
        str, typer.Option(help="The hub's MQTT endpoint, mqtt://HOST:PORT.")
    ] = "mqtt://127.0.0.1:1883",
    http: Annotated[
        str,
        typer.Option(
            help="The hub's HTTP base URL: REST API for --register, EnOS HTTP broker for "
            "relative fileUrls."
        ),
    ] = "http://127.0.0.1:8000",
    devices: Annotated[int, typer.Option(help="Devices to simulate.", min=1)] = 10,
    dialect: Annotated[
        str, typer.Option(help=f"{', '.join(DIALECT_CHOICES[:-1])} or mixed (all four in turn).")
    ] = "thingsboard",
    register: Annotated[
        bool,
        typer.Option(
            "--register",
            help="Register the devices with the hub first (POST /api/v1/devices/batch, else "
            "one POST /api/v1/devices each); "
            "existing ones are kept.",
        ),
    ] = False,
    admin_token: Annotated[
        str | None,
        typer.Option(
            help=f"Admin token for --register; else ${ADMIN_TOKEN_ENV}.", show_default=False
        ),
    ] = None,
    anonymous: Annotated[
        bool,
        typer.Option(
            "--anonymous",
            help="thin-edge and tedge-legacy devices get no password and connect without "
            "credentials (the hub must allow it, e.g. from loopback).",
        ),
    ] = False,
    fail_rate: Annotated[
        float, typer.Option(help="Share of devices whose updates fail at --fail-at.")
    ] = 0.0,
    fail_at: Annotated[FailAt, typer.Option(help="Where those updates fail.")] = FailAt.DOWNLOAD,
    offline_rate: Annotated[float, typer.Option(help="Share of devices that never connect.")] = 0.0,
    crash_rate: Annotated[
        float,
        typer.Option(help="Share of devices that drop their connection mid-download and resume."),
    ] = 0.0,
    install_seconds: Annotated[
        float, typer.Option(help="How long an install takes.", min=0.0)
    ] = 1.0,
    processes: Annotated[
        int, typer.Option(help="Worker processes sharing the devices.", min=1)
    ] = 1,
    endpoints: Annotated[
        str | None,
        typer.Option(
            help="MQTT endpoints HOST:PORT[,HOST:PORT...] instead of --hub; devices spread "
            "over them and move to the next on every reconnect.",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds (default: at Ctrl-C/SIGTERM).", min=0.0),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Device names are PREFIX-DIALECT-NNNNN.")] = "sim",
    seed: Annotated[
        int, typer.Option(help="Seed of the fault choice (same seed, same devices).")
    ] = 1,
    record: Annotated[
        Path | None,
        typer.Option(help="Append one JSON line per install run here.", dir_okay=False),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option(help="ThingsBoard chunk size in bytes.", min=1)
    ] = 65536,
    keepalive: Annotated[
        int, typer.Option(help="MQTT keep-alive in seconds (a PINGREQ when quiet for half).", min=1)
    ] = 60,
    backoff_max: Annotated[
        float, typer.Option(help="Longest wait between reconnects, in seconds.", min=0.01)
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "warning",
) -> None:
    """Simulate DEVICES devices that speak DIALECT to a hub over real sockets.

    Each device has its own MQTT connection and credentials (derived from its
    name: a rerun finds the same ones), takes updates the way the real
    platform's devices do, verifies checksums, "installs" (sleeps), reports
    the new version and reconnects with backoff. Live counts go to stderr; at
    the end (Ctrl-C, SIGTERM or --duration) a JSON summary goes to stdout.

    Faults: --fail-rate, --offline-rate and --crash-rate pick devices by
    --seed. Send SIGUSR1 to clear every fault in a running simulator: failing
    devices then succeed, crashing ones stop crashing, offline ones connect.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # a line per download or registration request would drown the simulator's own
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))
    if dialect not in DIALECT_CHOICES:
        raise typer.BadParameter(f"one of {', '.join(DIALECT_CHOICES)}", param_hint="--dialect")
    try:
        specs = fleet(devices, dialect, prefix)
        for spec in specs[:1]:
            _ = spec.name  # checks the prefix makes valid names below
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--prefix") from None
    if any(c in prefix for c in "/+#|&"):
        raise typer.BadParameter("no '/', '+', '#', '|' or '&' in a prefix", param_hint="--prefix")
    cfg = SimConfig(
        endpoints=_endpoints(hub, endpoints),
        http_url=http,
        faults=FaultRates(
            fail_rate=_rate(fail_rate, "--fail-rate"),
            fail_at=fail_at,
            offline_rate=_rate(offline_rate, "--offline-rate"),
            crash_rate=_rate(crash_rate, "--crash-rate"),
            seed=seed,
        ),
        passwords=not anonymous,
        install_seconds=install_seconds,
        chunk_size=chunk_size,
        backoff_max=backoff_max,
        keepalive=keepalive,
    )
    from otahub.simulator.live import Display
    from otahub.simulator.processes import run_processes
    from otahub.simulator.registration import RegistrationFailed
    from otahub.simulator.registration import register as register_devices
    from otahub.simulator.runner import run, run_fleet
    from otahub.simulator.stats import Stats

    started = time.monotonic()
    early = _EarlySignals()
    extra: dict[str, object] = {}
    with early:
        if register:
            token = admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None
            try:
                created = asyncio.run(
                    register_devices(http, specs, passwords=not anonymous, admin_token=token)
                )
            except KeyboardInterrupt:
                created = None
            except (RegistrationFailed, OSError) as exc:
                typer.echo(f"error: registering devices: {exc}", err=True)
                raise typer.Exit(1) from None
            except Exception as exc:  # httpx errors: the hub is unreachable
                typer.echo(f"error: registering devices at {http}: {exc}", err=True)
                raise typer.Exit(1) from None
            extra = {"registered_new": created, "register_s": round(time.monotonic() - started, 3)}
    if early.stopped:
        # stopped before any device ran: the summary says so
        final = Stats().snapshot()
        final["devices"] = len(specs)
        _print_summary({**final, **extra}, time.monotonic() - started)
        return
    display = Display()
    try:
        if processes > 1:
            final = run_processes(
                cfg,
                specs,
                processes,
                duration=duration,
                record=record,
                display=display,
                clear_faults=early.faults_cleared,
            )
        else:
            final = run(
                run_fleet(
                    cfg,
                    specs,
                    duration=duration,
                    record=record,
                    report=lambda counts: display.tick(counts, time.monotonic() - started),
                    clear_faults=early.faults_cleared,
                )
            )
    finally:
        display.close()
    _print_summary({**final, **extra}, time.monotonic() - started)


def _print_summary(counts: dict[str, Any], elapsed: float) -> None:
    from otahub.simulator.stats import summary

    sys.stdout.write(json.dumps(summary(counts, elapsed), indent=2) + "\n")
    sys.stdout.flush()


class _EarlySignals:
    """Stop (SIGINT/SIGTERM) and clear-faults (SIGUSR1) before the devices run.

    Registration can take a while; a stop then ends the run with a summary
    instead of killing it, and a SIGUSR1 is kept for when the devices start.
    """

    def __init__(self) -> None:
        self.stopped = False
        self.faults_cleared = False
        self._previous: dict[int, Any] = {}

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopped = True
        raise KeyboardInterrupt

    def _clear(self, signum: int, frame: FrameType | None) -> None:
        self.faults_cleared = True

    def __enter__(self) -> _EarlySignals:
        for signum, handler in (
            (signal.SIGINT, self._stop),
            (signal.SIGTERM, self._stop),
            (signal.SIGUSR1, self._clear),
        ):
            self._previous[signum] = signal.signal(signum, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
