"""The ``otahub`` command line."""

from __future__ import annotations

import typer

from otahub.cli import device, device_type, firmware, flag_help, group, keys, rollout, update
from otahub.cli.agent import agent
from otahub.cli.backup import backup, restore
from otahub.cli.demo import demo
from otahub.cli.serve import serve
from otahub.cli.simulate import simulate

flag_help.install()
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="otahub: over-the-air firmware and software updates for MQTT-connected devices.",
)
app.command()(serve)
app.command()(agent)
app.command()(demo)
app.command()(backup)
app.command()(restore)
app.command()(simulate)
app.add_typer(firmware.app, name="firmware")
app.add_typer(device.app, name="device")
app.add_typer(device_type.app, name="device-type")
app.add_typer(update.app, name="update")
app.add_typer(keys.app, name="keys")
app.add_typer(group.app, name="group")
app.add_typer(rollout.app, name="rollout")


@app.callback()
def _root() -> None:
    """otahub: over-the-air updates for MQTT-connected devices."""


def main() -> None:
    app()
