"""Generated requests against ``otahub serve`` from its own OpenAPI document.

Every operation gets a few generated cases (schemathesis); whatever they
hold, the hub answers each without a server error. Kept small so that the
run stays short; a 5xx found here is fixed where it arises.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case

from tests.hubproc import HubProcess

MAX_EXAMPLES = 8


class RunningHub:
    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.token = (hub.data_dir / "admin.token").read_text().strip()


@pytest.fixture(scope="module")
def running_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    hub = HubProcess(data_dir=tmp_path_factory.mktemp("schema") / "data").start()
    try:
        yield RunningHub(hub)
    finally:
        hub.stop()
        assert "unhandled error" not in hub.log(), hub.log()


def test_generated_requests_get_no_server_error(running_hub: RunningHub) -> None:
    # Operations are walked here rather than through schemathesis' pytest
    # plugin, which the document must exist for at collection time.
    schema = schemathesis.openapi.from_url(f"{running_hub.hub.http_url}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {running_hub.token}"}
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Case) -> None:
            case.call_and_validate(
                base_url=running_hub.hub.http_url,
                headers=headers,
                checks=[not_a_server_error],
                timeout=30,
            )

        try:
            check()
        except Exception as exc:  # every operation is tried; all failures are reported
            failures[operation.label] = str(exc)[:2000]
    assert operations >= 30
    assert not failures, "\n\n".join(f"{label}:\n{why}" for label, why in failures.items())
