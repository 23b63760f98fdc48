"""``otahub firmware verify``: check the stored packages against their SHA-256."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from otahub.cli.client import (
    DEFAULT_SERVER,
    Client,
    CliError,
    Json,
    Server,
    Token,
    connect,
    fail,
    human_size,
    out,
    print_json,
)


def package_ids(client: Client, refs: list[str]) -> list[int]:
    """``ID`` or ``TITLE VERSION`` references, in order, as package ids."""
    ids: list[int] = []
    rest = list(refs)
    while rest:
        ref = rest.pop(0)
        if ref.isdigit():
            ids.append(int(ref))
            continue
        if not rest:
            raise CliError(f"{ref!r} is not a package id, and a title needs a VERSION after it")
        version = rest.pop(0)
        found = [p for p in client.get("/firmware", title=ref) if p["version"] == version]
        if not found:
            raise CliError(f"no firmware package {ref} {version}")
        ids.append(int(found[0]["id"]))
    return ids


def verify(
    packages: Annotated[
        list[str] | None,
        typer.Argument(
            help="Package ids, or TITLE VERSION pairs.",
            metavar="[ID | TITLE VERSION]...",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every package in the store.")] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Read the stored packages again and compare them with their SHA-256.

    Exits 1 when one is corrupt or missing; the hub no longer serves a corrupt
    package and fails its active updates.
    """
    if all_ == bool(packages):
        fail("give --all or the packages to verify (ID, or TITLE VERSION)")
    with connect(server, token) as client:
        body: dict[str, Any] = (
            {"all": True} if all_ else {"ids": package_ids(client, packages or [])}
        )
        results = client.post("/firmware/verify", body)
    bad = [r for r in results if r["status"] != "ok"]
    if json:
        print_json(results)
    elif not results:
        out.print("no firmware packages")
    else:
        _table(results)
        if bad:
            out.print(f"{len(bad)} of {len(results)} package(s) corrupt or missing")
        else:
            out.print(f"all {len(results)} package(s) match their SHA-256")
    if bad:
        raise typer.Exit(1)


def _table(results: list[dict[str, Any]]) -> None:
    table = Table(show_edge=False, header_style="bold")
    for column in ("ID", "TITLE", "VERSION", "SIZE", "STATUS", "SHA256", "STORED BYTES HASH TO"):
        table.add_column(column, justify="right" if column in ("ID", "SIZE") else "left")
    for r in results:
        actual = r["actual_sha256"]
        table.add_row(
            str(r["id"]),
            r["title"],
            r["version"],
            human_size(r["size"]),
            r["status"].upper() if r["status"] != "ok" else "ok",
            r["sha256"],
            "-" if r["status"] == "ok" else actual or "(no file)",
        )
    out.print(table)
