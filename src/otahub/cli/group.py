"""``otahub group``: static and dynamic device groups."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer
from rich.table import Table

from otahub.cli.client import DEFAULT_SERVER, Json, Server, Token, connect, out, print_json, when

app = typer.Typer(no_args_is_help=True, help="Device groups (static lists or dynamic filters).")


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Unique group name.", show_default=False)],
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="A dynamic group: the devices this filter selects whenever the group is used "
            "(e.g. 'site=berlin,dialect=thingsboard'; terms: dialect, device_type, version, "
            "sw_version, name=GLOB, online=true|false, any label: key=value, key!=value, key).",
            show_default=False,
        ),
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option(help="A static group: these devices, comma-separated.", show_default=False),
    ] = None,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Create a group from --filter (dynamic) or --devices (static)."""
    if (filter_ is None) == (devices is None):
        raise typer.BadParameter("give either --filter or --devices", param_hint="--filter")
    body: dict[str, object] = {"name": name}
    if filter_ is not None:
        body["filter"] = filter_
    else:
        assert devices is not None
        body["devices"] = [d.strip() for d in devices.split(",") if d.strip()]
    with connect(server, token) as client:
        group = client.post("/groups", body)
    if json:
        print_json(group)
        return
    out.print(f"created {group['kind']} group {group['name']} with {group['size']} device(s)")


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="The group.", show_default=False)],
    limit: Annotated[int, typer.Option(help="Members to list at most.", min=1)] = 100,
    offset: Annotated[int, typer.Option(help="Members to skip.", min=0)] = 0,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Show a group: its kind, filter, size and members (by device id)."""
    with connect(server, token) as client:
        group = client.get(f"/groups/{quote(name, safe='')}", limit=limit, offset=offset)
    if json:
        print_json(group)
        return
    rows = [
        ("name", group["name"]),
        ("kind", group["kind"]),
        ("filter", _filter(group)),
        ("devices", str(group["size"])),
        ("created", when(group["created_at"])),
    ]
    for label, value in rows:
        out.print(f"{label + ':':<9}{value}", highlight=False)
    members = group["members"]
    shown = f"{offset + 1}-{offset + len(members)} of {group['size']}" if members else "none"
    out.print(f"members ({shown}):", highlight=False)
    for member in members:
        out.print(f"  {member}", highlight=False)


@app.command("list")
def list_(server: Server = DEFAULT_SERVER, token: Token = None, json: Json = False) -> None:
    """List the groups with their sizes."""
    with connect(server, token) as client:
        groups = client.get("/groups")
    if json:
        print_json(groups)
        return
    if not groups:
        out.print("no groups")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("NAME", "KIND", "DEVICES", "FILTER", "CREATED"):
        table.add_column(column)
    for g in groups:
        table.add_row(g["name"], g["kind"], str(g["size"]), _filter(g), when(g["created_at"]))
    out.print(table)


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="The group.", show_default=False)],
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Delete a group; its devices stay."""
    with connect(server, token) as client:
        client.call("DELETE", f"/groups/{quote(name, safe='')}")
    out.print(f"deleted group {name}")


def _filter(group: dict[str, object]) -> str:
    if group["kind"] != "dynamic":
        return "-"
    return str(group["filter"]) or "(every device)"
