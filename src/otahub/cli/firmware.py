"""``otahub firmware``: upload and list firmware packages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from otahub.cli.client import (
    DEFAULT_SERVER,
    Client,
    Json,
    Server,
    Token,
    connect,
    dash,
    err,
    fail,
    human_size,
    out,
    print_json,
    when,
)
from otahub.cli.firmware_verify import verify
from otahub.cli.keys import ask_passphrase
from otahub.signing.keydir import current_root
from otahub.signing.keydir import signer as keydir_signer
from otahub.signing.keys import KeyFileError, is_encrypted, key_path
from otahub.signing.metadata import MetadataError, utcnow
from otahub.signing.publish import sign_package, verified_targets

app = typer.Typer(no_args_is_help=True, help="Firmware and software packages.")


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(help="The firmware file.", show_default=False)],
    title: Annotated[str, typer.Option(help="Package title.", show_default=False)],
    version: Annotated[str, typer.Option(help="Package version.", show_default=False)],
    kind: Annotated[str, typer.Option(help="firmware or software.")] = "firmware",
    device_type: Annotated[
        str | None, typer.Option(help="Device type (ThingsBoard profile / EnOS product).")
    ] = None,
    checksum_algorithm: Annotated[
        str | None,
        typer.Option(
            "--checksum-algorithm",
            metavar="ALG",
            help="The checksum ThingsBoard devices verify the package with: MD5, SHA256 "
            "(default), SHA384, SHA512, CRC32, MURMUR3_32 or MURMUR3_128. A device's own "
            "setting overrides it.",
            show_default=False,
        ),
    ] = None,
    sign: Annotated[
        Path | None,
        typer.Option(
            "--sign",
            metavar="KEYDIR",
            help="Sign the package with the targets key in KEYDIR (otahub keys init) and "
            "upload the signed metadata with it.",
            show_default=False,
        ),
    ] = None,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """Upload FILE as a package, with a progress bar; signed with --sign."""
    if kind not in ("firmware", "software"):
        fail(f"--kind must be firmware or software, not {kind!r}")
    if not file.is_file():
        fail(f"{file}: no such file")
    size = file.stat().st_size
    params = {"title": title, "version": version, "kind": kind, "filename": file.name}
    if device_type:
        params["device_type"] = device_type
    if checksum_algorithm:
        params["checksum_algorithm"] = checksum_algorithm
    with connect(server, token) as client:
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        targets = (
            _signed_targets(client, sign, file, title, version, kind, device_type)
            if sign is not None
            else None
        )
        with progress:
            task = progress.add_task(f"uploading {file.name}", total=size)
            if targets is None:
                package = client.upload(file, params, lambda n: progress.advance(task, n))
            else:
                package = client.upload_signed(
                    file, params, targets, lambda n: progress.advance(task, n)
                )
    if json:
        print_json(package)
        return
    out.print(
        f"uploaded {package['title']} {package['version']} as firmware package "
        f"{package['id']} ({human_size(package['size'])}, sha256 {package['sha256']}, "
        f"checksum algorithm {package['checksum_algorithm']})"
        + (f", signed as {title}/{version}" if sign is not None else "")
    )


def _signed_targets(
    client: Client,
    keydir: Path,
    file: Path,
    title: str,
    version: str,
    kind: str,
    device_type: str | None,
) -> bytes:
    """The hub's targets metadata plus FILE, signed here with KEYDIR's targets key."""
    path = key_path(keydir, "targets")
    secret = ask_passphrase(confirm=False) if path.exists() and is_encrypted(path) else None
    try:
        signer = keydir_signer(keydir, "targets", secret)
        current = verified_targets(client.raw("/signing/targets"), current_root(keydir).signed)
        return sign_package(
            current,
            file,
            title=title,
            version=version,
            kind=kind,
            device_type=device_type,
            signer=signer,
            now=utcnow(),
        )
    except (KeyFileError, MetadataError) as exc:
        fail(str(exc))


@app.command("list")
def list_(
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """List the packages."""
    with connect(server, token) as client:
        packages = client.get("/firmware")
    if json:
        print_json(packages)
        return
    if not packages:
        out.print("no firmware packages")
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("ID", "TITLE", "VERSION", "KIND", "DEVICE TYPE", "SIZE", "SHA256", "CREATED"):
        table.add_column(column, justify="right" if column in ("ID", "SIZE") else "left")
    for p in packages:
        table.add_row(
            str(p["id"]),
            p["title"],
            p["version"],
            p["kind"],
            dash(p["device_type"]),
            human_size(p["size"]),
            p["sha256"][:12],
            when(p["created_at"]),
        )
    out.print(table)


@app.command()
def show(
    package_id: Annotated[
        int, typer.Argument(metavar="ID", help="Package id.", show_default=False)
    ],
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    json: Json = False,
) -> None:
    """One package: its size, checksums and where devices download it."""
    with connect(server, token) as client:
        package = client.get(f"/firmware/{package_id}")
    if json:
        print_json(package)
        return
    rows = [
        ("id", str(package["id"])),
        ("title", package["title"]),
        ("version", package["version"]),
        ("kind", package["kind"]),
        ("device type", dash(package["device_type"])),
        ("file name", dash(package["filename"])),
        ("content type", package["content_type"]),
        ("size", f"{human_size(package['size'])} ({package['size']} bytes)"),
        ("sha256", package["sha256"]),
        ("checksum alg", package["checksum_algorithm"]),
        ("imported from", dash(package["source_url"])),
        ("created", when(package["created_at"])),
        ("content", package["content_url"]),
    ]
    for label, value in rows:
        out.print(f"{label + ':':<15}{value}", highlight=False)


@app.command()
def delete(
    package_id: Annotated[
        int, typer.Argument(metavar="ID", help="Package id.", show_default=False)
    ],
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Delete a package; refused while an active update uses it."""
    with connect(server, token) as client:
        client.call("DELETE", f"/firmware/{package_id}")
    out.print(f"deleted firmware package {package_id}")


app.command()(verify)
