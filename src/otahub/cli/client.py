"""The small REST client behind ``otahub firmware|device|update`` and their shared options."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console

DEFAULT_SERVER = "http://127.0.0.1:8000"
TOKEN_ENV = "OTAHUB_TOKEN"
TOKEN_FILE = Path("otahub-data") / "admin.token"

Server = Annotated[str, typer.Option("--server", envvar="OTAHUB_SERVER", help="Hub base URL.")]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        "--admin-token",
        help=f"Admin token; else ${TOKEN_ENV}, else ./{TOKEN_FILE}.",
        show_default=False,
    ),
]
AdminToken = Annotated[
    str | None,
    typer.Option(
        "--admin-token",
        help=f"Admin token; else ${TOKEN_ENV}, else ./{TOKEN_FILE}.",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

# Piped output keeps whole rows on one line instead of wrapping at 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(Exception):
    """Something to tell the user in one line before exiting non-zero."""


def resolve_token(token: str | None) -> str | None:
    if token:
        return token.strip()
    if env := os.environ.get(TOKEN_ENV, "").strip():
        return env
    with contextlib.suppress(OSError):
        return TOKEN_FILE.read_text().strip() or None
    return None


class Client:
    def __init__(self, server: str, token: str | None) -> None:
        base = server.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise CliError(f"--server must be an http(s) URL, not {server!r}")
        headers = {"Accept": "application/json"}
        if resolved := resolve_token(token):
            headers["Authorization"] = f"Bearer {resolved}"
        self.server = base
        self._http = httpx.Client(
            base_url=f"{base}/api/v1",
            headers=headers,
            timeout=httpx.Timeout(30.0, read=600.0),
        )

    def close(self) -> None:
        self._http.close()

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The hub's answer whatever its status (for callers that read problem details)."""
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach the hub at {self.server}: {_reason(exc)}") from None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        if response.status_code >= 400:
            raise CliError(problem_text(response))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(f"the hub answered {method} {path} with something not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, json=body)

    def upload(
        self,
        file: Path,
        params: dict[str, str],
        on_progress: Callable[[int], None],
    ) -> Any:
        """Stream ``file`` as the raw request body; never reads it whole."""
        size = file.stat().st_size

        def chunks() -> Iterator[bytes]:
            with file.open("rb") as f:
                while chunk := f.read(1024 * 1024):
                    yield chunk
                    on_progress(len(chunk))

        return self.call(
            "POST",
            "/firmware",
            params=params,
            content=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )

    def upload_signed(
        self,
        file: Path,
        params: dict[str, str],
        targets: bytes,
        on_progress: Callable[[int], None],
    ) -> Any:
        """Stream ``file`` as multipart, after the signed ``targets`` metadata that lists it."""

        class _Counting:
            def __init__(self, f: Any) -> None:
                self._f = f

            def read(self, n: int = -1) -> bytes:
                data: bytes = self._f.read(n)
                on_progress(len(data))
                return data

            def __getattr__(self, name: str) -> Any:
                return getattr(self._f, name)

        with file.open("rb") as f:
            return self.call(
                "POST",
                "/firmware",
                params=params,
                data={"targets": targets.decode()},
                files={"file": (file.name, _Counting(f), "application/octet-stream")},
            )

    def raw(self, path: str) -> bytes:
        """GET ``path`` as bytes (metadata that must stay byte for byte)."""
        try:
            response = self._http.get(path)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach the hub at {self.server}: {_reason(exc)}") from None
        if response.status_code >= 400:
            raise CliError(problem_text(response))
        return response.content


def _reason(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused (is `otahub serve` running?)"
    return text or type(exc).__name__


def problem_text(response: httpx.Response) -> str:
    """One line saying why the hub refused a request."""
    detail = ""
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or "")
    if not detail:
        detail = response.text.strip()[:200] or response.reason_phrase
    hint = ""
    if response.status_code == 401:
        hint = f" (pass --admin-token, set {TOKEN_ENV}, or run where ./{TOKEN_FILE} exists)"
    return f"{response.status_code} {response.reason_phrase}: {detail}{hint}"


@contextlib.contextmanager
def connect(server: str, token: str | None) -> Iterator[Client]:
    """A client for one command; any failure becomes one line on stderr and exit 1."""
    client: Client | None = None
    try:
        client = Client(server, token)
        yield client
    except CliError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc))
    except httpx.HTTPError as exc:
        fail(f"HTTP error: {_reason(exc)}")
    finally:
        if client is not None:
            client.close()


def fail(message: str) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def when(value: str | None) -> str:
    """An ISO timestamp from the API, shortened for a table."""
    if not value:
        return "-"
    return value.replace("T", " ")[:19]


def dash(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)
