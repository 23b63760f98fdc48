"""The hub's commands need the ``hub`` extra; a device's install (the agent and
the CLI) does not have it, and says so in one line instead of a traceback."""

from __future__ import annotations

import importlib.util

import typer

#: What the hub imports beyond the base install (pyproject.toml: the "hub" extra).
HUB_MODULES = (
    "fastapi",
    "uvicorn",
    "python_multipart",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "alembic",
    "argon2",
    "jinja2",
)
INSTALL_HINT = "pip install 'otahub[hub]'"


def missing_hub_modules() -> list[str]:
    return [name for name in HUB_MODULES if importlib.util.find_spec(name) is None]


def require_hub() -> None:
    """Exit with one line naming the install command when the hub is not installed."""
    missing = missing_hub_modules()
    if missing:
        typer.echo(
            f"otahub: the hub is not installed: {INSTALL_HINT} (missing: {', '.join(missing)})",
            err=True,
        )
        raise typer.Exit(1)
