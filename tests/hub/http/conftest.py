from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hubproc import HubProcess
from tests.pgserver import PostgresServer


class Api:
    """A running ``otahub serve`` and an authenticated client for its REST API."""

    def __init__(self, hub: HubProcess, token: str) -> None:
        self.hub = hub
        self.token = token
        self.client = httpx.Client(
            base_url=f"{hub.http_url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One hub per backend for the module, with admin auth on (token from the data dir)."""
    env: dict[str, str] = {}
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        env["OTAHUB_DATABASE_URL"] = server.create_database()
    data_dir: Path = tmp_path_factory.mktemp(f"hub-{request.param}") / "data"
    hub = HubProcess(data_dir=data_dir, env=env).start()
    try:
        token = (data_dir / "admin.token").read_text().strip()
        api = Api(hub, token)
        yield api
        api.client.close()
    finally:
        hub.stop()
