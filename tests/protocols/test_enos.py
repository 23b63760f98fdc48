"""The EnOS dialect against every table and rule of its reference."""

from __future__ import annotations

import contextlib
import hashlib
import json
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otahub.protocols import enos
from otahub.protocols.enos import EnosCode, EnosError, Firmware, OtaKind, Progress
from otahub.protocols.states import UpdateState


def content(client_id: str, dk: str, pk: str, ts: str | None, secret: str) -> bytes:
    """The reference's formula, written out by hand."""
    text = "clientId" + client_id + "deviceKey" + dk + "productKey" + pk
    if ts is not None:
        text += "timestamp" + ts
    return (text + secret).encode()


# --------------------------------------------------------------------------
# Section 2: login


class TestLoginWorkedExample:
    CLIENT_ID = "123456|securemode=2,signmethod=sha256,timestamp=1548753362502|"
    USERNAME = "test&654321"
    PASSWORD = "B99032D49C706F7B27B22AB5CD2DD3C56A31E1BCBBC83BA0A2A6BB3272FBB166"

    def test_hand_computed_value_matches_the_doc(self) -> None:
        digest = hashlib.sha256(content("123456", "test", "654321", "1548753362502", "abcdefg"))
        assert digest.hexdigest().upper() == self.PASSWORD

    def test_parse(self) -> None:
        login = enos.parse_login(self.CLIENT_ID, self.USERNAME, self.PASSWORD)
        assert login == enos.Login(
            client_id="123456",
            device_key="test",
            product_key="654321",
            secure_mode=enos.SecureMode.STATIC,
            sign_method=enos.SignMethod.SHA256,
            timestamp="1548753362502",
            password=self.PASSWORD,
        )
        assert login.secret_kind is enos.SecretKind.DEVICE_SECRET

    def test_verify(self) -> None:
        login = enos.parse_login(self.CLIENT_ID, self.USERNAME, self.PASSWORD)
        assert login.verify("abcdefg")
        assert not login.verify("abcdefh")
        assert not login.verify("")

    def test_hex_case_is_ignored(self) -> None:
        for password in (
            self.PASSWORD,
            self.PASSWORD.lower(),
            self.PASSWORD[:10].lower() + self.PASSWORD[10:],
        ):
            assert enos.parse_login(self.CLIENT_ID, self.USERNAME, password).verify("abcdefg")

    def test_password_as_bytes(self) -> None:
        login = enos.parse_login(self.CLIENT_ID, self.USERNAME, self.PASSWORD.encode())
        assert login.verify("abcdefg")

    def test_doc_header_spaces_are_trimmed(self) -> None:
        client_id = "123456|securemode=2, signmethod=sha256, timestamp=1548753362502|"
        assert enos.parse_login(client_id, self.USERNAME, self.PASSWORD).verify("abcdefg")

    def test_build_login_reproduces_the_example(self) -> None:
        creds = enos.build_login(
            "654321", "test", "abcdefg", timestamp="1548753362502", client_id="123456"
        )
        assert creds == enos.LoginCredentials(self.CLIENT_ID, self.USERNAME, self.PASSWORD)


class TestSdkVariants:
    def test_python_sdk(self) -> None:
        # deviceKey as client id, hmacsha256 (= plain SHA-256), float timestamp, lowercase hex.
        ts = "1795459275275.31"
        password = hashlib.sha256(content("dk1", "dk1", "pk1", ts, "s3cret")).hexdigest()
        login = enos.parse_login(
            f"dk1|securemode=2,signmethod=hmacsha256,timestamp={ts}|", "dk1&pk1", password
        )
        assert login.sign_method is enos.SignMethod.SHA256
        assert login.timestamp == ts
        assert login.verify("s3cret")
        assert not login.verify("wrong")

    def test_integer_timestamp(self) -> None:
        password = hashlib.sha256(content("dk1", "dk1", "pk1", "1700000000000", "s")).hexdigest()
        login = enos.parse_login(
            "dk1|securemode=2,signmethod=sha256,timestamp=1700000000000|", "dk1&pk1", password
        )
        assert login.verify("s")

    def test_java_sdk_extras_are_signed_verbatim(self) -> None:
        cid = "dk1{ip=10.0.0.2,version=2.3}"
        password = hashlib.sha256(content(cid, "dk1", "pk1", "1700000000000", "s")).hexdigest()
        login = enos.parse_login(
            f"{cid}|securemode=2,signmethod=sha256,timestamp=1700000000000|", "dk1&pk1", password
        )
        assert login.client_id == cid
        assert login.verify("s")

    def test_java_sdk_sha1_uppercase(self) -> None:
        password = hashlib.sha1(content("dk1", "dk1", "pk1", "1", "s")).hexdigest().upper()
        login = enos.parse_login(
            "dk1|securemode=2,signmethod=sha1,timestamp=1|", "dk1&pk1", password
        )
        assert login.sign_method is enos.SignMethod.SHA1
        assert login.verify("s")

    def test_java_sdk_md5_lowercase(self) -> None:
        password = hashlib.md5(content("dk1", "dk1", "pk1", "1", "s")).hexdigest()
        login = enos.parse_login(
            "dk1|securemode=2,signmethod=md5,timestamp=1|", "dk1&pk1", password
        )
        assert login.verify("s")

    def test_old_java_sdk_hmacsha1_uppercase(self) -> None:
        password = hashlib.sha1(content("dk1", "dk1", "pk1", "5", "s")).hexdigest().upper()
        login = enos.parse_login(
            "dk1|securemode=2,signmethod=hmacsha1,timestamp=5|", "dk1&pk1", password
        )
        assert login.verify("s")

    def test_hmacmd5_alias(self) -> None:
        password = hashlib.md5(content("dk1", "dk1", "pk1", "5", "s")).hexdigest()
        login = enos.parse_login(
            "dk1|securemode=2,signmethod=HmacMD5,timestamp=5|", "dk1&pk1", password
        )
        assert login.sign_method is enos.SignMethod.MD5
        assert login.verify("s")

    def test_c_sdk(self) -> None:
        # pk.dk as client id, constant year-2050 timestamp (never checked), uppercase SHA-256.
        cid = "pk1.dk1"
        password = (
            hashlib.sha256(content(cid, "dk1", "pk1", "2524608000000", "s")).hexdigest().upper()
        )
        login = enos.parse_login(
            f"{cid}|securemode=2,signmethod=sha256,timestamp=2524608000000|", "dk1&pk1", password
        )
        assert login.verify("s")

    def test_missing_sign_method_falls_back_to_sha1(self) -> None:
        password = hashlib.sha1(content("dk1", "dk1", "pk1", "5", "s")).hexdigest()
        login = enos.parse_login("dk1|securemode=2,timestamp=5|", "dk1&pk1", password)
        assert login.sign_method is enos.SignMethod.SHA1
        assert login.verify("s")

    def test_missing_timestamp_is_left_out_of_the_content(self) -> None:
        password = hashlib.sha256(content("dk1", "dk1", "pk1", None, "s")).hexdigest()
        login = enos.parse_login("dk1|securemode=2,signmethod=sha256|", "dk1&pk1", password)
        assert login.timestamp is None
        assert login.verify("s")

    def test_missing_trailing_bar_is_tolerated(self) -> None:
        password = hashlib.sha256(content("dk1", "dk1", "pk1", "5", "s")).hexdigest()
        assert enos.parse_login(
            "dk1|securemode=2,signmethod=sha256,timestamp=5", "dk1&pk1", password
        ).verify("s")

    def test_wrong_secret_and_tampering(self) -> None:
        password = hashlib.sha256(content("dk1", "dk1", "pk1", "5", "s")).hexdigest()
        good = "dk1|securemode=2,signmethod=sha256,timestamp=5|"
        assert not enos.parse_login(good, "dk1&pk1", password).verify("S")
        assert not enos.parse_login(good.replace("=5", "=6"), "dk1&pk1", password).verify("s")
        assert not enos.parse_login(good, "dk2&pk1", password).verify("s")
        assert not enos.parse_login(good, "dk1&pk1", "é" * 64).verify("s")


class TestSecureModes:
    @pytest.mark.parametrize(
        ("mode", "kind"),
        [
            ("2", enos.SecretKind.DEVICE_SECRET),
            ("3", enos.SecretKind.PRODUCT_SECRET),
            ("4", enos.SecretKind.PRODUCT_SECRET),
        ],
    )
    def test_secret_per_mode(self, mode: str, kind: enos.SecretKind) -> None:
        login = enos.parse_login(f"c|securemode={mode},signmethod=sha256,timestamp=1|", "d&p", "x")
        assert login.secret_kind is kind

    def test_integration_channel_build(self) -> None:
        creds = enos.build_login(
            "pk1",
            enos.INTEGRATION_DEVICE_KEY,
            "productSecret",
            timestamp="1",
            secure_mode=enos.SecureMode.INTEGRATION,
        )
        assert creds.client_id == "pk1|securemode=4,signmethod=sha256,timestamp=1|"
        assert creds.username == "%channel%&pk1"
        login = enos.parse_login(creds.client_id, creds.username, creds.password)
        assert login.secure_mode is enos.SecureMode.INTEGRATION
        assert login.verify("productSecret")

    def test_build_variants(self) -> None:
        creds = enos.build_login(
            "pk1", "dk1", "s", timestamp="7", sign_method=enos.SignMethod.MD5, uppercase=False
        )
        assert creds.password == hashlib.md5(content("dk1", "dk1", "pk1", "7", "s")).hexdigest()
        assert enos.parse_login(creds.client_id, creds.username, creds.password).verify("s")
        with pytest.raises(EnosError):
            enos.build_login("pk|1", "dk1", "s", timestamp="1")


class TestLoginErrors:
    @pytest.mark.parametrize(
        ("client_id", "username", "password", "fragment"),
        [
            ("c|securemode=2|", None, "x", "username"),
            ("c|securemode=2|", "", "x", "username"),
            ("c|securemode=2|", "nokeys", "x", "deviceKey"),
            ("c|securemode=2|", "&pk", "x", "deviceKey"),
            ("c|securemode=2|", "dk&", "x", "deviceKey"),
            ("plain-client-id", "d&p", "x", "securemode"),
            ("c|signmethod=sha256|", "d&p", "x", "lacks securemode"),
            ("c|securemode=1|", "d&p", "x", "unsupported securemode"),
            ("c|securemode=x|", "d&p", "x", "unsupported securemode"),
            ("c|securemode=2,signmethod=sha512|", "d&p", "x", "unknown sign method"),
            ("c|securemode=2,garbage|", "d&p", "x", "key=value"),
            ("c|securemode=2|", "d&p", None, "password"),
            ("c|securemode=2|", "d&p", b"\xff", "UTF-8"),
        ],
    )
    def test_refused(
        self, client_id: str, username: str | None, password: str | bytes | None, fragment: str
    ) -> None:
        with pytest.raises(EnosError, match=fragment):
            enos.parse_login(client_id, username, password)

    def test_connack_code(self) -> None:
        assert enos.CONNACK_BAD_CREDENTIALS == 4

    @given(
        st.text(max_size=80),
        st.none() | st.text(max_size=40),
        st.none() | st.binary(max_size=70) | st.text(max_size=70),
    )
    def test_fuzz(self, client_id: str, username: str | None, password: bytes | str | None) -> None:
        with contextlib.suppress(EnosError):
            enos.parse_login(client_id, username, password).verify("secret")


def test_sign_methods_case_insensitive() -> None:
    for name, method in [
        ("sha256", enos.SignMethod.SHA256),
        ("SHA256", enos.SignMethod.SHA256),
        ("hmacsha256", enos.SignMethod.SHA256),
        ("HmacSHA256", enos.SignMethod.SHA256),
        ("sha1", enos.SignMethod.SHA1),
        ("hmacsha1", enos.SignMethod.SHA1),
        ("md5", enos.SignMethod.MD5),
        ("hmacmd5", enos.SignMethod.MD5),
    ]:
        assert enos.parse_sign_method(name) is method


def test_sign_content_sorts_keys() -> None:
    assert enos.sign_content({"b": "2", "a": "1"}, "S") == "a1b2S"


# --------------------------------------------------------------------------
# Section 3: envelope and error codes


class TestEnvelope:
    def test_request(self) -> None:
        req = enos.parse_request(
            b'{"id":"123","version":"1.0","method":"ota.device.inform","params":{"version":"xxxxxxxx"}}'
        )
        assert req == enos.EnosRequest("123", {"version": "xxxxxxxx"}, "ota.device.inform", "1.0")

    @pytest.mark.parametrize("request_id", ["123", 123, 1.5, "0001"])
    def test_reply_echoes_the_same_json_value(self, request_id: object) -> None:
        req = enos.parse_request(json.dumps({"id": request_id, "params": {}}).encode())
        reply = json.loads(enos.build_reply(req.id))
        assert reply["id"] == request_id
        assert type(reply["id"]) is type(request_id)

    def test_code_is_an_integer(self) -> None:
        assert enos.build_reply("123") == b'{"id":"123","code":200,"data":{}}'
        assert json.loads(enos.build_reply("1", EnosCode.DEVICE_TASK_NOT_FOUND))["code"] == 764

    def test_missing_id_and_params(self) -> None:
        req = enos.parse_request(b'{"method":"x"}')
        assert req.id is None and req.params == {}
        assert enos.build_reply(None) == b'{"code":200,"data":{}}'
        assert enos.parse_request(b'{"id":null,"params":null}').id is None

    def test_method_is_not_checked(self) -> None:
        for method in ("ota.device.inform", "ota.inform", "Ota.device.getversion", "whatever", 5):
            req = enos.parse_request(
                json.dumps({"id": "1", "method": method, "params": {}}).encode()
            )
            assert req.params == {}

    def test_empty_payload_is_1251(self) -> None:
        with pytest.raises(EnosError) as info:
            enos.parse_request(b"")
        assert info.value.code == EnosCode.EMPTY_PAYLOAD == 1251

    @pytest.mark.parametrize(
        "payload",
        [
            b"{",
            b"[]",
            b'"x"',
            b'{"id":true}',
            b'{"id":[1]}',
            b'{"params":[]}',
            b'{"params":"x"}',
            b"\xff",
        ],
    )
    def test_malformed_is_1220(self, payload: bytes) -> None:
        with pytest.raises(EnosError) as info:
            enos.parse_request(payload)
        assert info.value.code == EnosCode.PAYLOAD_FORMAT_ERROR == 1220

    def test_error_codes(self) -> None:
        assert EnosCode.PAYLOAD_FORMAT_ERROR == 1220
        assert EnosCode.EMPTY_PAYLOAD == 1251
        assert EnosCode.METHODS_NOT_CONSISTENT == 1260
        assert EnosCode.MESSAGE_TOO_LARGE == 1008
        assert EnosCode.NO_WRITE_PERMISSION == 1009
        assert EnosCode.DEVICE_TASK_NOT_FOUND == 764
        assert EnosCode.DEVICE_TASK_NOT_START == 765
        assert enos.CODE_MESSAGES[764] == "Device task not found"
        assert enos.CODE_MESSAGES[765] == "Device task not start"
        assert enos.CODE_MESSAGES[1260] == "Methods not consistent"
        assert enos.CODE_MESSAGES[1009] == "Publish to topic with no write permission"

    def test_error_reply(self) -> None:
        assert json.loads(enos.build_error_reply("9", EnosCode.DEVICE_TASK_NOT_FOUND)) == {
            "id": "9",
            "code": 764,
            "data": {},
            "message": "Device task not found",
        }
        assert json.loads(enos.build_error_reply("9", 1009, "nope"))["message"] == "nope"

    @given(st.binary(max_size=300))
    def test_fuzz_request(self, payload: bytes) -> None:
        with contextlib.suppress(EnosError):
            enos.parse_request(payload)

    @given(st.binary(max_size=300))
    def test_fuzz_reply(self, payload: bytes) -> None:
        with contextlib.suppress(EnosError):
            enos.parse_reply(payload)


class TestReplies:
    def test_success_reply(self) -> None:
        reply = enos.parse_reply(b'{"id":"123","code":200,"data":{}}')
        assert reply == enos.EnosReply("123", 200, {}, None)
        assert reply.ok

    def test_sdk_handler_returned_a_reply(self) -> None:
        reply = enos.parse_reply(b'{"id": "5", "code": 200, "data": "", "message": "ok"}')
        assert reply.ok and reply.data == "" and reply.message == "ok"

    def test_sdk_handler_raised_string_code(self) -> None:
        reply = enos.parse_reply(
            b'{"id": "5", "code": "500", "message": "command handler execution failed"}'
        )
        assert reply.code == EnosCode.HANDLER_FAILED and not reply.ok

    def test_sdk_no_handler_string_code(self) -> None:
        reply = enos.parse_reply(
            b'{"id": "5", "code": "1101", "message": "downstream command handler not registered"}'
        )
        assert reply.code == EnosCode.HANDLER_NOT_REGISTERED

    @pytest.mark.parametrize(
        "payload",
        [b'{"id":"1"}', b'{"code":"abc"}', b'{"code":true}', b'{"code":1.5}', b'{"code":"--5"}'],
    )
    def test_bad_code(self, payload: bytes) -> None:
        with pytest.raises(EnosError, match="code"):
            enos.parse_reply(payload)

    def test_negative_string_code(self) -> None:
        assert enos.parse_reply(b'{"code":"-1"}').code == -1


# --------------------------------------------------------------------------
# Section 4: topics


class TestTopics:
    @pytest.mark.parametrize("kind", list(OtaKind))
    @pytest.mark.parametrize("reply", [False, True])
    def test_round_trip(self, kind: OtaKind, reply: bool) -> None:
        topic = enos.ota_topic("pk1", "dk1", kind, reply=reply)
        assert topic == f"/sys/pk1/dk1/ota/device/{kind.value}{'_reply' if reply else ''}"
        parsed = enos.parse_ota_topic(topic)
        assert parsed == enos.OtaTopic("pk1", "dk1", kind, reply)
        assert str(parsed) == topic

    def test_reply_topic_is_request_plus_suffix(self) -> None:
        assert enos.reply_topic("/sys/p/d/ota/device/inform") == "/sys/p/d/ota/device/inform_reply"
        request = enos.OtaTopic("p", "d", OtaKind.PROGRESS)
        assert str(request.reply()) == "/sys/p/d/ota/device/progress_reply"
        with pytest.raises(EnosError):
            request.reply().reply()

    def test_directions(self) -> None:
        assert enos.OtaTopic("p", "d", OtaKind.INFORM).from_device
        assert enos.OtaTopic("p", "d", OtaKind.PROGRESS).from_device
        assert enos.OtaTopic("p", "d", OtaKind.GETVERSION).from_device
        assert not enos.OtaTopic("p", "d", OtaKind.UPGRADE).from_device
        assert enos.OtaTopic("p", "d", OtaKind.UPGRADE, True).from_device
        assert not enos.OtaTopic("p", "d", OtaKind.INFORM, True).from_device

    @pytest.mark.parametrize(
        "topic",
        [
            "sys/p/d/ota/device/inform",
            "/sys/p/d/ota/device/request",
            "/sys/p/d/ota/device/inform_reply_reply",
            "/sys//d/ota/device/inform",
            "/sys/p//ota/device/inform",
            "/sys/p/d/ota/device/inform/x",
            "/sys/p/d/thing/device/inform",
            "/sys/+/d/ota/device/inform",
            "/ext/session/p/d/thing/activate/info",
            "",
        ],
    )
    def test_not_ota_topics(self, topic: str) -> None:
        assert enos.parse_ota_topic(topic) is None

    def test_access(self) -> None:
        own = {("pk1", "dk1"), ("subpk", "subdk")}
        assert (
            enos.topic_access(enos.OtaTopic("pk1", "dk1", OtaKind.INFORM), own)
            is enos.TopicAccess.OWN
        )
        assert (
            enos.topic_access(enos.OtaTopic("subpk", "subdk", OtaKind.PROGRESS), own)
            is enos.TopicAccess.OWN
        )
        other = enos.OtaTopic("pk2", "dk2", OtaKind.INFORM)
        assert enos.topic_access(other, own) is enos.TopicAccess.FOREIGN_REQUEST

    def test_python_sdk_upgrade_reply_to_none_none(self) -> None:
        topic = enos.parse_ota_topic("/sys/None/None/ota/device/upgrade_reply")
        assert topic is not None
        assert enos.topic_access(topic, {("pk1", "dk1")}) is enos.TopicAccess.FOREIGN_REPLY

    def test_invalid_keys(self) -> None:
        for pk, dk in [("", "d"), ("p", ""), ("p/x", "d"), ("p", "d+"), ("#", "d")]:
            with pytest.raises(EnosError):
                enos.ota_topic(pk, dk, OtaKind.INFORM)

    def test_activation_topic(self) -> None:
        assert enos.activate_info_topic("p", "d") == "/ext/session/p/d/thing/activate/info"
        assert json.loads(
            enos.build_activate_info(
                "1", asset_id="a", product_key="p", device_key="d", device_secret="s"
            )
        ) == {
            "id": "1",
            "version": "1.0",
            "method": "thing.activate.info",
            "params": {"assetId": "a", "productKey": "p", "deviceKey": "d", "deviceSecret": "s"},
        }

    @given(st.text(max_size=60))
    def test_fuzz(self, topic: str) -> None:
        parsed = enos.parse_ota_topic(topic)
        if parsed is not None:
            assert str(parsed) == topic


# --------------------------------------------------------------------------
# Section 5: payloads

SEED_FIRMWARE = Firmware(
    version="v1.0",
    sign="xxxxxxx",
    sign_method="md5",
    file_url="/1b30e0ea83002000/ota/kadak13",
    file_size=1024,
)


class TestPayloads:
    def test_inform(self) -> None:
        body = enos.build_inform("123", "xxxxxxxx")
        assert json.loads(body) == {
            "id": "123",
            "version": "1.0",
            "method": "ota.device.inform",
            "params": {"version": "xxxxxxxx"},
        }
        assert enos.parse_inform(enos.parse_request(body)) == "xxxxxxxx"

    @pytest.mark.parametrize("params", ["{}", '{"version":1.0}', '{"version":null}'])
    def test_bad_inform(self, params: str) -> None:
        with pytest.raises(EnosError) as info:
            enos.parse_inform(enos.parse_request(f'{{"id":"1","params":{params}}}'.encode()))
        assert info.value.code == 1220

    def test_upgrade_exact_seed_shape(self) -> None:
        body = enos.build_upgrade("123", SEED_FIRMWARE)
        assert json.loads(body) == {
            "id": "123",
            "version": "1.0",
            "method": "ota.device.upgrade",
            "params": {
                "version": "v1.0",
                "sign": "xxxxxxx",
                "signMethod": "md5",
                "fileUrl": "/1b30e0ea83002000/ota/kadak13",
                "fileSize": 1024,
            },
        }
        assert enos.parse_firmware(enos.parse_request(body).params) == SEED_FIRMWARE

    def test_upgrade_sha256_extension(self) -> None:
        fw = Firmware("2", "ab", "http://h/f", 5, sha256="cd")
        params = enos.parse_request(enos.build_upgrade("1", fw)).params
        assert params["sha256"] == "cd"
        assert enos.parse_firmware(params) == fw

    @pytest.mark.parametrize("size", [-1, 2**31])
    def test_file_size_must_fit_java_int(self, size: int) -> None:
        with pytest.raises(EnosError, match="fileSize"):
            enos.build_upgrade("1", Firmware("v", "s", "u", size))
        enos.build_upgrade("1", Firmware("v", "s", "u", 2**31 - 1))

    @pytest.mark.parametrize(
        "params",
        [
            {"version": 1, "sign": "s", "signMethod": "md5", "fileUrl": "u", "fileSize": 1},
            {"version": "v", "sign": "s", "signMethod": "md5", "fileUrl": "u", "fileSize": 1.5},
            {"version": "v", "sign": "s", "signMethod": "md5", "fileUrl": "u", "fileSize": "1"},
            {"version": "v", "sign": "s", "signMethod": "md5", "fileUrl": "u", "fileSize": True},
            {"version": "v", "sign": "s", "signMethod": "md5", "fileUrl": "u"},
            {"version": "v", "signMethod": "md5", "fileUrl": "u", "fileSize": 1},
            {
                "version": "v",
                "sign": "s",
                "signMethod": "md5",
                "fileUrl": "u",
                "fileSize": 1,
                "sha256": 5,
            },
        ],
    )
    def test_bad_firmware_params(self, params: dict[str, object]) -> None:
        with pytest.raises(EnosError):
            enos.parse_firmware(params)  # type: ignore[arg-type]

    def test_getversion(self) -> None:
        body = enos.build_getversion("123")
        assert json.loads(body) == {
            "id": "123",
            "version": "1.0",
            "method": "ota.device.getversion",
            "params": {},
        }
        reply = enos.build_getversion_reply("123", [SEED_FIRMWARE])
        assert json.loads(reply) == {
            "id": "123",
            "code": 200,
            "data": [
                {
                    "version": "v1.0",
                    "sign": "xxxxxxx",
                    "signMethod": "md5",
                    "fileUrl": "/1b30e0ea83002000/ota/kadak13",
                    "fileSize": 1024,
                }
            ],
        }
        assert enos.parse_getversion_data(enos.parse_reply(reply).data) == [SEED_FIRMWARE]

    def test_getversion_nothing_available(self) -> None:
        reply = enos.build_getversion_reply("2", [])
        assert json.loads(reply)["data"] == []
        assert enos.parse_getversion_data(enos.parse_reply(reply).data) == []

    @pytest.mark.parametrize("data", [{}, "x", None, [1]])
    def test_bad_getversion_data(self, data: object) -> None:
        with pytest.raises(EnosError):
            enos.parse_getversion_data(data)  # type: ignore[arg-type]

    def test_python_sdk_wire_requests(self) -> None:
        inform = enos.parse_request(
            b'{"id": "1", "version": "1.0", "method": "ota.inform", "params": {"version": "1.0"}}'
        )
        assert enos.parse_inform(inform) == "1.0"
        getversion = enos.parse_request(
            b'{"id": "2", "version": "1.0", "method": "Ota.device.getversion", "params": {}}'
        )
        assert getversion.id == "2"
        progress = enos.parse_request(
            b'{"id": "3", "version": "1.0", "method": "ota.progress", '
            b'"params": {"step": "10", "desc": "d10"}}'
        )
        assert enos.parse_progress(progress) == Progress(10, "d10")

    def test_methods(self) -> None:
        assert enos.METHODS[OtaKind.PROGRESS] == "ota.device.progress"
        assert enos.PYTHON_SDK_METHODS[OtaKind.GETVERSION] == "Ota.device.getversion"


def progress(params: str) -> Progress:
    return enos.parse_progress(enos.parse_request(f'{{"id":"1","params":{params}}}'.encode()))


class TestProgress:
    def test_seed_shape(self) -> None:
        body = enos.build_progress("123", 1, "xxxxxxxx")
        assert json.loads(body) == {
            "id": "123",
            "version": "1.0",
            "method": "ota.device.progress",
            "params": {"step": "1", "desc": "xxxxxxxx"},
        }
        assert enos.parse_progress(enos.parse_request(body)) == Progress(1, "xxxxxxxx")
        assert json.loads(enos.build_progress("1", 5))["params"] == {"step": "5"}

    @pytest.mark.parametrize("step", [0, 1, 50, 99, 100])
    def test_percentages(self, step: int) -> None:
        p = progress(f'{{"step":"{step}"}}')
        assert p.percent == step
        assert not p.is_failure
        assert p.failure is None and p.failure_reason is None

    @pytest.mark.parametrize(
        ("step", "failure", "reason"),
        [
            (-1, enos.ProgressFailure.UPGRADE_FAILED, "upgrade failure"),
            (-2, enos.ProgressFailure.DOWNLOAD_FAILED, "download failure"),
            (-3, enos.ProgressFailure.VERIFICATION_FAILED, "verification failure"),
            (-4, enos.ProgressFailure.BURNING_FAILED, "burning (flash write) failure"),
            (-5, enos.ProgressFailure.DECLINED, "declined by device"),
        ],
    )
    def test_documented_failures(
        self, step: int, failure: enos.ProgressFailure, reason: str
    ) -> None:
        p = progress(f'{{"step":"{step}"}}')
        assert p.is_failure and p.percent is None
        assert p.failure is failure
        assert p.failure_reason == reason
        assert (
            progress(f'{{"step":"{step}","desc":"disk full"}}').failure_reason
            == f"{reason}: disk full"
        )
        assert p.canonical_state is UpdateState.FAILED

    def test_custom_failure_below_minus_five(self) -> None:
        p = progress('{"step":"-42","desc":"battery too low"}')
        assert p.is_failure and p.failure is None
        assert p.failure_reason == "battery too low"
        assert progress('{"step":"-6"}').failure_reason == "custom failure -6"

    def test_integer_step_accepted(self) -> None:
        assert progress('{"step":7}') == Progress(7)

    def test_non_string_desc_becomes_text(self) -> None:
        assert progress('{"step":"-1","desc":20}').desc == "20"

    @pytest.mark.parametrize(
        "params",
        [
            "{}",
            '{"step":"101"}',
            '{"step":"abc"}',
            '{"step":"1.5"}',
            '{"step":""}',
            '{"step":" 5"}',
            '{"step":null}',
            '{"step":true}',
            '{"step":"+5"}',
        ],
    )
    def test_bad_steps(self, params: str) -> None:
        with pytest.raises(EnosError) as info:
            progress(params)
        assert info.value.code == 1220

    def test_build_rejects_over_100(self) -> None:
        with pytest.raises(EnosError):
            enos.build_progress("1", 101)

    @given(st.one_of(st.integers(), st.text(max_size=8), st.none(), st.floats(allow_nan=False)))
    def test_fuzz_step(self, step: object) -> None:
        with contextlib.suppress(EnosError):
            progress(json.dumps({"step": step}))


# --------------------------------------------------------------------------
# Section 9: mapping


class TestMapping:
    @pytest.mark.parametrize(
        ("step", "state"),
        [
            (0, UpdateState.DOWNLOADING),
            (42, UpdateState.DOWNLOADING),
            (99, UpdateState.DOWNLOADING),
            (100, UpdateState.INSTALLING),
            (-1, UpdateState.FAILED),
            (-5, UpdateState.FAILED),
            (-99, UpdateState.FAILED),
        ],
    )
    def test_steps(self, step: int, state: UpdateState) -> None:
        assert enos.progress_to_state(Progress(step)) is state

    def test_inform_of_target_succeeds(self) -> None:
        assert enos.inform_outcome("v1.0", "v1.0", completed=False) is UpdateState.SUCCEEDED
        assert enos.inform_outcome("v1.0", "v1.0", completed=True) is UpdateState.SUCCEEDED

    def test_inform_of_other_version(self) -> None:
        assert enos.inform_outcome("v0.9", "v1.0", completed=False) is None
        assert enos.inform_outcome("v0.9", "v1.0", completed=True) is UpdateState.FAILED
        assert enos.ROLLED_BACK_REASON == "rolled back"


# --------------------------------------------------------------------------
# Section 7: HTTP broker auth


class TestHttpAuth:
    def test_sign_by_hand(self) -> None:
        expected = hashlib.sha256(
            b"deviceKey"
            + b"dk1"
            + b"lifetime"
            + b"300000"
            + b"productKey"
            + b"pk1"
            + b"signMethod"
            + b"sha256"
            + b"sec"
        ).hexdigest()
        assert enos.http_auth_sign("pk1", "dk1", 300000, "sec") == expected

    def test_round_trip(self) -> None:
        body = enos.build_http_auth_request(
            "pk1", "dk1", "sec", ip_address="10.0.0.2", sdk_version="2.3"
        )
        assert json.loads(body)["clientInfo"] == {"ipAddress": "10.0.0.2", "sdkVersion": "2.3"}
        auth = enos.parse_http_auth(body)
        assert auth.lifetime == 300000
        assert auth.verify("pk1", "dk1", "sec")
        assert not auth.verify("pk1", "dk1", "wrong")
        assert not auth.verify("pk1", "dk2", "sec")

    def test_uppercase_sign_accepted(self) -> None:
        sig = enos.http_auth_sign("pk1", "dk1", 1000, "sec").upper()
        auth = enos.parse_http_auth(
            json.dumps({"signMethod": "sha256", "lifetime": 1000, "sign": sig}).encode()
        )
        assert auth.verify("pk1", "dk1", "sec")

    @pytest.mark.parametrize(
        "body",
        [
            {"lifetime": 1, "sign": "x"},
            {"signMethod": "sha512", "lifetime": 1, "sign": "x"},
            {"signMethod": "sha256", "lifetime": "1", "sign": "x"},
            {"signMethod": "sha256", "lifetime": 0, "sign": "x"},
            {"signMethod": "sha256", "lifetime": 1},
        ],
    )
    def test_bad_bodies(self, body: dict[str, object]) -> None:
        with pytest.raises(EnosError):
            enos.parse_http_auth(json.dumps(body).encode())

    def test_paths_and_response(self) -> None:
        assert enos.http_auth_path("pk", "dk") == "/auth/pk/dk"
        assert enos.http_download_path("pk", "dk") == "/multipart/sys/pk/dk/file/download"
        assert json.loads(enos.build_http_auth_response("S1")) == {
            "code": 200,
            "message": "OK",
            "data": {"sessionId": "S1"},
        }

    def test_download_target_encodes_the_query(self) -> None:
        target = enos.http_download_target("pk", "dk", "a+b/c=", "/1b30e0ea83002000/ota/k d?x&y")
        path, _, query = target.partition("?")
        assert path == "/multipart/sys/pk/dk/file/download"
        assert parse_qs(query, strict_parsing=True) == {
            "sessionId": ["a+b/c="],
            "fileUri": ["/1b30e0ea83002000/ota/k d?x&y"],
            "category": ["ota"],
        }
        with pytest.raises(EnosError):
            enos.http_download_target("pk", "d/k", "s", "/f")

    def test_auth_response_round_trip(self) -> None:
        assert enos.parse_http_auth_response(enos.build_http_auth_response("S1")) == "S1"
        # what enos-http-sdk reads: code as an integer, data.sessionId
        sdk = b'{"code":200,"message":"","data":{"sessionId":"abc","expire":1}}'
        assert enos.parse_http_auth_response(sdk) == "abc"

    def test_refused_login_carries_code_and_message(self) -> None:
        answer = enos.build_http_answer(401, "invalid sign or unknown device")
        assert json.loads(answer) == {
            "code": 401,
            "message": "invalid sign or unknown device",
            "data": None,
        }
        with pytest.raises(EnosError, match="code 401: invalid sign") as refused:
            enos.parse_http_auth_response(answer)
        assert refused.value.code == 401

    @pytest.mark.parametrize(
        "payload",
        [
            b"",
            b"[]",
            b'{"code":200,"data":null}',
            b'{"code":200,"data":{"sessionId":""}}',
            b'{"code":200,"data":{"sessionId":7}}',
            b'{"data":{"sessionId":"S"}}',
        ],
    )
    def test_malformed_auth_responses(self, payload: bytes) -> None:
        with pytest.raises(EnosError):
            enos.parse_http_auth_response(payload)

    @pytest.mark.parametrize(
        ("file_url", "direct"),
        [
            ("http://hub:8000/enos/ota/1/t", True),
            ("https://hub/enos/ota/1/t", True),
            ("/1b30e0ea83002000/ota/kadak13", False),
            ("enos-connect://file/1", False),
        ],
    )
    def test_which_file_urls_need_the_broker(self, file_url: str, direct: bool) -> None:
        assert enos.is_direct_file_url(file_url) is direct

    @given(st.binary(max_size=200))
    def test_fuzz(self, payload: bytes) -> None:
        with contextlib.suppress(EnosError):
            enos.parse_http_auth(payload).verify("p", "d", "s")
        with contextlib.suppress(EnosError):
            enos.parse_http_auth_response(payload)


class TestTimestampSkew:
    def test_integer_and_float_milliseconds(self) -> None:
        assert enos.timestamp_skew("1700000060000", 1_700_000_000.0) == 60.0
        assert enos.timestamp_skew("1699999999500.5", 1_700_000_000.0) == pytest.approx(-0.4995)

    @pytest.mark.parametrize("stamp", [None, "", "yesterday", "1e12", "-5", "nan", "12.", "1.2.3"])
    def test_anything_else_is_no_time(self, stamp: str | None) -> None:
        assert enos.timestamp_skew(stamp, 1_700_000_000.0) is None
