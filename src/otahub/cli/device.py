"""``otahub device``: register, list and remove devices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from otahub.cli.client import (
    DEFAULT_SERVER,
    AdminToken,
    CliError,
    Json,
    Server,
    Token,
    connect,
    dash,
    err,
    out,
    print_json,
    problem_text,
    when,
)
from otahub.cli.device_import import DEVICE_ROWS
from otahub.cli.row_file import RowFileArgument, RowFileError, read_row_file
from otahub.hub.device_auth.password_rules import generate_password as new_password

app = typer.Typer(no_args_is_help=True, help="The device registry.")

DIALECTS = ("thin-edge", "tedge-legacy", "thingsboard", "enos")


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Unique device name.", show_default=False)],
    dialect: Annotated[str, typer.Option(help=", ".join(DIALECTS), show_default=False)],
    token: Annotated[
        str | None, typer.Option("--token", help="ThingsBoard access token (thingsboard).")
    ] = None,
    product_key: Annotated[str | None, typer.Option(help="EnOS product key (enos).")] = None,
    device_key: Annotated[str | None, typer.Option(help="EnOS device key (enos).")] = None,
    secret: Annotated[str | None, typer.Option(help="EnOS device secret (enos).")] = None,
    device_type: Annotated[
        str | None, typer.Option(help="Device type (ThingsBoard profile / EnOS product).")
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the device's MQTT password alone (thin-edge, tedge-legacy; "
            "the user name is the device name).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    generate_password: Annotated[
        bool,
        typer.Option(
            "--generate-password",
            help="Generate the device's MQTT password and print it once (thin-edge, tedge-legacy).",
        ),
    ] = False,
    gateway: Annotated[
        bool,
        typer.Option(
            "--gateway",
            help="A thin-edge gateway: the children it registers belong to it and it may "
            "use their topics.",
        ),
    ] = False,
    cert_file: Annotated[
        Path | None,
        typer.Option(
            help="The device's X.509 client certificate (PEM), for the MQTT TLS listener "
            "(any dialect; replaces the ThingsBoard token / EnOS secret).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="A label key=value (repeatable).", show_default=False),
    ] = None,
    server: Server = DEFAULT_SERVER,
    admin_token: AdminToken = None,
    json: Json = False,
) -> None:
    """Register a device. Here --token is the device's ThingsBoard token; see --admin-token."""
    password = _password(password_file, generate_password)
    labels = _pairs(label or [], "--label")
    body: dict[str, Any] = {
        "name": name,
        "dialect": dialect,
        "device_type": device_type,
        "token": token,
        "product_key": product_key,
        "device_key": device_key,
        "secret": secret,
        "password": password,
        "gateway": gateway or None,
        "certificate": None if cert_file is None else _read_text(cert_file, "--cert-file"),
        "labels": labels or None,
    }
    with connect(server, admin_token) as client:
        device = client.post("/devices", {k: v for k, v in body.items() if v is not None})
    if generate_password:
        device = {**device, "password": password}  # shown this once: only its hash is kept
    if json:
        print_json(device)
        return
    kind = "gateway" if device.get("gateway") else "device"
    out.print(f"added {device['dialect']} {kind} {device['name']} (id {device['id']})")
    if generate_password:
        out.print(f"MQTT user name: {device['name']}", highlight=False)
        out.print(f"MQTT password:  {password}  (shown once, stored hashed)", highlight=False)


@app.command("import")
def import_(
    file: RowFileArgument,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row; register nothing.")
    ] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Register every device of a file, or none: one refused row refuses the file.

    Columns / keys: name, dialect, token, product_key, device_key, secret, password,
    device_type, gateway, labels (CSV: k=v;k=v, JSON Lines: an object), certificate.
    Every refused row is listed with its line and why. The file goes to the hub as one
    batch, in one request.
    """
    try:
        found = read_row_file(file, DEVICE_ROWS)
    except RowFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from None
    total = len(found.rows) + len(found.refused)
    refused = list(found.refused)
    with connect(server, token) as client:
        # rows the CLI could not read refuse the file; the hub still checks the others
        check = dry_run or bool(refused)
        response = client.send(
            "POST", "/devices/batch", json=found.rows, params={"dry_run": "true"} if check else {}
        )
        body = _json_or_none(response)
        if response.status_code == 422 and isinstance(body, dict) and "refused" in body:
            refused += [_refused_line(r, found.lines) for r in body["refused"]]
        elif response.status_code >= 400:
            raise CliError(problem_text(response))
    if refused:
        refused.sort()
        err.print(
            f"error: {len(refused)} of {total} device(s) in {file.name} refused; "
            "nothing was registered:",
            markup=False,
        )
        for line, name, why in refused:
            err.print(f"  line {line}{f' ({name})' if name else ''}: {why}", markup=False)
        raise typer.Exit(1)
    assert isinstance(body, dict)
    if json:
        print_json(body)
    elif dry_run:
        out.print(f"checked {total} device(s) in {file.name}: all would be registered")
    else:
        out.print(f"imported {body['created']} device(s) from {file.name}")


def _refused_line(refusal: dict[str, Any], lines: list[int]) -> tuple[int, str | None, str]:
    """A row the hub refused, in the file's terms: its line, and lines for rows."""
    reason = str(refusal.get("reason"))
    same_as = refusal.get("same_as")
    if isinstance(same_as, int):
        reason = reason.replace(f"row {same_as}", f"line {lines[same_as - 1]}")
    return lines[refusal["row"] - 1], refusal.get("name"), reason


def _json_or_none(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@app.command("set-password")
def set_password(
    name: Annotated[str, typer.Argument(help="The device.", show_default=False)],
    password_file: Annotated[
        Path | None,
        typer.Option(help="File holding the new MQTT password alone.", exists=True, dir_okay=False),
    ] = None,
    generate_password: Annotated[
        bool,
        typer.Option("--generate-password", help="Generate the new password; printed once."),
    ] = False,
    clear: Annotated[
        bool,
        typer.Option("--clear", help="Remove the password: the device connects anonymously."),
    ] = False,
    server: Server = DEFAULT_SERVER,
    admin_token: AdminToken = None,
) -> None:
    """Set, change or remove a thin-edge or tedge-legacy device's MQTT password.

    The device's connected sessions are closed: it logs in again with the new one.
    """
    password = _password(password_file, generate_password)
    if (password is None) != clear:
        raise typer.BadParameter(
            "give one of --password-file, --generate-password or --clear",
            param_hint="--password-file",
        )
    with connect(server, admin_token) as client:
        client.call("PUT", f"/devices/{quote(name, safe='')}/password", json={"password": password})
    if clear:
        out.print(f"removed the password of {name}")
        return
    out.print(f"set the password of {name}")
    if generate_password:
        out.print(f"MQTT password:  {password}  (shown once, stored hashed)", highlight=False)


@app.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="The device.", show_default=False)],
    device_type: Annotated[
        str | None, typer.Option(help="New device type (ThingsBoard profile / EnOS product).")
    ] = None,
    clear_device_type: Annotated[
        bool, typer.Option("--clear-device-type", help="Remove the device type.")
    ] = False,
    token: Annotated[
        str | None, typer.Option("--token", help="New ThingsBoard access token (thingsboard).")
    ] = None,
    product_key: Annotated[str | None, typer.Option(help="New EnOS product key (enos).")] = None,
    device_key: Annotated[str | None, typer.Option(help="New EnOS device key (enos).")] = None,
    secret: Annotated[str | None, typer.Option(help="New EnOS device secret (enos).")] = None,
    cert_file: Annotated[
        Path | None,
        typer.Option(
            help="New X.509 client certificate (PEM) for the MQTT TLS listener.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    clear_cert: Annotated[
        bool, typer.Option("--clear-cert", help="Remove the device's client certificate.")
    ] = False,
    server: Server = DEFAULT_SERVER,
    admin_token: AdminToken = None,
    json: Json = False,
) -> None:
    """Change a device's type or credentials. Here --token is the ThingsBoard token.

    When credentials change, the device's connected sessions are closed: it
    logs in again with the new ones. For MQTT passwords see set-password.
    """
    if device_type is not None and clear_device_type:
        raise typer.BadParameter("give --device-type or --clear-device-type, not both")
    if cert_file is not None and clear_cert:
        raise typer.BadParameter("give --cert-file or --clear-cert, not both")
    body: dict[str, Any] = {
        k: v
        for k, v in {
            "device_type": device_type,
            "token": token,
            "product_key": product_key,
            "device_key": device_key,
            "secret": secret,
            "certificate": None if cert_file is None else _read_text(cert_file, "--cert-file"),
        }.items()
        if v is not None
    }
    if clear_device_type:
        body["device_type"] = None
    if clear_cert:
        body["certificate"] = None
    if not body:
        raise typer.BadParameter("nothing to change: give at least one option")
    with connect(server, admin_token) as client:
        device = client.call("PATCH", f"/devices/{quote(name, safe='')}", json=body)
    if json:
        print_json(device)
        return
    out.print(f"changed {', '.join(sorted(body))} of device {name}")


def _password(password_file: Path | None, generate: bool) -> str | None:
    if password_file is not None and generate:
        raise typer.BadParameter(
            "give either --password-file or --generate-password", param_hint="--password-file"
        )
    if generate:
        return new_password()
    if password_file is None:
        return None
    # the file holds the password alone; the line break an editor adds is not part of it
    return _read_text(password_file, "--password-file").rstrip("\r\n")


def _read_text(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


@app.command()
def remove(
    name: Annotated[str, typer.Argument(help="The device to delete.", show_default=False)],
    force: Annotated[
        bool, typer.Option("--force", help="Cancel its active updates first.")
    ] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Delete a device. Refused while it has active updates, unless --force cancels them.

    Its finished updates stay in the update history.
    """
    with connect(server, token) as client:
        client.call(
            "DELETE", f"/devices/{quote(name, safe='')}", params={"force": "true"} if force else {}
        )
    out.print(f"removed device {name}")


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="The device's name.", show_default=False)],
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Show a device: its dialect, credentials set, gateway or owner, and what it runs."""
    with connect(server, token) as client:
        device = client.get(f"/devices/{quote(name, safe='')}")
    if json:
        print_json(device)
        return
    rows = [
        ("name", device["name"]),
        ("dialect", device["dialect"]),
        ("device type", dash(device["device_type"])),
        ("password", "set" if device["has_password"] else "none"),
        *_credentials(device),
        ("gateway", "yes" if device["gateway"] else "no"),
        ("owner", dash(device["owner"])),
        ("labels", labels_text(device["labels"])),
        ("firmware", _reported(device["firmware"])),
        ("software", _reported(device["software"])),
        ("online", "yes" if device["online"] else "no"),
        ("last seen", when(device["last_seen_at"])),
    ]
    for label, value in rows:
        out.print(f"{label + ':':<13}{value}", highlight=False)


@app.command()
def label(
    name: Annotated[str, typer.Argument(help="The device.", show_default=False)],
    pairs: Annotated[
        list[str] | None,
        typer.Argument(help="Labels to set, key=value.", show_default=False),
    ] = None,
    remove: Annotated[
        list[str] | None,
        typer.Option("--remove", help="A label key to remove (repeatable).", show_default=False),
    ] = None,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Set labels (key=value) on a device and remove others (--remove key); the rest stay."""
    to_set = _pairs(pairs or [], "PAIRS")
    if not to_set and not remove:
        raise typer.BadParameter("give labels to set (key=value) or --remove KEY")
    with connect(server, token) as client:
        device = client.call(
            "PATCH",
            f"/devices/{quote(name, safe='')}/labels",
            json={"set": to_set, "remove": remove or []},
        )
    if json:
        print_json(device)
        return
    out.print(f"{device['name']}: {labels_text(device['labels'])}", highlight=False)


def _pairs(pairs: list[str], hint: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint=hint)
        labels[key.strip()] = value.strip()
    return labels


def labels_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


@app.command("list")
def list_(
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="Only the devices this filter selects, e.g. 'site=berlin,dialect=thingsboard'.",
            show_default=False,
        ),
    ] = None,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """List the devices."""
    with connect(server, token) as client:
        devices = client.get("/devices", filter=filter_)
    if json:
        print_json(devices)
        return
    if not devices:
        out.print("no devices")
        return
    table = Table(show_edge=False, header_style="bold")
    columns = ("NAME", "DIALECT", "DEVICE TYPE", "FIRMWARE", "SOFTWARE", "ONLINE", "LAST SEEN")
    for column in (*columns, "LABELS"):
        table.add_column(column)
    for d in devices:
        table.add_row(
            d["name"],
            d["dialect"],
            dash(d["device_type"]),
            _reported(d["firmware"]),
            _reported(d["software"]),
            "yes" if d["online"] else "no",
            when(d["last_seen_at"]),
            labels_text(d["labels"]),
        )
    out.print(table)


def _credentials(device: dict[str, Any]) -> list[tuple[str, str]]:
    """The dialect's credentials as ``show`` prints them (secrets only as set or not)."""
    rows: list[tuple[str, str]] = []
    if device["dialect"] == "thingsboard":
        rows.append(("token", dash(device["token"])))
    if device["dialect"] == "enos":
        rows += [
            ("product key", dash(device["product_key"])),
            ("device key", dash(device["device_key"])),
            ("secret", "set" if device["has_secret"] else "none"),
        ]
    certificate = device.get("certificate_sha256")
    rows.append(("certificate", f"sha256 {certificate}" if certificate else "none"))
    return rows


def _reported(value: dict[str, Any]) -> str:
    parts = [p for p in (value.get("title"), value.get("version")) if p]
    return " ".join(parts) or "-"
