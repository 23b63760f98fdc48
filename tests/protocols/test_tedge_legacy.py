"""The legacy ``tedge/<child>/commands`` dialect and the file-transfer layout."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otahub.protocols import tedge_legacy as lg
from otahub.protocols.states import UpdateState
from otahub.protocols.tedge_legacy import (
    ChildAction,
    FirmwareRequest,
    FirmwareResponse,
    Ignored,
    InvalidFilePath,
    LegacyStatus,
    ResponseOutcome,
    TedgeLegacyError,
)

SEED_REQUEST = FirmwareRequest(
    id="tLrLthPXksKbqRqIsrDmy",
    attempt=1,
    name="OpenWRT",
    version="22.03",
    sha256="c036cbb7553a909f8b8877d4461924307f27ecb66cff928eeeafd569c3887e29",
    url="http://127.0.0.1:8000/tedge/file-transfer/tedge-child/firmware_update/93d50a297a8c235",
)


# --------------------------------------------------------------------------
# Topics


class TestTopics:
    def test_request_flags(self) -> None:
        assert lg.REQUEST_RETAIN is False
        assert lg.REQUEST_QOS == 1

    def test_builders(self) -> None:
        assert lg.request_topic("tedge-child") == "tedge/tedge-child/commands/req/firmware_update"
        assert lg.response_topic("tedge-child") == "tedge/tedge-child/commands/res/firmware_update"

    def test_parse(self) -> None:
        assert lg.parse_response_topic("tedge/child1/commands/res/firmware_update") == "child1"
        assert lg.parse_request_topic("tedge/child1/commands/req/firmware_update") == "child1"
        assert lg.parse_request_topic("tedge/child1/commands/res/firmware_update") is None

    @pytest.mark.parametrize(
        "topic",
        [
            "tedge//commands/res/firmware_update",
            "tedge/child1/commands/res/firmware_update/x",
            "tedge/a/b/commands/res/firmware_update",
            "tedge/child1/commands/res/config_update",
            "tedge/child1/command/res/firmware_update",
            "te/child1/commands/res/firmware_update",
            "tedge/+/commands/res/firmware_update",
            "",
        ],
    )
    def test_response_topic_must_have_exactly_five_segments(self, topic: str) -> None:
        assert lg.parse_response_topic(topic) is None

    @pytest.mark.parametrize("child", ["", "a/b", "+", "#"])
    def test_bad_child(self, child: str) -> None:
        with pytest.raises(TedgeLegacyError):
            lg.request_topic(child)


# --------------------------------------------------------------------------
# 2.2 Request


class TestRequest:
    def test_field_order(self) -> None:
        assert list(json.loads(SEED_REQUEST.to_payload())) == [
            "id",
            "attempt",
            "name",
            "version",
            "sha256",
            "url",
        ]

    def test_seed_001_example_parses(self) -> None:
        payload = b"""{
    "id": "tLrLthPXksKbqRqIsrDmy",
    "attempt": 1,
    "name": "OpenWRT",
    "version": "22.03",
    "url":"http://127.0.0.1:8000/tedge/file-transfer/tedge-child/firmware_update/93d50a297a8c235",
    "sha256":"c036cbb7553a909f8b8877d4461924307f27ecb66cff928eeeafd569c3887e29"
}"""
        assert lg.parse_request(payload) == SEED_REQUEST
        assert not SEED_REQUEST.is_resend

    def test_build(self) -> None:
        req = lg.build_request(
            "op1",
            name="n",
            version="v",
            sha256="AB" * 32,
            url="http://gw:8000/te/v1/files/c/firmware_update/k",
        )
        assert req.attempt == 1 and req.sha256 == "ab" * 32
        assert lg.parse_request(req.to_payload()) == req
        assert req.to_fields()["attempt"] == 1

    def test_resend_increments_attempt_and_keeps_id(self) -> None:
        again = SEED_REQUEST.resend()
        assert again.attempt == 2 and again.id == SEED_REQUEST.id and again.is_resend
        assert again.resend().attempt == 3

    @pytest.mark.parametrize("attempt", [0, -1, True])
    def test_bad_attempt(self, attempt: int) -> None:
        with pytest.raises(TedgeLegacyError):
            FirmwareRequest("id", attempt, "n", "v", "s", "u")

    def test_empty_id(self) -> None:
        with pytest.raises(TedgeLegacyError):
            FirmwareRequest("", 1, "n", "v", "s", "u")

    @pytest.mark.parametrize(
        ("change", "fragment"),
        [
            ({"id": None}, "id"),
            ({"id": ""}, "id"),
            ({"id": 5}, "id"),
            ({"attempt": 0}, "attempt"),
            ({"attempt": "1"}, "attempt"),
            ({"attempt": 1.0}, "attempt"),
            ({"name": None}, "name"),
            ({"version": 22.03}, "version"),
            ({"sha256": None}, "sha256"),
            ({"url": []}, "url"),
        ],
    )
    def test_malformed_requests_are_ignored(self, change: dict[str, object], fragment: str) -> None:
        body = {**json.loads(SEED_REQUEST.to_payload()), **change}
        body = {k: v for k, v in body.items() if v is not None}
        result = lg.parse_request(json.dumps(body).encode())
        assert isinstance(result, Ignored)
        assert fragment in result.reason

    @pytest.mark.parametrize("payload", [b"", b"{", b"[]", b"\xff"])
    def test_invalid_json_is_ignored(self, payload: bytes) -> None:
        assert isinstance(lg.parse_request(payload), Ignored)

    @given(st.binary(max_size=300))
    def test_fuzz(self, payload: bytes) -> None:
        result = lg.parse_request(payload)
        assert isinstance(result, FirmwareRequest | Ignored)


# --------------------------------------------------------------------------
# 2.3 Response


class TestResponse:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            (
                b'{"id": "OP1", "status": "executing"}',
                FirmwareResponse("OP1", LegacyStatus.EXECUTING),
            ),
            (
                b'{ "id": "OP1", "status": "successful" }',
                FirmwareResponse("OP1", LegacyStatus.SUCCESSFUL),
            ),
            (
                b'{ "id": "OP1", "status": "failed", '
                b'"reason": "SHA-256 checksum validation failed" }',
                FirmwareResponse("OP1", LegacyStatus.FAILED, "SHA-256 checksum validation failed"),
            ),
        ],
    )
    def test_seed_001_examples(self, payload: bytes, expected: FirmwareResponse) -> None:
        assert lg.parse_response(payload) == expected

    def test_reason_null_or_absent(self) -> None:
        assert lg.parse_response(b'{"id":"a","status":"failed","reason":null}') == FirmwareResponse(
            "a", LegacyStatus.FAILED, None
        )
        assert lg.parse_response(b'{"id":"a","status":"failed"}') == FirmwareResponse(
            "a", LegacyStatus.FAILED
        )

    def test_extra_fields_tolerated(self) -> None:
        # python-tedge-agent echoes the whole request plus status/reason.
        body = {**json.loads(SEED_REQUEST.to_payload()), "status": "successful"}
        assert lg.parse_response(json.dumps(body).encode()) == FirmwareResponse(
            SEED_REQUEST.id, LegacyStatus.SUCCESSFUL
        )

    @pytest.mark.parametrize(
        ("payload", "fragment"),
        [
            (b'{"status":"executing"}', "id must be a string"),
            (b'{"id":5,"status":"executing"}', "id must be a string"),
            (b'{"id":"a"}', "status must be a string"),
            (b'{"id":"a","status":"Executing"}', "unknown response status"),
            (b'{"id":"a","status":"init"}', "unknown response status"),
            (b'{"id":"a","status":"done"}', "unknown response status"),
            (b'{"id":"a","status":"failed","reason":5}', "reason must be a string or null"),
            (b'{"id":"a","status":"failed","reason":{"x":1}}', "reason must be a string or null"),
            (b"not json", "not valid JSON"),
            (b"", "not valid JSON"),
            (b"[1]", "must be a JSON object"),
        ],
    )
    def test_ignored_with_reason(self, payload: bytes, fragment: str) -> None:
        result = lg.parse_response(payload)
        assert isinstance(result, Ignored)
        assert fragment in result.reason

    def test_build(self) -> None:
        assert (
            lg.build_response("OP1", LegacyStatus.EXECUTING) == b'{"id":"OP1","status":"executing"}'
        )
        assert lg.build_response("OP1", LegacyStatus.FAILED, "bad") == (
            b'{"id":"OP1","status":"failed","reason":"bad"}'
        )

    def test_message_with_topic(self) -> None:
        result = lg.parse_response_message(
            "tedge/child1/commands/res/firmware_update", b'{"id":"a","status":"successful"}'
        )
        assert result == lg.ChildResponse("child1", FirmwareResponse("a", LegacyStatus.SUCCESSFUL))
        bad_topic = lg.parse_response_message("tedge/child1/commands/req/firmware_update", b"{}")
        assert isinstance(bad_topic, Ignored)
        bad_payload = lg.parse_response_message("tedge/child1/commands/res/firmware_update", b"{}")
        assert isinstance(bad_payload, Ignored)

    @given(st.binary(max_size=300))
    def test_fuzz_bytes(self, payload: bytes) -> None:
        assert isinstance(lg.parse_response(payload), FirmwareResponse | Ignored)

    @given(
        st.dictionaries(
            st.sampled_from(["id", "status", "reason", "x"]),
            st.none()
            | st.booleans()
            | st.integers()
            | st.text(max_size=12)
            | st.sampled_from(["executing", "successful", "failed"]),
        )
    )
    def test_fuzz_fields(self, body: dict[str, object]) -> None:
        result = lg.parse_response(json.dumps(body).encode())
        if isinstance(result, FirmwareResponse):
            assert result.id == body["id"] and result.status.value == body["status"]


class TestMatching:
    def test_unknown_pair_is_ignored(self) -> None:
        assert lg.response_outcome(False, None) is ResponseOutcome.UNKNOWN_OPERATION

    def test_executing_is_optional(self) -> None:
        assert lg.response_outcome(True, None) is ResponseOutcome.APPLY

    def test_after_terminal_later_messages_are_ignored(self) -> None:
        assert lg.response_outcome(True, LegacyStatus.EXECUTING) is ResponseOutcome.APPLY
        assert (
            lg.response_outcome(True, LegacyStatus.SUCCESSFUL) is ResponseOutcome.ALREADY_FINISHED
        )
        assert lg.response_outcome(True, LegacyStatus.FAILED) is ResponseOutcome.ALREADY_FINISHED

    def test_terminal_statuses(self) -> None:
        assert not LegacyStatus.EXECUTING.is_terminal
        assert LegacyStatus.SUCCESSFUL.is_terminal and LegacyStatus.FAILED.is_terminal


# --------------------------------------------------------------------------
# 2.5 timeout, 2.6 attempts, 4 mapping


class TestTimeoutAndAttempts:
    def test_timeout_text(self) -> None:
        assert lg.DEFAULT_TIMEOUT_SECONDS == 3600
        assert lg.timeout_reason("child1", 3600, "tLrLthPXksKbqRqIsrDmy") == (
            "Child device child1 did not respond within the timeout interval of 3600sec. "
            "Operation ID=tLrLthPXksKbqRqIsrDmy"
        )

    def test_every_executing_restarts_the_timer(self) -> None:
        assert lg.restarts_timeout(LegacyStatus.EXECUTING)
        assert not lg.restarts_timeout(LegacyStatus.SUCCESSFUL)
        assert not lg.restarts_timeout(LegacyStatus.FAILED)

    def test_same_operation_key(self) -> None:
        a = lg.operation_key("c", "OpenWRT", "22.03", "https://t/inventory/binaries/1")
        assert a == lg.operation_key("c", "OpenWRT", "22.03", "https://t/inventory/binaries/1")
        assert a != lg.operation_key("c", "OpenWRT", "22.04", "https://t/inventory/binaries/1")
        assert a != lg.operation_key("d", "OpenWRT", "22.03", "https://t/inventory/binaries/1")

    def test_fresh_request_starts(self) -> None:
        assert lg.child_decision(None) == lg.ChildDecision(ChildAction.START)

    def test_resend_while_running_reports_current_status(self) -> None:
        decision = lg.child_decision(LegacyStatus.EXECUTING)
        assert decision == lg.ChildDecision(ChildAction.REPORT, LegacyStatus.EXECUTING)

    @pytest.mark.parametrize("status", [LegacyStatus.SUCCESSFUL, LegacyStatus.FAILED])
    def test_resend_after_finish_repeats_terminal_status(self, status: LegacyStatus) -> None:
        assert lg.child_decision(status) == lg.ChildDecision(ChildAction.REPORT, status)

    @pytest.mark.parametrize(
        ("status", "state"),
        [
            (LegacyStatus.EXECUTING, UpdateState.DOWNLOADING),
            (LegacyStatus.SUCCESSFUL, UpdateState.SUCCEEDED),
            (LegacyStatus.FAILED, UpdateState.FAILED),
        ],
    )
    def test_mapping(self, status: LegacyStatus, state: UpdateState) -> None:
        assert lg.status_to_state(status) is state


# --------------------------------------------------------------------------
# 2.4 and 3: file transfer


class TestFileTransfer:
    def test_cache_key_hashes_the_url(self) -> None:
        url = "https://t40073098.cumulocity.com/inventory/binaries/77206248"
        assert lg.cache_key(url) == hashlib.sha256(url.encode()).hexdigest()

    def test_layout(self) -> None:
        assert lg.file_path("child1", "abc") == "/te/v1/files/child1/firmware_update/abc"
        assert (
            lg.file_path("child1", "abc", legacy=True)
            == "/tedge/file-transfer/child1/firmware_update/abc"
        )
        assert lg.file_url("192.168.1.2", "child1", "abc") == (
            "http://192.168.1.2:8000/te/v1/files/child1/firmware_update/abc"
        )
        assert lg.file_url("gw", "c", "k", port=8443, scheme="https") == (
            "https://gw:8443/te/v1/files/c/firmware_update/k"
        )

    @pytest.mark.parametrize("key", ["", "a/b", "..", "."])
    def test_bad_keys(self, key: str) -> None:
        with pytest.raises(TedgeLegacyError):
            lg.file_path("child1", key)

    def test_parse_current_and_legacy_forms(self) -> None:
        current = lg.parse_file_path("/te/v1/files/child1/firmware_update/abc")
        assert current == lg.FileTransferPath(("child1", "firmware_update", "abc"), False)
        assert current.firmware_entry == ("child1", "abc")
        legacy = lg.parse_file_path(
            "/tedge/file-transfer/tedge-child/firmware_update/93d50a297a8c235"
        )
        assert legacy is not None and legacy.legacy
        assert legacy.firmware_entry == ("tedge-child", "93d50a297a8c235")

    def test_not_file_transfer(self) -> None:
        assert lg.parse_file_path("/api/v1/x") is None
        assert lg.parse_file_path("/te/v1/filesx") is None

    def test_trailing_slash_and_dots_normalised(self) -> None:
        path = lg.parse_file_path("/te/v1/files/a//b/./c/")
        assert path is not None and path.relative == "a/b/c"
        inside = lg.parse_file_path("/te/v1/files/a/../b")
        assert inside is not None and inside.relative == "b"
        assert inside.firmware_entry is None

    @pytest.mark.parametrize(
        "path",
        [
            "/te/v1/files/../etc/passwd",
            "/te/v1/files/a/../../etc/passwd",
            "/te/v1/files/..",
            "/tedge/file-transfer/../x",
            "/te/v1/files/a\x00b",
        ],
    )
    def test_path_traversal_refused(self, path: str) -> None:
        with pytest.raises(InvalidFilePath) as info:
            lg.parse_file_path(path)
        assert info.value.status == 404
        assert str(info.value).startswith("Invalid file path")

    def test_messages_and_headers(self) -> None:
        path = lg.parse_file_path("/te/v1/files/a/b")
        assert path is not None
        assert lg.file_not_found_message(path) == 'File not found: "a/b"'
        assert lg.LEGACY_DEPRECATION_HEADERS == {
            "deprecation": "true",
            "sunset": "Thu, 31 Dec 2025 23:59:59 GMT",
            "link": '</te/v1/files>; rel="deprecation"',
        }

    @pytest.mark.parametrize(
        ("method", "exists", "is_dir", "status"),
        [
            (lg.FileMethod.PUT, False, False, 201),
            (lg.FileMethod.PUT, True, False, 201),
            (lg.FileMethod.PUT, True, True, 409),
            (lg.FileMethod.GET, True, False, 200),
            (lg.FileMethod.GET, False, False, 404),
            (lg.FileMethod.GET, True, True, 404),
            (lg.FileMethod.DELETE, True, False, 202),
            (lg.FileMethod.DELETE, False, False, 202),
            (lg.FileMethod.DELETE, True, True, 404),
        ],
    )
    def test_status_table(
        self, method: lg.FileMethod, exists: bool, is_dir: bool, status: int
    ) -> None:
        assert lg.file_transfer_status(method, exists=exists, is_dir=is_dir) == status

    @given(st.text(max_size=80))
    def test_fuzz_never_escapes(self, rest: str) -> None:
        try:
            path = lg.parse_file_path("/te/v1/files/" + rest)
        except InvalidFilePath:
            return
        assert path is not None
        assert ".." not in path.segments and "." not in path.segments and "" not in path.segments


@pytest.mark.parametrize(
    ("topic_filter", "child"),
    [
        ("tedge/c1/commands/req/firmware_update", "c1"),
        ("tedge/c1/commands/req/#", "c1"),
        ("tedge/c1/#", "c1"),
        ("tedge/c1/commands/+/firmware_update", "c1"),
        ("tedge/+/commands/req/firmware_update", None),  # names no child
        ("tedge/#", None),
        ("tedge/c1/commands/res/firmware_update", None),
        ("tedge/c1/commands/req", None),
        ("tedge/c1/commands/req/firmware_update/more", None),
        ("te/device/c1///cmd/firmware_update/+", None),
    ],
)
def test_subscribing_child_is_named_by_a_filter_over_its_request_topic(
    topic_filter: str, child: str | None
) -> None:
    assert lg.subscribing_child(topic_filter) == child
