"""What the hub says once it is up: where to reach it, where its data and its
admin token are, and a warning for everything that lies open."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.engine import make_url

from otahub import mqtt
from otahub.hub.http.app import DOCS_URL
from otahub.hub.http.auth import TOKEN_FILE
from otahub.hub.settings import HubSettings, is_loopback_host

log = logging.getLogger("otahub.hub")


def _url(scheme: str, host: str, port: int, path: str = "") -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{path}"


def database_for_log(url: str) -> str:
    """The database URL without its password."""
    return make_url(url).render_as_string(hide_password=True)


def log_ready(settings: HubSettings, *, database_url: str, admin_app: FastAPI) -> None:
    """The start-up lines: every URL, the database, the data dir, the admin token."""
    host = settings.host
    log.info(
        "otahub ready: mqtt://%s:%d http://%s:%d data in %s (MQTT endpoint %s)",
        host,
        settings.mqtt_port,
        host,
        settings.http_port,
        settings.data_dir,
        "compiled" if mqtt.compiled() else "pure Python",
    )
    log.info("MQTT: %s", _url("mqtt", host, settings.mqtt_port))
    if settings.mqtt_tls_port is not None:
        log.info("MQTT TLS: %s", _url("mqtts", host, settings.mqtt_tls_port))
    log.info(
        "HTTP: %s (devices download from %s)",
        _url("http", host, settings.http_port),
        settings.public_base_url(),
    )
    admin_host, admin_port = host, settings.http_port
    if settings.admin_port is not None:
        admin_host, admin_port = settings.admin_host or "127.0.0.1", settings.admin_port
        log.info(
            "admin API on %s only (not on the HTTP port devices use)",
            _url("http", admin_host, admin_port),
        )
    paths = {getattr(route, "path", None) for route in admin_app.routes}
    if "/" in paths:
        log.info("dashboard: %s", _url("http", admin_host, admin_port, "/"))
    if DOCS_URL in paths:  # served from the installed package, not FastAPI's docs_url
        log.info("API docs: %s", _url("http", admin_host, admin_port, DOCS_URL))
    log.info("database: %s", database_for_log(database_url))
    log.info("data dir: %s", settings.data_dir.resolve())
    if settings.no_auth:
        log.warning("--no-auth: the admin API answers anyone, without a token")
    elif settings.admin_token:
        log.info("admin token: as configured (admin_token / OTAHUB_ADMIN_TOKEN)")
    else:
        log.info("admin token: in %s", (Path(settings.data_dir) / TOKEN_FILE).resolve())
    listeners = [("MQTT and HTTP", host)]
    if settings.admin_port is not None:
        listeners.append(("the admin API", admin_host))
    exposed = [f"{name} on {listen}" for name, listen in listeners if not is_loopback_host(listen)]
    if exposed:
        log.warning(
            "listening beyond loopback: %s; reachable from other machines", ", ".join(exposed)
        )
    stale = mqtt.stale_compiled_modules()
    if stale:
        log.warning(
            "otahub.mqtt modules %s changed after they were compiled and run as built; "
            "reinstall otahub to rebuild them",
            ", ".join(stale),
        )
