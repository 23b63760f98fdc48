"""``otahub demo``: the whole system on one machine, end to end."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from otahub.cli.hub_extra import require_hub


def demo(
    image_size: Annotated[int, typer.Option(help="Size of the generated image, bytes.")] = (
        1024 * 1024
    ),
    version: Annotated[str, typer.Option(help="Version the devices are updated to.")] = "1.1.0",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the updates.")] = 180.0,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the work directory.")] = False,
) -> None:
    """Start a hub and one agent per dialect, update all four, show progress and a summary."""
    require_hub()
    from otahub.demo.runner import DemoFailed, DemoOptions, run_demo

    console = Console()
    try:
        run_demo(DemoOptions(image_size, version, timeout, keep), console)
    except DemoFailed as exc:
        console.print(f"[bold red]demo failed:[/bold red] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None
    console.print("[bold green]all four devices updated[/bold green]")
