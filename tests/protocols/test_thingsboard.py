"""The ThingsBoard dialect against every table and rule of its reference."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otahub.protocols import thingsboard as tb
from otahub.protocols.states import UpdateState
from otahub.protocols.thingsboard import (
    ChunkError,
    CloseConnection,
    PackageAttributes,
    PackageType,
    SendChunk,
    ThingsBoardError,
    TopicFamily,
    UnknownTopic,
)

FW = PackageType.FIRMWARE
SW = PackageType.SOFTWARE

# --------------------------------------------------------------------------
# Section 1: connection and authentication


class TestCredentialLookups:
    def test_access_token_any_client_id(self) -> None:
        lookups = tb.credential_lookups("", "A1_TEST_TOKEN")
        assert lookups == (
            tb.CredentialLookup(tb.CredentialKind.USER_NAME, user_name="A1_TEST_TOKEN"),
        )

    def test_basic_client_id_only(self) -> None:
        assert tb.credential_lookups("dev-1", None) == (
            tb.CredentialLookup(tb.CredentialKind.CLIENT_ID, client_id="dev-1"),
        )
        assert tb.credential_lookups("dev-1", "") == (
            tb.CredentialLookup(tb.CredentialKind.CLIENT_ID, client_id="dev-1"),
        )

    def test_basic_client_id_and_username_then_fallback(self) -> None:
        assert tb.credential_lookups("dev-1", "user") == (
            tb.CredentialLookup(tb.CredentialKind.CLIENT_ID_AND_USER_NAME, "dev-1", "user"),
            tb.CredentialLookup(tb.CredentialKind.USER_NAME, user_name="user"),
        )

    def test_basic_username_only(self) -> None:
        assert tb.credential_lookups("", "user") == (
            tb.CredentialLookup(tb.CredentialKind.USER_NAME, user_name="user"),
        )

    @pytest.mark.parametrize(("client_id", "user"), [("provision", None), ("x", "provision")])
    def test_provisioning(self, client_id: str, user: str | None) -> None:
        assert tb.credential_lookups(client_id, user) == (
            tb.CredentialLookup(tb.CredentialKind.PROVISION),
        )

    def test_mqtt5_empty_client_id_with_token_is_looked_up(self) -> None:
        # tb-mqtt-client connects with MQTT 5 and client id "".
        assert tb.credential_lookups("", "token")[0].kind is tb.CredentialKind.USER_NAME

    def test_nothing_to_look_up(self) -> None:
        assert tb.credential_lookups("", None) == ()


class TestConnectRefusal:
    def test_username_or_password_sent(self) -> None:
        assert tb.connect_refusal(client_id="c", user_name="u", password=None) == tb.ConnackRefusal(
            4, 0x86
        )
        assert tb.connect_refusal(client_id="", user_name=None, password=b"p") == tb.ConnackRefusal(
            4, 0x86
        )

    def test_only_client_id(self) -> None:
        assert tb.connect_refusal(
            client_id="c", user_name=None, password=None
        ) == tb.ConnackRefusal(2, 0x85)

    def test_anything_else(self) -> None:
        assert tb.connect_refusal(client_id="", user_name=None, password=None) == tb.ConnackRefusal(
            5, 0x87
        )


class TestBasicCredentials:
    def test_round_trip(self) -> None:
        creds = tb.parse_basic_credentials(b'{"clientId":"c","userName":"u","password":"p"}')
        assert creds == tb.BasicMqttCredentials("c", "u", "p")
        assert tb.parse_basic_credentials(creds.to_json()) == creds

    def test_empty_strings_are_unset(self) -> None:
        creds = tb.parse_basic_credentials(b'{"clientId":"c","userName":"","password":""}')
        assert creds == tb.BasicMqttCredentials("c", None, None)

    def test_needs_client_id_or_user_name(self) -> None:
        with pytest.raises(ThingsBoardError, match="both MQTT client id and user name are empty"):
            tb.parse_basic_credentials(b'{"password":"p"}')

    def test_password_needs_user_name(self) -> None:
        with pytest.raises(ThingsBoardError, match="without a user name"):
            tb.parse_basic_credentials(b'{"clientId":"c","password":"p"}')

    def test_wrong_types_and_json(self) -> None:
        with pytest.raises(ThingsBoardError, match="userName must be a string"):
            tb.parse_basic_credentials(b'{"clientId":"c","userName":5}')
        with pytest.raises(ThingsBoardError):
            tb.parse_basic_credentials(b"not json")

    def test_password_check(self) -> None:
        stored = tb.BasicMqttCredentials("c", "u", "secret")
        assert stored.accepts_password("secret")
        assert not stored.accepts_password("wrong")
        assert not stored.accepts_password(None)
        assert tb.BasicMqttCredentials("c", "u").accepts_password("anything")
        assert tb.BasicMqttCredentials("c", "u").accepts_password(None)


# --------------------------------------------------------------------------
# Section 2: topics


class TestTopics:
    @pytest.mark.parametrize(
        ("topic", "kind", "family"),
        [
            ("v1/devices/me/telemetry", tb.PublishKind.TELEMETRY, TopicFamily.V1),
            ("v1/devices/me/attributes", tb.PublishKind.ATTRIBUTES, TopicFamily.V1),
            ("v1/devices/me/claim", tb.PublishKind.CLAIM, TopicFamily.V1),
            ("v2/t", tb.PublishKind.TELEMETRY, TopicFamily.V2),
            ("v2/t/j", tb.PublishKind.TELEMETRY, TopicFamily.V2_JSON),
            ("v2/t/p", tb.PublishKind.TELEMETRY, TopicFamily.V2_PROTO),
            ("v2/a", tb.PublishKind.ATTRIBUTES, TopicFamily.V2),
            ("v2/a/j", tb.PublishKind.ATTRIBUTES, TopicFamily.V2_JSON),
            ("v2/a/p", tb.PublishKind.ATTRIBUTES, TopicFamily.V2_PROTO),
        ],
    )
    def test_exact_topics(self, topic: str, kind: tb.PublishKind, family: TopicFamily) -> None:
        assert tb.classify_publish(topic) == tb.DevicePublish(kind, family)

    @pytest.mark.parametrize(
        ("topic", "kind", "family", "request_id"),
        [
            (
                "v1/devices/me/attributes/request/1",
                tb.PublishKind.ATTRIBUTE_REQUEST,
                TopicFamily.V1,
                1,
            ),
            ("v1/devices/me/rpc/request/7", tb.PublishKind.RPC_REQUEST, TopicFamily.V1, 7),
            ("v1/devices/me/rpc/response/3", tb.PublishKind.RPC_RESPONSE, TopicFamily.V1, 3),
            ("v2/a/req/5", tb.PublishKind.ATTRIBUTE_REQUEST, TopicFamily.V2, 5),
            ("v2/a/req/j/5", tb.PublishKind.ATTRIBUTE_REQUEST, TopicFamily.V2_JSON, 5),
            ("v2/a/req/p/5", tb.PublishKind.ATTRIBUTE_REQUEST, TopicFamily.V2_PROTO, 5),
            ("v2/r/req/2", tb.PublishKind.RPC_REQUEST, TopicFamily.V2, 2),
            ("v2/r/res/j/2", tb.PublishKind.RPC_RESPONSE, TopicFamily.V2_JSON, 2),
            (
                "v1/devices/me/attributes/request/007",
                tb.PublishKind.ATTRIBUTE_REQUEST,
                TopicFamily.V1,
                7,
            ),
            (
                "v1/devices/me/attributes/request/-3",
                tb.PublishKind.ATTRIBUTE_REQUEST,
                TopicFamily.V1,
                -3,
            ),
        ],
    )
    def test_request_id_topics(
        self, topic: str, kind: tb.PublishKind, family: TopicFamily, request_id: int
    ) -> None:
        assert tb.classify_publish(topic) == tb.DevicePublish(kind, family, request_id=request_id)

    @pytest.mark.parametrize(
        "topic",
        [
            "v1/devices/me/attributes/request/abc",
            "v1/devices/me/attributes/request/",
            "v1/devices/me/attributes/request/1.5",
            "v1/devices/me/attributes/request/99999999999",
            "v1/devices/me/rpc/request/x",
            "v2/a/req/jx",
        ],
    )
    def test_non_integer_request_id_is_a_payload_error(self, topic: str) -> None:
        with pytest.raises(ThingsBoardError, match="is not an integer"):
            tb.classify_publish(topic)

    @pytest.mark.parametrize(
        "topic",
        [
            "v1/devices/me/unknown",
            "v1/devices/me/attributes/",
            "v2/fw/request/1a/chunk/0",
            "v2/fw/request/1/chunk/0a",
            "v2/fw/request/1/chunk/",
            "v2/fw/request//chunk/0",
            "v2/fw/chunk/request/1/chunk/0",  # the seed's erratum
            "x/v2/fw/request/1/chunk/0",
            "v2/fw/request/\u0661/chunk/0",  # non-ASCII digit
            "",
        ],
    )
    def test_unknown_topics(self, topic: str) -> None:
        assert tb.classify_publish(topic) is None

    def test_chunk_topics(self) -> None:
        assert tb.classify_publish("v2/fw/request/12/chunk/3") == tb.DevicePublish(
            tb.PublishKind.CHUNK_REQUEST, TopicFamily.V2, chunk=tb.ChunkTopic(FW, "12", 3)
        )
        parsed = tb.parse_chunk_topic("v2/sw/request/007/chunk/007")
        assert parsed == tb.ChunkTopic(SW, "007", 7)
        assert parsed.response_topic == "v2/sw/response/007/chunk/7"

    def test_builders(self) -> None:
        assert tb.attributes_request_topic(1) == "v1/devices/me/attributes/request/1"
        assert tb.attributes_response_topic(1) == "v1/devices/me/attributes/response/1"
        assert tb.attributes_response_topic(4, TopicFamily.V2) == "v2/a/res/4"
        assert tb.attributes_response_topic(4, TopicFamily.V2_JSON) == "v2/a/res/j/4"
        assert tb.rpc_response_topic(9) == "v1/devices/me/rpc/response/9"
        assert tb.rpc_response_topic(9, TopicFamily.V2_PROTO) == "v2/r/res/p/9"
        assert tb.chunk_request_topic(FW, 1, 0) == "v2/fw/request/1/chunk/0"
        assert tb.chunk_request_topic(SW, "2", 5) == "v2/sw/request/2/chunk/5"
        assert tb.chunk_response_topic(FW, "1", 2) == "v2/fw/response/1/chunk/2"
        assert tb.chunk_response_filter(FW) == "v2/fw/response/+/chunk/+"
        assert tb.chunk_response_filter(SW) == "v2/sw/response/+/chunk/+"
        assert tb.OTA_ERROR_TOPIC == "v2/fw/error"

    @pytest.mark.parametrize(("rid", "n"), [("a", 0), (-1, 0), (1, -1), ("", 0)])
    def test_chunk_request_topic_rejects_bad_parts(self, rid: int | str, n: int) -> None:
        with pytest.raises(ThingsBoardError):
            tb.chunk_request_topic(FW, rid, n)


# --------------------------------------------------------------------------
# Section 3: subscriptions


class TestSubscriptions:
    @pytest.mark.parametrize(
        ("topic_filter", "kind"),
        [
            ("v1/devices/me/attributes", tb.SubscriptionKind.ATTRIBUTE_UPDATES),
            ("v1/devices/me/attributes/response/+", tb.SubscriptionKind.ATTRIBUTE_RESPONSES),
            ("v1/devices/me/rpc/request/+", tb.SubscriptionKind.RPC_REQUESTS),
            ("v1/devices/me/rpc/response/+", tb.SubscriptionKind.RPC_RESPONSES),
            ("v2/fw/response/+/chunk/+", tb.SubscriptionKind.FIRMWARE_CHUNKS),
            ("v2/fw/error", tb.SubscriptionKind.FIRMWARE_ERRORS),
            ("v2/sw/response/+/chunk/+", tb.SubscriptionKind.SOFTWARE_CHUNKS),
            ("v2/sw/error", tb.SubscriptionKind.SOFTWARE_ERRORS),
            ("v2/a", tb.SubscriptionKind.ATTRIBUTE_UPDATES),
            ("v2/a/j", tb.SubscriptionKind.ATTRIBUTE_UPDATES),
            ("v2/a/p", tb.SubscriptionKind.ATTRIBUTE_UPDATES),
            ("v2/a/res/+", tb.SubscriptionKind.ATTRIBUTE_RESPONSES),
            ("v2/a/res/j/+", tb.SubscriptionKind.ATTRIBUTE_RESPONSES),
            ("v2/a/res/p/+", tb.SubscriptionKind.ATTRIBUTE_RESPONSES),
            ("v2/r/req/+", tb.SubscriptionKind.RPC_REQUESTS),
            ("v2/r/req/j/+", tb.SubscriptionKind.RPC_REQUESTS),
            ("v2/r/req/p/+", tb.SubscriptionKind.RPC_REQUESTS),
            ("v2/r/res/+", tb.SubscriptionKind.RPC_RESPONSES),
            ("v2/r/res/j/+", tb.SubscriptionKind.RPC_RESPONSES),
            ("v2/r/res/p/+", tb.SubscriptionKind.RPC_RESPONSES),
            ("v1/gateway/attributes", tb.SubscriptionKind.GATEWAY),
            ("v1/gateway/rpc", tb.SubscriptionKind.GATEWAY),
            ("v1/gateway/attributes/response", tb.SubscriptionKind.GATEWAY),
        ],
    )
    def test_accepted(self, topic_filter: str, kind: tb.SubscriptionKind) -> None:
        sub = tb.accept_subscription(topic_filter)
        assert sub is not None
        assert sub.kind is kind
        assert sub.topic_filter == topic_filter
        assert sub.starts_attribute_pushes is (kind is tb.SubscriptionKind.ATTRIBUTE_UPDATES)
        assert topic_filter in tb.ACCEPTED_FILTERS

    @pytest.mark.parametrize(
        "topic_filter",
        [
            "v1/devices/me/attributes/",  # seed 003's trailing slash
            "v2/fw/response/+",  # what tb-mqtt-client subscribes to
            "v1/devices/me/#",
            "#",
            "v1/devices/me/attributes/response/1",
            "v1/devices/me/telemetry",
            "V1/devices/me/attributes",
            "",
        ],
    )
    def test_refused(self, topic_filter: str) -> None:
        assert tb.accept_subscription(topic_filter) is None

    def test_refusal_codes(self) -> None:
        assert tb.suback_refusal_code(mqtt5=False) == 0x80
        assert tb.suback_refusal_code(mqtt5=True) == 0x8F

    def test_family_of_attribute_subscription(self) -> None:
        sub = tb.accept_subscription("v2/a/j")
        assert sub is not None and sub.family is TopicFamily.V2_JSON


# --------------------------------------------------------------------------
# Section 4: attributes


class TestAttributeRequest:
    def test_seed_003_request(self) -> None:
        req = tb.parse_attribute_request(
            1, b'{"sharedKeys":"fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm"}'
        )
        assert req.request_id == 1
        assert req.client_keys is None
        assert req.shared_keys == {
            "fw_title",
            "fw_version",
            "fw_size",
            "fw_checksum",
            "fw_checksum_algorithm",
        }
        assert not req.wants_everything
        assert req.response_topic == "v1/devices/me/attributes/response/1"

    def test_split_without_trimming(self) -> None:
        req = tb.parse_attribute_request(1, b'{"sharedKeys":"fw_title, fw_version"}')
        assert req.shared_keys == {"fw_title", " fw_version"}

    @pytest.mark.parametrize(
        ("text", "keys"),
        [
            ("", {""}),
            ("a,b,", {"a", "b"}),
            (",a", {"", "a"}),
            (",,", set()),
            ("a,,b", {"a", "", "b"}),
        ],
    )
    def test_java_split_semantics(self, text: str, keys: set[str]) -> None:
        req = tb.parse_attribute_request(1, json.dumps({"clientKeys": text}).encode())
        assert req.client_keys == keys

    def test_both_absent_means_everything(self) -> None:
        req = tb.parse_attribute_request(3, b"{}")
        assert req.wants_everything
        client, shared = req.select({"a": 1}, {"fw_title": "x"})
        assert client == {"a": 1}
        assert shared == {"fw_title": "x"}

    def test_select_only_requested_sections_and_missing_keys_absent(self) -> None:
        req = tb.parse_attribute_request(1, b'{"sharedKeys":"fw_title,fw_nope"}')
        client, shared = req.select({"c": 1}, {"fw_title": "t", "other": 2})
        assert client == {}
        assert shared == {"fw_title": "t"}

    def test_single_element_array_is_accepted(self) -> None:
        req = tb.parse_attribute_request(1, b'{"sharedKeys":["fw_title,fw_version"]}')
        assert req.shared_keys == {"fw_title", "fw_version"}

    @pytest.mark.parametrize(
        "payload",
        [
            b'{"sharedKeys":["fw_title","fw_version"]}',
            b'{"sharedKeys":[]}',
            b'{"sharedKeys":null}',
            b'{"sharedKeys":{"a":1}}',
            b"not json",
            b"",
            b'["sharedKeys"]',
            b'"fw_title"',
        ],
    )
    def test_payload_errors(self, payload: bytes) -> None:
        with pytest.raises(ThingsBoardError):
            tb.parse_attribute_request(1, payload)

    def test_scalars_read_as_strings(self) -> None:
        req = tb.parse_attribute_request(1, b'{"clientKeys":5,"sharedKeys":true}')
        assert req.client_keys == {"5"}
        assert req.shared_keys == {"true"}

    def test_protobuf_family_is_refused(self) -> None:
        with pytest.raises(ThingsBoardError, match="protobuf"):
            tb.parse_attribute_request(1, b"{}", TopicFamily.V2_PROTO)

    def test_v2_family_reply_topic(self) -> None:
        req = tb.parse_attribute_request(8, b"{}", TopicFamily.V2)
        assert req.response_topic == "v2/a/res/8"

    def test_build_request(self) -> None:
        body = tb.build_attribute_request(
            shared_keys=[
                "fw_title",
                "fw_version",
                "fw_size",
                "fw_checksum",
                "fw_checksum_algorithm",
            ]
        )
        assert (
            body
            == b'{"sharedKeys":"fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm"}'
        )
        assert tb.build_attribute_request() == b"{}"
        with pytest.raises(ThingsBoardError):
            tb.build_attribute_request(shared_keys=["a,b"])
        with pytest.raises(ThingsBoardError):
            tb.build_attribute_request(client_keys=[])

    @given(st.binary(max_size=200))
    def test_fuzz_bytes(self, payload: bytes) -> None:
        with contextlib.suppress(ThingsBoardError):
            tb.parse_attribute_request(1, payload)

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        )
    )
    def test_fuzz_json(self, value: object) -> None:
        with contextlib.suppress(ThingsBoardError):
            tb.parse_attribute_request(1, json.dumps({"sharedKeys": value}).encode())


class TestAttributeResponse:
    def test_empty_sections_omitted(self) -> None:
        assert tb.build_attributes_response() == b"{}"
        assert tb.build_attributes_response({}, {}) == b"{}"
        assert tb.build_attributes_response({"a": 1}, {}) == b'{"client":{"a":1}}'

    def test_seed_003_response_keeps_types(self) -> None:
        shared = {
            "fw_title": "CIM-168",
            "fw_version": "1.0.1",
            "fw_size": 3735576,
            "fw_checksum_algorithm": "SHA256",
            "fw_checksum": "ef52eebab2446b8b8179798e0d14517e1b9321cff93debe55d79b4460bc51335",
        }
        body = tb.build_attributes_response(shared=shared)
        assert body == (
            b'{"shared":{"fw_title":"CIM-168","fw_version":"1.0.1","fw_size":3735576,'
            b'"fw_checksum_algorithm":"SHA256",'
            b'"fw_checksum":"ef52eebab2446b8b8179798e0d14517e1b9321cff93debe55d79b4460bc51335"}}'
        )
        parsed = tb.parse_attributes_response(body)
        assert parsed.client == {}
        assert parsed.shared == shared
        pkg = tb.package_from_attributes(FW, parsed.shared)
        assert pkg == PackageAttributes(
            title="CIM-168",
            version="1.0.1",
            size=3735576,
            checksum="ef52eebab2446b8b8179798e0d14517e1b9321cff93debe55d79b4460bc51335",
            checksum_algorithm="SHA256",
        )

    def test_bad_response(self) -> None:
        with pytest.raises(ThingsBoardError, match="'shared' must be an object"):
            tb.parse_attributes_response(b'{"shared":[]}')

    @given(st.binary(max_size=200))
    def test_fuzz(self, payload: bytes) -> None:
        with contextlib.suppress(ThingsBoardError):
            tb.parse_attributes_response(payload)


class TestAttributePush:
    def test_update(self) -> None:
        push = tb.parse_attribute_push(
            b'{"fw_title":"CIM-168","fw_version":"1.0.1","fw_size":3735576}'
        )
        assert push.updated == {"fw_title": "CIM-168", "fw_version": "1.0.1", "fw_size": 3735576}
        assert push.deleted == ()

    def test_deletion(self) -> None:
        push = tb.parse_attribute_push(b'{"deleted":["fw_tag","fw_url"]}')
        assert push.deleted == ("fw_tag", "fw_url")
        assert push.updated == {}

    def test_deleted_key_beside_others_is_an_update(self) -> None:
        push = tb.parse_attribute_push(b'{"deleted":["x"],"fw_title":"t"}')
        assert push.updated == {"deleted": ["x"], "fw_title": "t"}

    def test_bad_deletion(self) -> None:
        with pytest.raises(ThingsBoardError):
            tb.parse_attribute_push(b'{"deleted":[1]}')

    def test_builders(self) -> None:
        assert (
            tb.build_attribute_deletion(["fw_tag", "fw_url"]) == b'{"deleted":["fw_tag","fw_url"]}'
        )
        assert tb.build_attribute_update({"fw_title": "t"}) == b'{"fw_title":"t"}'

    def test_client_attributes(self) -> None:
        assert tb.parse_client_attributes(b'{"a":1}') == {"a": 1}
        with pytest.raises(ThingsBoardError):
            tb.parse_client_attributes(b"[1]")

    @given(st.binary(max_size=200))
    def test_fuzz(self, payload: bytes) -> None:
        with contextlib.suppress(ThingsBoardError):
            tb.parse_attribute_push(payload)


# --------------------------------------------------------------------------
# Section 5: telemetry


class TestTelemetry:
    def test_object(self) -> None:
        entries = tb.parse_telemetry(b'{"current_fw_title":"CIM-168","current_fw_version":"1.0.0"}')
        assert entries == (
            tb.TelemetryEntry({"current_fw_title": "CIM-168", "current_fw_version": "1.0.0"}),
        )

    def test_array_of_objects(self) -> None:
        entries = tb.parse_telemetry(b'[{"a":1},{"b":2}]')
        assert [e.values for e in entries] == [{"a": 1}, {"b": 2}]
        assert all(e.ts is None for e in entries)

    def test_ts_values(self) -> None:
        assert tb.parse_telemetry(b'{"ts":1700000000000,"values":{"fw_state":"UPDATED"}}') == (
            tb.TelemetryEntry({"fw_state": "UPDATED"}, 1700000000000),
        )

    def test_array_of_ts_values(self) -> None:
        entries = tb.parse_telemetry(
            b'[{"ts":1,"values":{"a":1}},{"ts":"2","values":{"a":2}},{"c":3}]'
        )
        assert [(e.ts, e.values) for e in entries] == [
            (1, {"a": 1}),
            (2, {"a": 2}),
            (None, {"c": 3}),
        ]

    def test_ts_without_values_is_a_plain_key(self) -> None:
        assert tb.parse_telemetry(b'{"ts":5,"a":1}') == (tb.TelemetryEntry({"ts": 5, "a": 1}),)

    def test_fractional_ts_is_truncated(self) -> None:
        assert tb.parse_telemetry(b'{"ts":5.9,"values":{}}')[0].ts == 5

    @pytest.mark.parametrize(
        "payload",
        [
            b"5",
            b'"x"',
            b"[1]",
            b'{"ts":"soon","values":{}}',
            b'{"ts":true,"values":{}}',
            b'{"ts":1,"values":[1]}',
            b'{"a":null}',
            b"{",
        ],
    )
    def test_errors(self, payload: bytes) -> None:
        with pytest.raises(ThingsBoardError):
            tb.parse_telemetry(payload)

    def test_empty_shapes(self) -> None:
        assert tb.parse_telemetry(b"[]") == ()
        assert tb.parse_telemetry(b"{}") == (tb.TelemetryEntry({}),)

    def test_protobuf_refused(self) -> None:
        with pytest.raises(ThingsBoardError):
            tb.parse_telemetry(b"{}", TopicFamily.V2_PROTO)

    def test_sdk_idle_report(self) -> None:
        entries = tb.parse_telemetry(
            b'[{"current_fw_title":"Initial","current_fw_version":"v0","fw_state":"IDLE","fw_error":""}]'
        )
        report = tb.extract_ota_report(entries)
        assert report == tb.OtaReport(FW, "Initial", "v0", "IDLE", "", None)
        assert report.fw_state is None
        assert report.canonical_state is None

    def test_report_merges_entries_in_order(self) -> None:
        entries = tb.parse_telemetry(
            b'[{"fw_state":"DOWNLOADING"},{"ts":9,"values":{"fw_state":"FAILED","fw_error":"boom"}}]'
        )
        report = tb.extract_ota_report(entries)
        assert report is not None
        assert report.state == "FAILED"
        assert report.error == "boom"
        assert report.ts == 9
        assert report.canonical_state is UpdateState.FAILED

    def test_report_for_software(self) -> None:
        entries = tb.parse_telemetry(
            b'{"current_sw_title":"app","current_sw_version":"2","sw_state":"UPDATING","fw_state":"X"}'
        )
        report = tb.extract_ota_report(entries, SW)
        assert report == tb.OtaReport(SW, "app", "2", "UPDATING", None, None)
        assert tb.extract_ota_report(tb.parse_telemetry(b'{"temp":1}')) is None

    def test_non_string_values_become_text(self) -> None:
        report = tb.extract_ota_report(tb.parse_telemetry(b'{"current_fw_version":2}'))
        assert report is not None and report.current_version == "2"

    def test_build(self) -> None:
        assert (
            tb.build_state_telemetry(
                FW, tb.FwState.DOWNLOADING, current_title="CIM-168", current_version="1.0.0"
            )
            == b'{"current_fw_title":"CIM-168","current_fw_version":"1.0.0",'
            b'"fw_state":"DOWNLOADING"}'
        )
        assert (
            tb.build_state_telemetry(
                SW,
                "FAILED",
                current_title="a",
                current_version="1",
                error="Checksum verification failed!",
            )
            == b'{"current_sw_title":"a","current_sw_version":"1","sw_state":"FAILED",'
            b'"sw_error":"Checksum verification failed!"}'
        )
        assert tb.build_telemetry({"a": 1}) == b'{"a":1}'
        assert tb.build_telemetry({"a": 1}, ts=5) == b'{"ts":5,"values":{"a":1}}'

    @given(st.binary(max_size=300))
    def test_fuzz(self, payload: bytes) -> None:
        with contextlib.suppress(ThingsBoardError):
            tb.extract_ota_report(tb.parse_telemetry(payload))


# --------------------------------------------------------------------------
# Section 6: firmware attributes and states


class TestFirmwareAttributes:
    def test_uploaded_package(self) -> None:
        change = tb.assignment_attributes(
            FW,
            PackageAttributes(
                title="CIM-168",
                version="1.0.1",
                size=3735576,
                checksum="ab",
                checksum_algorithm="SHA256",
            ),
        )
        assert change.saved == {
            "fw_title": "CIM-168",
            "fw_version": "1.0.1",
            "fw_size": 3735576,
            "fw_checksum_algorithm": "SHA256",
            "fw_checksum": "ab",
        }
        # tag unset -> deleted; url deleted for a package with data
        assert change.deleted == ("fw_tag", "fw_url")

    def test_uploaded_package_with_tag(self) -> None:
        change = tb.assignment_attributes(
            SW,
            PackageAttributes(
                title="a", version="1", size=1, checksum="c", checksum_algorithm="MD5", tag="a 1"
            ),
        )
        assert change.saved["sw_tag"] == "a 1"
        assert change.deleted == ("sw_url",)

    def test_external_url_package_minimal(self) -> None:
        change = tb.assignment_attributes(
            FW, PackageAttributes(title="t", version="v", url="https://example.invalid/fw.bin")
        )
        assert change.saved == {
            "fw_title": "t",
            "fw_version": "v",
            "fw_url": "https://example.invalid/fw.bin",
        }
        assert change.deleted == ("fw_tag", "fw_size", "fw_checksum_algorithm", "fw_checksum")

    def test_external_url_package_full(self) -> None:
        change = tb.assignment_attributes(
            FW,
            PackageAttributes(
                title="t",
                version="v",
                size=10,
                checksum="c",
                checksum_algorithm="CRC32",
                tag="x",
                url="u",
            ),
        )
        assert set(change.saved) == {
            "fw_title",
            "fw_version",
            "fw_tag",
            "fw_size",
            "fw_checksum_algorithm",
            "fw_checksum",
            "fw_url",
        }
        assert change.deleted == ()

    @pytest.mark.parametrize(
        ("typed", "sent"),
        [("0xD87F7E0C", "d87f7e0c"), ("AbC", "abc"), (" 0Xab ", "ab"), ("ef52", "ef52")],
    )
    def test_checksum_sent_in_canonical_form(self, typed: str, sent: str) -> None:
        change = tb.assignment_attributes(
            FW,
            PackageAttributes(
                title="t", version="v", size=1, checksum=typed, checksum_algorithm="CRC32"
            ),
        )
        assert change.saved["fw_checksum"] == sent

    def test_messages_delete_first_then_save(self) -> None:
        change = tb.assignment_attributes(
            FW,
            PackageAttributes(
                title="t", version="v", size=1, checksum="c", checksum_algorithm="MD5"
            ),
        )
        deletion, update = change.messages()
        assert json.loads(deletion) == {"deleted": ["fw_tag", "fw_url"]}
        assert json.loads(update)["fw_title"] == "t"

    @pytest.mark.parametrize(
        "attrs",
        [
            PackageAttributes(title="", version="v", url="u"),
            PackageAttributes(title="t", version="v", size=1, checksum="c"),
            PackageAttributes(title="t", version="v", size=-1, url="u"),
            PackageAttributes(title="t", version="v", checksum_algorithm="SHA1", url="u"),
        ],
    )
    def test_invalid_packages(self, attrs: PackageAttributes) -> None:
        with pytest.raises(ThingsBoardError):
            tb.assignment_attributes(FW, attrs)

    def test_unassign_deletes_all_nine(self) -> None:
        change = tb.unassignment_attributes(FW)
        assert change.saved == {}
        assert change.deleted == (
            "fw_title",
            "fw_version",
            "fw_ts",
            "fw_tag",
            "fw_url",
            "fw_size",
            "fw_checksum",
            "fw_checksum_algorithm",
            "fw_state",
        )
        assert change.messages() == (tb.build_attribute_deletion(change.deleted),)
        assert tb.unassignment_attributes(SW).deleted[0] == "sw_title"

    def test_attribute_keys(self) -> None:
        assert tb.attribute_key(FW, tb.OtaKey.CHECKSUM_ALGORITHM) == "fw_checksum_algorithm"
        assert [tb.attribute_key(SW, k) for k in tb.REQUESTED_KEYS] == [
            "sw_title",
            "sw_version",
            "sw_size",
            "sw_checksum",
            "sw_checksum_algorithm",
        ]

    def test_package_from_attributes(self) -> None:
        assert tb.package_from_attributes(FW, {"fw_title": "t"}) is None
        assert tb.package_from_attributes(
            FW, {"fw_title": "t", "fw_version": "v", "fw_url": "u"}
        ) == (PackageAttributes(title="t", version="v", url="u"))
        with pytest.raises(ThingsBoardError, match="fw_size"):
            tb.package_from_attributes(FW, {"fw_title": "t", "fw_version": "v", "fw_size": "12"})
        with pytest.raises(ThingsBoardError, match="fw_size"):
            tb.package_from_attributes(FW, {"fw_title": "t", "fw_version": "v", "fw_size": True})
        with pytest.raises(ThingsBoardError, match="fw_version must be a string"):
            tb.package_from_attributes(FW, {"fw_title": "t", "fw_version": 1})

    def test_assignment_is_title_and_version_both_non_empty(self) -> None:
        assert PackageAttributes(title="t", version="v", size=3).assignment == ("t", "v")
        assert PackageAttributes(title="t", version="").assignment is None
        assert PackageAttributes(title="", version="v").assignment is None


class TestFwStateMapping:
    @pytest.mark.parametrize(
        ("value", "state"),
        [
            ("QUEUED", UpdateState.PENDING),
            ("INITIATED", UpdateState.SENT),
            ("DOWNLOADING", UpdateState.DOWNLOADING),
            ("DOWNLOADED", UpdateState.DOWNLOADED),
            ("VERIFIED", UpdateState.VERIFIED),
            ("UPDATING", UpdateState.INSTALLING),
            ("UPDATED", UpdateState.SUCCEEDED),
            ("FAILED", UpdateState.FAILED),
        ],
    )
    def test_table(self, value: str, state: UpdateState) -> None:
        assert tb.fw_state_to_state(value) is state
        assert tb.STATE_TO_FW_STATE[state] == value

    @pytest.mark.parametrize("value", ["IDLE", "updated", "", "Downloading"])
    def test_unknown_values_have_no_state(self, value: str) -> None:
        assert tb.parse_fw_state(value) is None
        assert tb.fw_state_to_state(value) is None

    def test_every_enum_value_is_mapped(self) -> None:
        assert set(tb.FW_STATE_TO_STATE) == set(tb.FwState)

    def test_updated_cross_check(self) -> None:
        ok = tb.OtaReport(FW, "CIM-168", "1.0.1", "UPDATED")
        assert tb.check_updated(ok, "CIM-168", "1.0.1") is tb.UpdatedCheck.CONFIRMED
        old = tb.OtaReport(FW, "CIM-168", "1.0.0", "UPDATED")
        assert tb.check_updated(old, "CIM-168", "1.0.1") is tb.UpdatedCheck.VERSION_MISMATCH
        other = tb.OtaReport(FW, "other", "1.0.1", "UPDATED")
        assert tb.check_updated(other, "CIM-168", "1.0.1") is tb.UpdatedCheck.VERSION_MISMATCH
        bare = tb.OtaReport(FW, state="UPDATED")
        assert tb.check_updated(bare, "CIM-168", "1.0.1") is tb.UpdatedCheck.VERSION_UNKNOWN


def test_seed_003_sequence() -> None:
    """Seed 003 steps 1-9 as the hub parses them."""
    step1 = tb.extract_ota_report(
        tb.parse_telemetry(b'{"current_fw_title":"CIM-168","current_fw_version":"1.0.0"}')
    )
    assert step1 == tb.OtaReport(FW, "CIM-168", "1.0.0")
    assert tb.accept_subscription("v1/devices/me/attributes/response/+") is not None
    publish = tb.classify_publish("v1/devices/me/attributes/request/1")
    assert publish is not None and publish.request_id == 1
    tb.parse_attribute_request(
        1, b'{"sharedKeys":"fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm"}'
    )
    sub = tb.accept_subscription("v1/devices/me/attributes")
    assert sub is not None and sub.starts_attribute_pushes
    step5 = tb.extract_ota_report(
        tb.parse_telemetry(
            b'{"current_fw_title":"CIM-168","current_fw_version":"1.0.0","fw_state":"DOWNLOADING"}'
        )
    )
    assert step5 is not None and step5.canonical_state is UpdateState.DOWNLOADING
    assert tb.accept_subscription("v2/fw/response/+/chunk/+") is not None
    decision = tb.decide_chunk(
        "v2/fw/request/1/chunk/0", b"8192", remembered_size=None, package_size=3735576
    )
    assert decision == SendChunk("v2/fw/response/1/chunk/0", 0, 8192, 8192)
    for value, state in (
        ("DOWNLOADED", UpdateState.DOWNLOADED),
        ("VERIFIED", UpdateState.VERIFIED),
        ("UPDATING", UpdateState.INSTALLING),
    ):
        body = json.dumps(
            {"current_fw_title": "CIM-168", "current_fw_version": "1.0.0", "fw_state": value}
        )
        report = tb.extract_ota_report(tb.parse_telemetry(body.encode()))
        assert report is not None and report.canonical_state is state
    done = tb.extract_ota_report(
        tb.parse_telemetry(
            b'{"current_fw_title":"CIM-168","current_fw_version":"1.0.1","fw_state":"UPDATED"}'
        )
    )
    assert done is not None and done.canonical_state is UpdateState.SUCCEEDED
    assert tb.check_updated(done, "CIM-168", "1.0.1") is tb.UpdatedCheck.CONFIRMED


# --------------------------------------------------------------------------
# Section 7: chunk protocol


def chunk(
    payload: bytes,
    *,
    topic: str = "v2/fw/request/1/chunk/0",
    remembered: int | None = None,
    size: int | None = 10_000,
    external: bool = False,
    max_chunk: int = tb.DEFAULT_MAX_CHUNK_SIZE,
) -> tb.ChunkDecision:
    return tb.decide_chunk(
        topic,
        payload,
        remembered_size=remembered,
        package_size=size,
        external_url=external,
        max_chunk_size=max_chunk,
    )


class TestChunkTable:
    def test_positive_size_is_used_and_remembered(self) -> None:
        assert chunk(b"4096", topic="v2/fw/request/1/chunk/1") == SendChunk(
            "v2/fw/response/1/chunk/1", 4096, 8192, 4096
        )

    def test_empty_payload_uses_remembered_size(self) -> None:
        assert chunk(b"", topic="v2/fw/request/1/chunk/2", remembered=4096) == SendChunk(
            "v2/fw/response/1/chunk/2", 8192, 10_000, None
        )

    @pytest.mark.parametrize("payload", [b"0", b"-5", b"-0", b"+0"])
    def test_non_positive_size_uses_remembered_size(self, payload: bytes) -> None:
        assert chunk(payload, remembered=100) == SendChunk("v2/fw/response/1/chunk/0", 0, 100, None)

    def test_empty_payload_without_remembered_size_is_whole_file(self) -> None:
        assert chunk(b"") == SendChunk("v2/fw/response/1/chunk/0", 0, 10_000, None)

    def test_size_zero_is_whole_file_for_any_index(self) -> None:
        assert chunk(b"0", topic="v2/fw/request/1/chunk/5") == SendChunk(
            "v2/fw/response/1/chunk/5", 0, 10_000, None
        )

    def test_index_past_the_end_is_empty(self) -> None:
        assert chunk(b"4096", topic="v2/fw/request/1/chunk/3") == SendChunk(
            "v2/fw/response/1/chunk/3", 10_000, 10_000, 4096
        )
        huge = chunk(b"4096", topic="v2/fw/request/1/chunk/99999999999999999999")
        assert isinstance(huge, SendChunk) and huge.start == huge.end == 10_000

    def test_exactly_at_the_end(self) -> None:
        assert chunk(b"5000", topic="v2/fw/request/1/chunk/2", size=10_000) == SendChunk(
            "v2/fw/response/1/chunk/2", 10_000, 10_000, 5000
        )

    def test_empty_file(self) -> None:
        assert chunk(b"4096", size=0) == SendChunk("v2/fw/response/1/chunk/0", 0, 0, 4096)

    @pytest.mark.parametrize(
        "payload",
        [
            b"abc",
            b" 8192",
            b"8192 ",
            b"8192\n",
            b"1.5",
            b"0x10",
            b"\xff",
            "\u0663".encode(),
            b"+",
            b"-",
        ],
    )
    def test_payload_not_decimal_closes(self, payload: bytes) -> None:
        decision = chunk(payload)
        assert isinstance(decision, CloseConnection)
        assert decision.disconnect_reason == 0x8B

    def test_signed_and_zero_padded_sizes_are_decimal(self) -> None:
        assert chunk(b"+0100") == SendChunk("v2/fw/response/1/chunk/0", 0, 100, 100)

    def test_over_the_max_is_payload_too_large(self) -> None:
        decision = chunk(b"65537")
        assert decision == ChunkError("PAYLOAD_TOO_LARGE", 65537)
        assert isinstance(decision, ChunkError)
        assert decision.topic == "v2/fw/error"
        assert chunk(b"65536") == SendChunk("v2/fw/response/1/chunk/0", 0, 10_000, 65536)

    def test_remembered_size_over_the_max(self) -> None:
        assert chunk(b"", remembered=70_000) == ChunkError("PAYLOAD_TOO_LARGE", None)

    def test_configurable_max(self) -> None:
        assert chunk(b"100000", max_chunk=1 << 20) == SendChunk(
            "v2/fw/response/1/chunk/0", 0, 10_000, 100000
        )

    def test_size_limit_checked_before_package(self) -> None:
        assert chunk(b"70000", size=None) == ChunkError("PAYLOAD_TOO_LARGE", 70000)

    def test_nothing_assigned(self) -> None:
        assert chunk(b"4096", size=None) == ChunkError("NOT_FOUND", 4096)

    def test_external_url_package(self) -> None:
        assert chunk(b"4096", external=True) == ChunkError("FAILURE", 4096)

    @pytest.mark.parametrize(
        "topic", ["v2/fw/request/a/chunk/0", "v2/fw/request/1/chunk/x", "v2/fw/request/1/chunk/-1"]
    )
    def test_rid_or_index_not_digits_is_unknown_topic(self, topic: str) -> None:
        assert chunk(b"4096", topic=topic) == UnknownTopic()
        assert UnknownTopic().puback_reason == 0x90

    def test_software_replies_on_sw_and_errors_on_fw(self) -> None:
        assert chunk(b"10", topic="v2/sw/request/4/chunk/1") == SendChunk(
            "v2/sw/response/4/chunk/1", 10, 20, 10
        )
        error = chunk(b"10", topic="v2/sw/request/4/chunk/1", size=None)
        assert isinstance(error, ChunkError) and error.topic == "v2/fw/error"

    def test_sdk_wire_sequence(self) -> None:
        """10 000-byte image, chunk_size 4096: 4096 / 4096 / 1808 bytes."""
        sizes = []
        for n in range(3):
            decision = chunk(b"4096", topic=f"v2/fw/request/1/chunk/{n}")
            assert isinstance(decision, SendChunk)
            sizes.append(decision.end - decision.start)
        assert sizes == [4096, 4096, 1808]

    def test_parse_chunk_size(self) -> None:
        assert tb.parse_chunk_size(b"") is None
        assert tb.parse_chunk_size(b"8192") == 8192
        assert tb.parse_chunk_size("-3") == -3
        with pytest.raises(ThingsBoardError, match="not a decimal integer"):
            tb.parse_chunk_size(b"x")

    def test_effective_chunk_size(self) -> None:
        assert tb.effective_chunk_size(10, 20) == 10
        assert tb.effective_chunk_size(None, 20) == 20
        assert tb.effective_chunk_size(0, None) == 0
        assert tb.effective_chunk_size(-1, None) == 0

    @given(
        st.text(max_size=60),
        st.binary(max_size=30),
        st.none() | st.integers(-10, 1 << 20),
        st.none() | st.integers(0, 1 << 24),
        st.booleans(),
    )
    def test_fuzz_never_raises(
        self, topic: str, payload: bytes, remembered: int | None, size: int | None, external: bool
    ) -> None:
        decision = tb.decide_chunk(
            topic, payload, remembered_size=remembered, package_size=size, external_url=external
        )
        if isinstance(decision, SendChunk) and size is not None:
            assert 0 <= decision.start <= decision.end <= size

    @given(st.integers(0, 1 << 20), st.integers(1, 1 << 16), st.integers(0, 1 << 10))
    def test_chunks_tile_the_file(self, file_size: int, chunk_size: int, n: int) -> None:
        start, end = tb.chunk_range(file_size, chunk_size, n)
        assert start == min(chunk_size * n, file_size)
        assert end - start == max(0, min(chunk_size, file_size - chunk_size * n))


# --------------------------------------------------------------------------
# Section 8: HTTP firmware API

PKG = PackageAttributes(
    title="CIM-168", version="1.0.1", size=10_000, checksum="c", checksum_algorithm="MD5"
)


def http(
    params: dict[str, str], *, token: bool = True, pkg: PackageAttributes | None = PKG
) -> tb.HttpFirmwareDecision:
    return tb.decide_http_firmware(params, token_known=token, package=pkg)


class TestHttpFirmware:
    def test_unknown_token(self) -> None:
        assert http({"title": "CIM-168", "version": "1.0.1"}, token=False).status == 401

    def test_nothing_assigned(self) -> None:
        assert http({"title": "CIM-168", "version": "1.0.1"}, pkg=None).status == 404

    def test_external_url_package(self) -> None:
        external = PackageAttributes(title="CIM-168", version="1.0.1", url="https://x.invalid/f")
        assert http({"title": "CIM-168", "version": "1.0.1"}, pkg=external).status == 404

    @pytest.mark.parametrize(
        "params",
        [
            {"title": "other", "version": "1.0.1"},
            {"title": "CIM-168", "version": "1.0.0"},
            {"title": "", "version": "1.0.1"},
        ],
    )
    def test_title_or_version_differs(self, params: dict[str, str]) -> None:
        assert http(params).status == 400

    @pytest.mark.parametrize(
        "params",
        [
            {"version": "1.0.1"},
            {"title": "CIM-168"},
            {},
            {"title": "CIM-168", "version": "1.0.1", "size": "x"},
            {"title": "CIM-168", "version": "1.0.1", "chunk": "1.5"},
            {"title": "CIM-168", "version": "1.0.1", "size": "99999999999"},
        ],
    )
    def test_bad_parameters(self, params: dict[str, str]) -> None:
        assert http(params).status == 400

    def test_bad_parameters_come_before_token_check(self) -> None:
        assert http({}, token=False).status == 400

    def test_defaults_return_whole_file(self) -> None:
        assert http({"title": "CIM-168", "version": "1.0.1"}) == tb.HttpFirmwareDecision(
            200, 0, 10_000
        )
        assert http({"title": "CIM-168", "version": "1.0.1", "size": "", "chunk": ""}) == (
            tb.HttpFirmwareDecision(200, 0, 10_000)
        )

    def test_chunks_and_past_the_end(self) -> None:
        base = {"title": "CIM-168", "version": "1.0.1", "size": "4096"}
        assert http({**base, "chunk": "0"}) == tb.HttpFirmwareDecision(200, 0, 4096)
        assert http({**base, "chunk": "2"}) == tb.HttpFirmwareDecision(200, 8192, 10_000)
        assert http({**base, "chunk": "3"}) == tb.HttpFirmwareDecision(200, 10_000, 10_000)

    def test_size_zero_ignores_chunk(self) -> None:
        assert http({"title": "CIM-168", "version": "1.0.1", "size": "0", "chunk": "4"}) == (
            tb.HttpFirmwareDecision(200, 0, 10_000)
        )

    def test_negative_chunk_refused(self) -> None:
        assert (
            http({"title": "CIM-168", "version": "1.0.1", "size": "10", "chunk": "-1"}).status
            == 400
        )

    def test_paths_and_headers(self) -> None:
        assert tb.http_firmware_path("TOKEN") == "/api/v1/TOKEN/firmware"
        assert tb.http_firmware_path("TOKEN", SW) == "/api/v1/TOKEN/software"
        assert tb.http_firmware_headers("fw.bin", "application/octet-stream") == {
            "Content-Disposition": "attachment;filename=fw.bin",
            "x-filename": "fw.bin",
            "Content-Type": "application/octet-stream",
        }

    @given(
        st.dictionaries(
            st.sampled_from(["title", "version", "size", "chunk", "x"]), st.text(max_size=12)
        ),
        st.booleans(),
    )
    def test_fuzz_never_raises(self, params: dict[str, str], token: bool) -> None:
        decision = http(params, token=token)
        assert decision.status in {200, 400, 401, 404}


# --------------------------------------------------------------------------
# Section 10: getSessionLimits


class TestRpc:
    def test_session_limits_request(self) -> None:
        publish = tb.classify_publish("v1/devices/me/rpc/request/1")
        assert publish is not None and publish.request_id == 1
        rpc = tb.parse_rpc_request(1, b'{"method":"getSessionLimits","params":{"timeout":5000}}')
        assert rpc.method == tb.SESSION_LIMITS_METHOD
        assert rpc.params == {"timeout": 5000}
        assert rpc.response_topic == "v1/devices/me/rpc/response/1"

    def test_session_limits_answer(self) -> None:
        body = tb.build_session_limits(
            max_payload_size=65536,
            max_inflight_messages=100,
            messages="100:1",
            telemetry_messages="50:1",
            telemetry_data_points="500:1",
        )
        assert json.loads(body) == {
            "maxPayloadSize": 65536,
            "maxInflightMessages": 100,
            "rateLimits": {
                "messages": "100:1",
                "telemetryMessages": "50:1",
                "telemetryDataPoints": "500:1",
            },
        }

    @pytest.mark.parametrize("payload", [b"{}", b'{"method":1}', b"[]", b"x"])
    def test_bad_rpc(self, payload: bytes) -> None:
        with pytest.raises(ThingsBoardError):
            tb.parse_rpc_request(1, payload)

    @given(st.binary(max_size=200))
    def test_fuzz(self, payload: bytes) -> None:
        with contextlib.suppress(ThingsBoardError):
            tb.parse_rpc_request(1, payload)


@given(st.text(max_size=80))
def test_classify_publish_fuzz(topic: str) -> None:
    with contextlib.suppress(ThingsBoardError):
        tb.classify_publish(topic)


@given(st.binary(max_size=200))
def test_basic_credentials_fuzz(payload: bytes) -> None:
    with contextlib.suppress(ThingsBoardError):
        tb.parse_basic_credentials(payload)


class TestOtaReports:
    def test_both_packages_from_one_message_and_none_without_keys(self) -> None:
        entries = tb.parse_telemetry(
            b'{"fw_state":"DOWNLOADING","current_sw_version":"3","temperature":21}'
        )
        reports = tb.extract_ota_reports(entries)
        assert [(r.package, r.state, r.current_version) for r in reports] == [
            (FW, "DOWNLOADING", None),
            (SW, None, "3"),
        ]
        assert tb.extract_ota_reports(tb.parse_telemetry(b'{"temperature":21}')) == []

    def test_a_repeat_is_the_same_whatever_its_timestamp(self) -> None:
        first = tb.extract_ota_reports(
            tb.parse_telemetry(b'{"ts":1,"values":{"fw_state":"DOWNLOADING"}}')
        )[0]
        again = tb.extract_ota_reports(
            tb.parse_telemetry(b'{"ts":2,"values":{"fw_state":"DOWNLOADING"}}')
        )[0]
        moved = tb.extract_ota_reports(tb.parse_telemetry(b'{"fw_state":"DOWNLOADED"}'))[0]
        software = tb.extract_ota_reports(tb.parse_telemetry(b'{"sw_state":"DOWNLOADING"}'))[0]
        assert first.ts != again.ts and first.same_as(again)
        assert not first.same_as(moved)
        assert not first.same_as(software)
