"""``otahub device-type``: a package for every device of a type (ThingsBoard's device profile)."""

from __future__ import annotations

from typing import Annotated

import typer

from otahub.cli.client import DEFAULT_SERVER, Json, Server, Token, connect, out, print_json

app = typer.Typer(no_args_is_help=True, help="Device-type assignments (ThingsBoard profiles).")


@app.command()
def assign(
    device_type: Annotated[str, typer.Argument(help="Device type.", show_default=False)],
    title: Annotated[str, typer.Argument(help="Package title.", show_default=False)],
    version: Annotated[str, typer.Argument(help="Package version.", show_default=False)],
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Assign a package to every device of a type; a device's own update overrides it."""
    with connect(server, token) as client:
        result = client.call(
            "PUT",
            f"/device-types/{device_type}/assignment",
            json={"title": title, "version": version},
        )
    if json:
        print_json(result)
        return
    out.print(f"device type {device_type}: {result['kind']} {result['title']} {result['version']}")


@app.command()
def unassign(
    device_type: Annotated[str, typer.Argument(help="Device type.", show_default=False)],
    kind: Annotated[str, typer.Option(help="firmware or software.")] = "firmware",
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Remove a type's package."""
    with connect(server, token) as client:
        client.call("DELETE", f"/device-types/{device_type}/assignment", params={"kind": kind})
    out.print(f"device type {device_type}: {kind} unassigned")


@app.command("list")
def list_(server: Server = DEFAULT_SERVER, token: Token = None, json: Json = False) -> None:
    """List the device-type assignments."""
    with connect(server, token) as client:
        rows = client.get("/device-types/assignments")
    if json:
        print_json(rows)
        return
    if not rows:
        out.print("no device-type assignments")
    for row in rows:
        out.print(f"{row['device_type']}\t{row['kind']}\t{row['title']}\t{row['version']}")
