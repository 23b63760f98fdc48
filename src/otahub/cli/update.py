"""``otahub update``: start, follow and cancel updates."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from otahub.cli.client import (
    DEFAULT_SERVER,
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
from otahub.cli.row_file import RowFileArgument, RowFileError, read_row_file
from otahub.cli.update_file import UPDATE_ROWS

app = typer.Typer(no_args_is_help=True, help="Updates of devices.")

MAX_PAGE = 1000  # the API's largest page

STATES = (
    "pending",
    "sent",
    "downloading",
    "downloaded",
    "verified",
    "installing",
    "succeeded",
    "failed",
    "canceled",
)


@app.command()
def start(
    device: Annotated[str, typer.Option(help="Device name.", show_default=False)],
    title: Annotated[str, typer.Option(help="Package title.", show_default=False)],
    version: Annotated[str, typer.Option(help="Package version.", show_default=False)],
    replace: Annotated[
        bool, typer.Option("--replace", help="Cancel the device's active update first.")
    ] = False,
    mode: Annotated[
        str,
        typer.Option(help="push: the hub sends it; on-request: offered when the device asks."),
    ] = "push",
    force: Annotated[
        bool,
        typer.Option("--force", help="Start even if the device has not announced the capability."),
    ] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Update DEVICE to the package TITLE VERSION."""
    body = {
        "device": device,
        "title": title,
        "version": version,
        "replace": replace,
        "mode": mode,
        "force": force,
    }
    with connect(server, token) as client:
        update = client.post("/updates", body)
        # the answer is the update as created; the driver may have sent it since
        update = client.get(f"/updates/{update['id']}")
        waiting = None
        if update["state"] == "pending":
            waiting = waiting_for(update, client.get(f"/devices/{quote(device, safe='')}"))
    if json:
        print_json(update)
        return
    out.print(
        f"update {update['id']} started: {update['device']} -> "
        f"{update['title']} {update['version']} ({update['state']})"
    )
    if waiting is not None:
        out.print(f"pending: waiting for {waiting}")
    out.print(f"follow it with: otahub update show {update['id']}")


@app.command("start-many")
def start_many(
    file: RowFileArgument,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Start every update of a file at once; each row is started or refused alone.

    Columns / keys: device, title, version, mode (push or on-request), force (true or
    false), timeout (seconds). The rows go to the hub in one request (at most 10,000);
    every refused row is listed with its line and why (exit status 1).
    """
    try:
        found = read_row_file(file, UPDATE_ROWS)
    except RowFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from None
    refused = list(found.refused)
    started: list[dict[str, Any]] = []
    if found.rows:
        with connect(server, token) as client:
            response = client.send("POST", "/updates/batch", json=found.rows)
            if response.status_code >= 400:
                raise CliError(problem_text(response))
            body = response.json()
        for item in body["items"]:
            line = found.lines[item["row"] - 1]
            if item["update"] is not None:
                started.append({**item["update"], "line": line})
            else:
                refused.append((line, item["device"], item["problem"]["detail"]))
    if json:
        print_json({"started": started, "refused": [list(r) for r in sorted(refused)]})
    else:
        out.print(f"started {len(started)} update(s) from {file.name}")
    if refused:
        refused.sort()
        err.print(f"{len(refused)} row(s) of {file.name} refused:", markup=False)
        for line, device, why in refused:
            err.print(f"  line {line}{f' ({device})' if device else ''}: {why}", markup=False)
        raise typer.Exit(1)


def waiting_for(update: dict[str, Any], device: dict[str, Any]) -> str:
    """What a pending update waits for, from what the hub knows of its device."""
    name = device["name"]
    if update.get("mode") == "on-request":
        return f"{name} to ask for it (on-request: the device fetches updates itself)"
    if not device.get("online"):
        return f"{name} to come online; it is sent when the device connects"
    reported = device.get("software" if update.get("kind") == "software" else "firmware") or {}
    if not reported.get("version"):
        return f"{name} to report the {update.get('kind', 'firmware')} version it runs"
    return f"the hub to send it to {name} ({update['dialect']} devices are told in turn)"


@app.command("list")
def list_(
    device: Annotated[str | None, typer.Option(help="Only this device.")] = None,
    state: Annotated[str | None, typer.Option(help=", ".join(STATES))] = None,
    limit: Annotated[
        int, typer.Option(help=f"Updates per page (at most {MAX_PAGE}).", min=1, max=MAX_PAGE)
    ] = 100,
    offset: Annotated[int, typer.Option(help="Updates to skip (the next page).", min=0)] = 0,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """List updates, newest first, a page at a time."""
    with connect(server, token) as client:
        updates = client.get("/updates", device=device, state=state, limit=limit, offset=offset)
    if json:
        print_json(updates)
        return
    if not updates:
        out.print("no updates" if offset == 0 else f"no updates after the first {offset}")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("ID", "DEVICE", "TITLE", "VERSION", "STATE", "PROGRESS", "REASON", "UPDATED"):
        table.add_column(column, justify="right" if column in ("ID", "PROGRESS") else "left")
    for u in updates:
        table.add_row(
            str(u["id"]),
            u["device"],
            u["title"],
            u["version"],
            u["state"],
            _percent(u["progress"]),
            dash(u["reason"]),
            when(u["updated_at"]),
        )
    out.print(table)
    if len(updates) == limit:
        out.print(f"next page: --offset {offset + limit}")


@app.command()
def show(
    update_id: Annotated[int, typer.Argument(metavar="ID", help="Update id.", show_default=False)],
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """One update with its transitions."""
    with connect(server, token) as client:
        update = client.get(f"/updates/{update_id}")
    if json:
        print_json(update)
        return
    _print_update(update)


@app.command()
def cancel(
    update_id: Annotated[int, typer.Argument(metavar="ID", help="Update id.", show_default=False)],
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Cancel an unfinished update."""
    with connect(server, token) as client:
        update = client.post(f"/updates/{update_id}/cancel")
    if json:
        print_json(update)
        return
    out.print(f"update {update['id']} canceled")


def _percent(value: int | None) -> str:
    return "-" if value is None else f"{value}%"


def _print_update(u: dict[str, Any]) -> None:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for label, value in (
        ("update", str(u["id"])),
        ("device", f"{u['device']} ({u['dialect']})"),
        ("package", f"{u['title']} {u['version']} ({u['kind']})"),
        ("state", u["state"]),
        ("progress", _percent(u["progress"])),
        ("reason", dash(u["reason"])),
        ("code", dash(u["code"])),
        ("created", when(u["created_at"])),
        ("finished", when(u["finished_at"])),
    ):
        facts.add_row(label, value)
    out.print(facts)
    transitions = u.get("transitions") or []
    if transitions:
        table = Table(show_edge=False, header_style="bold", title_justify="left")
        for column in ("AT", "FROM", "TO", "PROGRESS", "SOURCE", "REASON"):
            table.add_column(column)
        for t in transitions:
            table.add_row(
                when(t["at"]),
                dash(t["from_state"]),
                t["to_state"],
                _percent(t["progress"]),
                t["source"],
                dash(t["reason"]),
            )
        out.print()
        out.print(table)
