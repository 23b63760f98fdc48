"""``otahub keys``: the signing keys of a repository (TUF roles)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from otahub.cli.client import DEFAULT_SERVER, Server, Token, connect, fail, out
from otahub.signing.keydir import current_root, init_keydir, renew_root, rotate, signer
from otahub.signing.keys import (
    ONLINE_DIR,
    PASSPHRASE_ENV,
    ROLES,
    KeyFileError,
    is_encrypted,
    key_path,
)
from otahub.signing.metadata import MetadataError, sign, to_bytes, utcnow
from otahub.signing.publish import resigned_targets, verified_targets

app = typer.Typer(no_args_is_help=True, help="Signing keys for signed updates (TUF).")

KeyDir = Annotated[Path, typer.Argument(help="The key directory.", show_default=False)]


def passphrase_from_env() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def ask_passphrase(confirm: bool) -> bytes:
    env = passphrase_from_env()
    if env is not None:
        return env
    value: str = typer.prompt("passphrase", hide_input=True, confirmation_prompt=confirm)
    return value.encode()


@app.command()
def init(
    keydir: KeyDir,
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase",
            help=f"Encrypt the offline keys (root, targets) with a passphrase "
            f"(asked for, or ${PASSPHRASE_ENV}).",
        ),
    ] = False,
) -> None:
    """Create a repository's keys: offline root and targets, online snapshot and timestamp."""
    secret = ask_passphrase(confirm=True) if passphrase else None
    try:
        root = init_keydir(keydir, utcnow(), secret)
    except KeyFileError as exc:
        fail(str(exc))
    out.print(
        f"created the keys of root version {root.signed.version} in {keydir}\n"
        f"  {keydir / 'root.json'}: the trusted root, install it on devices "
        "(\\[signing] root in agent.toml)\n"
        f"  {keydir / 'root.pem'}, {keydir / 'targets.pem'}: offline keys, keep them "
        "off the hub\n"
        f"  {keydir / ONLINE_DIR}/: give it to the hub (otahub serve --signing-keys)"
    )


@app.command("rotate")
def rotate_key(
    keydir: KeyDir,
    role: Annotated[str, typer.Option(help=f"The role whose key is replaced: {', '.join(ROLES)}.")],
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Only write the new root; do not send it to the hub (online roles)."
        ),
    ] = False,
) -> None:
    """Replace a role's key (rotation or revocation) with a new root signed by the old one.

    A new targets key is sent to the hub with the current targets metadata
    signed again by it. New snapshot or timestamp keys are in KEYDIR/online/:
    copy that directory to the hub and restart it.
    """
    online_role = role in ("snapshot", "timestamp")
    secret = passphrase_from_env()
    if role in ("root", "targets") and secret is None and _encrypted(keydir, role):
        secret = ask_passphrase(confirm=False)
    if offline or online_role:
        try:
            new_root, _ = rotate(keydir, role, utcnow(), secret)
        except (KeyFileError, MetadataError) as exc:
            fail(str(exc))
        out.print(f"{role} key replaced: root version {new_root.signed.version} in {keydir}")
        out.print(f"copy {keydir / ONLINE_DIR}/ to the hub and restart it (--signing-keys)")
        return
    with connect(server, token) as client:
        try:
            # Checked before the rotation: only metadata the old key signed is carried over.
            current = verified_targets(client.raw("/signing/targets"), current_root(keydir).signed)
            new_root, new_signer = rotate(keydir, role, utcnow(), secret)
            # A new targets key signs the current targets again; a new root key signs roots only.
            targets = (
                json.loads(to_bytes(sign(resigned_targets(current, utcnow()), new_signer)))
                if role == "targets"
                else None
            )
        except (KeyFileError, MetadataError) as exc:
            fail(str(exc))
        body = {"root": json.loads(to_bytes(new_root)), "targets": targets}
        answer = client.post("/signing/root", body)
    out.print(
        f"{role} key replaced: root version {new_root.signed.version} in {keydir}; "
        f"the hub serves root version {answer['root_version']}"
    )


@app.command()
def renew(
    keydir: KeyDir,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Push the expiry of root and targets a year ahead (same keys), on the hub too.

    Devices refuse every update once either has expired; the hub renews only
    snapshot and timestamp, which it signs itself.
    """
    secret = passphrase_from_env()
    if secret is None and (_encrypted(keydir, "root") or _encrypted(keydir, "targets")):
        secret = ask_passphrase(confirm=False)
    with connect(server, token) as client:
        try:
            targets_signer = signer(keydir, "targets", secret)
            current = verified_targets(client.raw("/signing/targets"), current_root(keydir).signed)
            root = renew_root(keydir, utcnow(), secret)
            targets = sign(resigned_targets(current, utcnow()), targets_signer)
        except (KeyFileError, MetadataError) as exc:
            fail(str(exc))
        body = {"root": json.loads(to_bytes(root)), "targets": json.loads(to_bytes(targets))}
        answer = client.post("/signing/root", body)
    out.print(
        f"root version {root.signed.version} and targets version {targets.signed.version} "
        f"valid until {root.signed.expires:%Y-%m-%d}; the hub serves root version "
        f"{answer['root_version']}"
    )


def _encrypted(keydir: Path, role: str) -> bool:
    path = key_path(keydir, role)
    return path.exists() and is_encrypted(path)
