"""The thin-edge v1 ``te/`` dialect against every table and rule of its reference."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otahub.protocols import thin_edge as te
from otahub.protocols.states import UpdateState
from otahub.protocols.thin_edge import (
    CommandStatus,
    EntityTopicId,
    ExecutorAction,
    FirmwareCommand,
    ThinEdgeError,
    TopicKind,
)

CHILD = EntityTopicId("child03")
SEED_INIT = (
    b'{"status":"init","tedgeUrl":"https://tedge:8001/c8y/inventory/binaries/77206248",'
    b'"remoteUrl":"https://t40073098.cumulocity.com/inventory/binaries/77206248",'
    b'"name":"my firmware 2","version":"1.0.1"}'
)
SEED_TOPIC = "te/device/child03///cmd/firmware_update/c8y-mapper-210293"


# --------------------------------------------------------------------------
# 1.1 topic scheme


class TestTopicScheme:
    def test_every_message_is_retained_qos_1(self) -> None:
        assert te.RETAIN is True
        assert te.QOS == 1

    def test_entity_topics(self) -> None:
        assert str(te.MAIN_DEVICE) == "device/main//"
        assert te.MAIN_DEVICE.is_main
        assert str(CHILD) == "device/child03//"
        assert not CHILD.is_main
        assert str(EntityTopicId("main", "tedge-agent")) == "device/main/service/tedge-agent"

    def test_topic_builders(self) -> None:
        assert te.entity_topic(CHILD) == "te/device/child03//"
        assert te.capability_topic(CHILD) == "te/device/child03///cmd/firmware_update"
        assert te.command_topic(CHILD, "c8y-mapper-210293") == SEED_TOPIC
        assert te.command_filter(CHILD) == "te/device/child03///cmd/firmware_update/+"
        assert te.twin_topic(CHILD) == "te/device/child03///twin/firmware"
        assert te.command_topic(te.MAIN_DEVICE, "x") == "te/device/main///cmd/firmware_update/x"

    @pytest.mark.parametrize(
        ("topic", "kind", "entity", "cmd_id"),
        [
            ("te/device/child03//", TopicKind.REGISTRATION, CHILD, None),
            ("te/device/child03///cmd/firmware_update", TopicKind.CAPABILITY, CHILD, None),
            (SEED_TOPIC, TopicKind.COMMAND, CHILD, "c8y-mapper-210293"),
            ("te/device/child03///twin/firmware", TopicKind.TWIN, CHILD, None),
            ("te/device/main//", TopicKind.REGISTRATION, te.MAIN_DEVICE, None),
            (
                "te/device/main/service/svc/cmd/firmware_update/otahub-1",
                TopicKind.COMMAND,
                EntityTopicId("main", "svc"),
                "otahub-1",
            ),
        ],
    )
    def test_parse(
        self, topic: str, kind: TopicKind, entity: EntityTopicId, cmd_id: str | None
    ) -> None:
        assert te.parse_topic(topic) == te.FirmwareTopic(kind, entity, cmd_id)

    @pytest.mark.parametrize(
        "topic",
        [
            "te/device/child03",
            "te/device/child03/",
            "te/device/child03///cmd/firmware_update/",
            "te/device/child03///cmd/firmware_update/a/b",
            "te/device/child03///cmd/restart/x",
            "te/device/child03///twin/c8y_Hardware",
            "te/device/child03///m/temp",
            "te/device///cmd/firmware_update/x",
            "te/device/child03/service//cmd/firmware_update/x",
            "te/device/child03//x/cmd/firmware_update/x",
            "te/factory/child03///cmd/firmware_update/x",
            "tedge/child03/commands/req/firmware_update",
            "te/device/+///cmd/firmware_update/x",
            "",
        ],
    )
    def test_not_firmware_topics(self, topic: str) -> None:
        assert te.parse_topic(topic) is None

    def test_capability_is_not_seen_by_command_filter(self) -> None:
        # The filter has one more level than the capability topic.
        assert te.command_filter(CHILD).count("/") == te.capability_topic(CHILD).count("/") + 1

    @pytest.mark.parametrize("cmd_id", ["", "a/b", "a+", "#", "x\x00"])
    def test_command_id_is_a_single_level(self, cmd_id: str) -> None:
        with pytest.raises(ThinEdgeError):
            te.command_topic(CHILD, cmd_id)

    def test_command_ids(self) -> None:
        assert te.make_command_id("42") == "otahub-42"
        assert te.is_own_command("otahub-42")
        assert not te.is_own_command("c8y-mapper-210293")
        with pytest.raises(ThinEdgeError):
            te.make_command_id("a/b")

    @pytest.mark.parametrize("text", ["device/child01//", "device/main/service/svc"])
    def test_parse_entity(self, text: str) -> None:
        assert str(EntityTopicId.parse(text)) == text

    @pytest.mark.parametrize(
        "text", ["device/child01/", "child01", "device//", "device/a/b/c/d", "x/a//"]
    )
    def test_bad_entity(self, text: str) -> None:
        with pytest.raises(ThinEdgeError):
            EntityTopicId.parse(text)

    def test_bad_entity_ids(self) -> None:
        for device_id in ("", "a/b", "+"):
            with pytest.raises(ThinEdgeError):
                EntityTopicId(device_id)

    @given(st.text(max_size=80))
    def test_fuzz(self, topic: str) -> None:
        parsed = te.parse_topic(topic)
        if parsed is not None and parsed.kind is TopicKind.COMMAND:
            assert parsed.cmd_id is not None
            assert te.command_topic(parsed.entity, parsed.cmd_id) == topic


# --------------------------------------------------------------------------
# 1.2 - 1.4 registration, capability, twin


class TestRegistration:
    def test_seed_000_step_1(self) -> None:
        reg = te.parse_registration(
            b'{\n  "@type": "child-device",\n  "name": "Child 03",\n  "type": "RaspberryPi4"\n}'
        )
        assert reg is not None
        assert reg.entity_type is te.EntityType.CHILD_DEVICE
        assert reg.name == "Child 03"
        assert reg.device_type == "RaspberryPi4"
        assert reg.parent is None  # immediate child of main
        assert reg.external_id is None

    def test_parent_and_id(self) -> None:
        reg = te.parse_registration(
            b'{"@type":"child-device","@parent":"device/child01//","@id":"xid:device:child02","x":1}'
        )
        assert reg is not None
        assert reg.parent == EntityTopicId("child01")
        assert reg.external_id == "xid:device:child02"
        assert reg.fields["x"] == 1

    @pytest.mark.parametrize("entity_type", ["child-device", "device", "service"])
    def test_types(self, entity_type: str) -> None:
        reg = te.parse_registration(json.dumps({"@type": entity_type}).encode())
        assert reg is not None and reg.entity_type.value == entity_type

    def test_cleared_is_deregistration(self) -> None:
        assert te.parse_registration(b"") is None

    @pytest.mark.parametrize(
        "payload",
        [
            b"{}",
            b'{"@type":"gateway"}',
            b'{"@type":1}',
            b'{"@type":"child-device","@parent":"nope"}',
            b'{"@type":"child-device","name":5}',
            b"[]",
            b"{",
        ],
    )
    def test_errors(self, payload: bytes) -> None:
        with pytest.raises(ThinEdgeError):
            te.parse_registration(payload)

    def test_build(self) -> None:
        body = te.build_registration(name="Child 03", device_type="RaspberryPi4")
        assert body == b'{"@type":"child-device","name":"Child 03","type":"RaspberryPi4"}'
        nested = te.build_registration(parent=EntityTopicId("child01"), external_id="x")
        assert json.loads(nested) == {
            "@type": "child-device",
            "@parent": "device/child01//",
            "@id": "x",
        }

    @given(st.binary(max_size=200))
    def test_fuzz(self, payload: bytes) -> None:
        with contextlib.suppress(ThinEdgeError):
            te.parse_registration(payload)


class TestCapabilityAndTwin:
    def test_capability(self) -> None:
        assert te.parse_capability(te.CAPABILITY_PAYLOAD) is True
        assert te.parse_capability(b"{}") is True
        assert te.parse_capability(b"") is False  # withdrawn
        with pytest.raises(ThinEdgeError):
            te.parse_capability(b"[]")

    def test_seed_twin_with_spaces(self) -> None:
        twin = te.parse_twin(b'{"name": "my firmware 2", "version":"1.0.0"}')
        assert twin == te.FirmwareTwin("1.0.0", "my firmware 2")

    def test_twin_with_url(self) -> None:
        twin = te.parse_twin(b'{"name":"n","version":"1.0.1","url":"https://x/y"}')
        assert twin == te.FirmwareTwin("1.0.1", "n", "https://x/y")

    def test_twin_cleared_and_errors(self) -> None:
        assert te.parse_twin(b"") is None
        for payload in (b'{"name":"n"}', b'{"version":1}', b'{"version":"1","url":3}', b"x"):
            with pytest.raises(ThinEdgeError):
                te.parse_twin(payload)

    def test_build_twin(self) -> None:
        assert te.build_twin("my firmware 2", "1.0.1") == (
            b'{"name":"my firmware 2","version":"1.0.1"}'
        )
        assert json.loads(te.build_twin("n", "v", "u"))["url"] == "u"

    @given(st.binary(max_size=200))
    def test_fuzz(self, payload: bytes) -> None:
        with contextlib.suppress(ThinEdgeError):
            te.parse_twin(payload)
        with contextlib.suppress(ThinEdgeError):
            te.parse_capability(payload)


# --------------------------------------------------------------------------
# 1.5 - 1.7 commands


class TestCommands:
    def test_seed_000_step_5(self) -> None:
        cmd = te.parse_command(SEED_INIT)
        assert cmd is not None
        assert cmd.status == "init"
        assert cmd.known_status is CommandStatus.INIT
        assert cmd.name == "my firmware 2"
        assert cmd.version == "1.0.1"
        assert cmd.tedge_url == "https://tedge:8001/c8y/inventory/binaries/77206248"
        assert cmd.remote_url == "https://t40073098.cumulocity.com/inventory/binaries/77206248"
        assert cmd.download_urls == (cmd.tedge_url, cmd.remote_url)
        assert not cmd.is_terminal
        assert cmd.sha256 is None and cmd.size is None and cmd.reason is None
        cmd.check_executable()

    def test_executor_echo_changes_only_status(self) -> None:
        cmd = te.parse_command(SEED_INIT)
        assert cmd is not None
        executing = cmd.with_status(CommandStatus.EXECUTING)
        # seed 000 step 6, byte for byte
        assert executing.to_payload() == SEED_INIT.replace(b'"init"', b'"executing"')
        successful = executing.with_status("successful")
        assert successful.to_payload() == SEED_INIT.replace(b'"init"', b'"successful"')
        assert successful.is_terminal

    def test_failed_adds_reason(self) -> None:
        cmd = te.parse_command(SEED_INIT)
        assert cmd is not None
        failed = cmd.with_status(CommandStatus.FAILED, reason="your failure reason here")
        assert failed.reason == "your failure reason here"
        assert failed.failure_reason == "your failure reason here"
        body = json.loads(failed.to_payload())
        assert body == {
            **json.loads(SEED_INIT),
            "status": "failed",
            "reason": "your failure reason here",
        }

    def test_seed_failed_example_with_spaces(self) -> None:
        cmd = te.parse_command(
            b'{"status":"failed", "reason": "your failure reason here", '
            b'"tedgeUrl":"https://tedge:8001/c8y/inventory/binaries/77206248",'
            b'"remoteUrl":"https://t40073098.cumulocity.com/inventory/binaries/77206248",'
            b'"name":"my firmware 2","version":"1.0.1"}'
        )
        assert cmd is not None
        assert cmd.known_status is CommandStatus.FAILED
        assert cmd.failure_reason == "your failure reason here"

    def test_failed_without_reason_is_unknown_reason(self) -> None:
        cmd = te.parse_command(b'{"status":"failed"}')
        assert cmd is not None and cmd.failure_reason == "Unknown reason"
        init = te.parse_command(SEED_INIT)
        assert init is not None
        assert init.with_status("failed").reason == "Unknown reason"

    def test_reason_only_on_failure(self) -> None:
        cmd = te.parse_command(SEED_INIT)
        assert cmd is not None
        with pytest.raises(ThinEdgeError):
            cmd.with_status("executing", reason="x")
        assert cmd.failure_reason is None

    def test_unknown_fields_are_preserved(self) -> None:
        cmd = te.parse_command(
            b'{"status":"init","name":"n","version":"v","logPath":"/l","x":{"y":[1]}}'
        )
        assert cmd is not None
        assert cmd.log_path == "/l"
        echoed = json.loads(cmd.with_status("verifying").to_payload())
        assert echoed == {
            "status": "verifying",
            "name": "n",
            "version": "v",
            "logPath": "/l",
            "x": {"y": [1]},
        }

    def test_missing_status_is_init(self) -> None:
        cmd = te.parse_command(b'{"name":"n"}')
        assert cmd is not None and cmd.status == "init" and cmd.known_status is CommandStatus.INIT

    def test_custom_status(self) -> None:
        cmd = te.parse_command(b'{"status":"verifying"}')
        assert cmd is not None
        assert cmd.known_status is None and cmd.status == "verifying"
        assert not cmd.is_terminal

    def test_status_compared_exactly(self) -> None:
        cmd = te.parse_command(b'{"status":"Successful"}')
        assert cmd is not None and cmd.known_status is None and not cmd.is_terminal

    def test_empty_payload_is_a_clear(self) -> None:
        assert te.parse_command(b"") is None

    @pytest.mark.parametrize(
        "payload",
        [
            b"[]",
            b'"init"',
            b"{",
            b'{"status":5}',
            b'{"status":""}',
            b'{"status":null}',
            b'{"name":1}',
            b'{"tedgeUrl":[]}',
            b'{"reason":1}',
            b'{"sha256":"abc"}',
            b'{"size":-1}',
            b'{"size":"10"}',
        ],
    )
    def test_errors(self, payload: bytes) -> None:
        with pytest.raises(ThinEdgeError):
            te.parse_command(payload)

    def test_not_executable(self) -> None:
        cmd = te.parse_command(b'{"status":"init","name":"n"}')
        assert cmd is not None
        with pytest.raises(ThinEdgeError, match="version, tedgeUrl or remoteUrl"):
            cmd.check_executable()
        only_remote = te.parse_command(b'{"name":"n","version":"v","remoteUrl":"http://r"}')
        assert only_remote is not None
        only_remote.check_executable()
        assert only_remote.download_urls == ("http://r",)

    def test_build_with_extras(self) -> None:
        sha = "C036CBB7553A909F8B8877D4461924307F27ECB66CFF928EEEAFD569C3887E29"
        cmd = te.build_command(
            name="my firmware 2",
            version="1.0.1",
            remote_url="https://r/1",
            tedge_url="http://hub:8000/f/1",
            sha256=sha,
            size=1024,
        )
        assert cmd.to_payload() == (
            b'{"status":"init","tedgeUrl":"http://hub:8000/f/1","remoteUrl":"https://r/1",'
            b'"name":"my firmware 2","version":"1.0.1","sha256":"'
            + sha.lower().encode()
            + b'","size":1024}'
        )
        parsed = te.parse_command(cmd.to_payload())
        assert parsed == cmd
        assert parsed is not None and parsed.sha256 == sha.lower() and parsed.size == 1024

    def test_build_extra_cannot_overwrite(self) -> None:
        with pytest.raises(ThinEdgeError):
            te.build_command(
                name="n", version="v", remote_url="r", tedge_url="t", extra={"status": "x"}
            )
        cmd = te.build_command(name="n", version="v", remote_url="r", tedge_url="t", extra={"k": 1})
        assert cmd.fields["k"] == 1

    def test_progress_extension(self) -> None:
        cmd = te.build_command(name="n", version="v", remote_url="r", tedge_url="t")
        assert cmd.progress is None
        assert cmd.with_status("downloading", progress=42.5).progress == 42.5
        for value in ('"half"', "120", "-1", "true"):
            foreign = te.parse_command(f'{{"status":"executing","progress":{value}}}'.encode())
            assert foreign is not None and foreign.progress is None
            assert "progress" in json.loads(foreign.to_payload())
        with pytest.raises(ThinEdgeError):
            cmd.with_status("downloading", progress=101)

    def test_fields_are_copied(self) -> None:
        source = {"status": "init", "name": "n"}
        cmd = FirmwareCommand(source)
        source["name"] = "changed"
        assert cmd.name == "n"

    @given(st.binary(max_size=300))
    def test_fuzz_bytes(self, payload: bytes) -> None:
        with contextlib.suppress(ThinEdgeError):
            cmd = te.parse_command(payload)
            if cmd is not None:
                te.status_to_state(cmd.status)
                te.executor_action(cmd)

    @given(
        st.dictionaries(
            st.sampled_from(
                [
                    "status",
                    "name",
                    "version",
                    "tedgeUrl",
                    "remoteUrl",
                    "reason",
                    "sha256",
                    "size",
                    "progress",
                    "x",
                ]
            ),
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=10),
        )
    )
    def test_fuzz_fields(self, fields: dict[str, object]) -> None:
        with contextlib.suppress(ThinEdgeError):
            cmd = te.parse_command(json.dumps(fields).encode())
            assert cmd is not None
            assert json.loads(cmd.with_status("executing").to_payload()).keys() >= fields.keys()


# --------------------------------------------------------------------------
# 1.6 statuses, 1.8/1.9 executor rules, 4 mapping


class TestStatuses:
    def test_values_and_terminals(self) -> None:
        assert [s.value for s in CommandStatus] == [
            "init",
            "scheduled",
            "executing",
            "successful",
            "failed",
        ]
        assert {CommandStatus.SUCCESSFUL, CommandStatus.FAILED} == te.TERMINAL_STATUSES

    @pytest.mark.parametrize(
        ("status", "state"),
        [
            ("init", UpdateState.SENT),
            ("scheduled", UpdateState.SENT),
            ("executing", UpdateState.DOWNLOADING),
            ("downloading", UpdateState.DOWNLOADING),
            ("download", UpdateState.DOWNLOADING),
            ("downloaded", UpdateState.DOWNLOADED),
            ("verified", UpdateState.VERIFIED),
            ("installing", UpdateState.INSTALLING),
            ("install", UpdateState.INSTALLING),
            ("restart", UpdateState.INSTALLING),
            ("waiting_for_restart", UpdateState.INSTALLING),
            ("verify", UpdateState.INSTALLING),
            ("verifying", UpdateState.INSTALLING),
            ("commit", UpdateState.INSTALLING),
            ("something_else", UpdateState.DOWNLOADING),
            ("successful", UpdateState.SUCCEEDED),
            ("failed", UpdateState.FAILED),
        ],
    )
    def test_mapping(self, status: str, state: UpdateState) -> None:
        assert te.status_to_state(status) is state


class TestExecutorRules:
    def cmd(self, status: str) -> FirmwareCommand:
        cmd = te.parse_command(json.dumps({"status": status, "name": "n", "version": "v"}).encode())
        assert cmd is not None
        return cmd

    def test_fresh_init_starts(self) -> None:
        assert te.executor_action(self.cmd("init")) is ExecutorAction.START

    def test_second_init_while_busy_is_ignored_not_queued(self) -> None:
        assert te.executor_action(self.cmd("init"), busy=True) is ExecutorAction.IGNORE

    @pytest.mark.parametrize("status", ["successful", "failed"])
    def test_terminal_states_are_ignored(self, status: str) -> None:
        assert te.executor_action(self.cmd(status)) is ExecutorAction.IGNORE
        assert (
            te.executor_action(self.cmd(status), local_status="executing") is ExecutorAction.IGNORE
        )

    def test_clear_withdraws_the_command(self) -> None:
        assert te.executor_action(None) is ExecutorAction.WITHDRAW
        assert te.executor_action(None, local_status="executing") is ExecutorAction.WITHDRAW

    def test_replayed_executing_after_reboot_resumes(self) -> None:
        # ESP32 flow: the broker redelivers the retained executing command.
        assert te.executor_action(self.cmd("executing")) is ExecutorAction.RESUME
        assert (
            te.executor_action(self.cmd("executing"), local_status="executing")
            is ExecutorAction.RESUME
        )
        assert te.executor_action(self.cmd("verifying")) is ExecutorAction.RESUME

    def test_replayed_init_of_own_running_command_resumes(self) -> None:
        assert (
            te.executor_action(self.cmd("init"), local_status="executing", busy=True)
            is ExecutorAction.RESUME
        )

    def test_finished_locally_reports_again(self) -> None:
        assert (
            te.executor_action(self.cmd("executing"), local_status="successful")
            is ExecutorAction.REPORT
        )

    def test_requester_clears_after_terminal(self) -> None:
        assert te.requester_should_clear(self.cmd("successful"))
        assert te.requester_should_clear(self.cmd("failed"))
        assert not te.requester_should_clear(self.cmd("executing"))
        assert not te.requester_should_clear(self.cmd("verifying"))
        assert not te.requester_should_clear(None)


def test_seed_000_sequence() -> None:
    """Steps 1-10 of seed 000, as the hub sees them."""
    assert te.parse_topic("te/device/child03//") == te.FirmwareTopic(TopicKind.REGISTRATION, CHILD)
    assert te.parse_capability(b"{}")
    twin = te.parse_twin(b'{"name": "my firmware 2", "version":"1.0.0"}')
    assert twin is not None and twin.version == "1.0.0"
    topic = te.parse_topic(SEED_TOPIC)
    assert topic is not None and topic.cmd_id == "c8y-mapper-210293"
    assert not te.is_own_command(topic.cmd_id)
    init = te.parse_command(SEED_INIT)
    assert init is not None and te.executor_action(init) is ExecutorAction.START
    executing = init.with_status("executing")
    assert te.status_to_state(executing.status) is UpdateState.DOWNLOADING
    new_twin = te.parse_twin(b'{"name": "my firmware 2", "version":"1.0.1"}')
    successful = executing.with_status("successful")
    assert te.status_to_state(successful.status) is UpdateState.SUCCEEDED
    assert new_twin is not None and new_twin.version == successful.version
    assert te.requester_should_clear(successful)


def test_a_command_id_carries_its_update_id_and_only_ours_are_read() -> None:
    cmd_id = te.command_id_for(42)
    assert te.is_own_command(cmd_id)
    assert te.update_id_of(cmd_id) == 42
    assert te.command_id_for(42) != cmd_id  # a fresh suffix each time
    assert te.update_id_of("c8y-mapper-42") is None  # another requester's
    assert te.update_id_of("otahub-x1-abc") is None
    assert te.update_id_of("otahub-") is None
