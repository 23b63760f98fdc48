"""The agent's MQTT link over TLS to the hub's TLS listener (CA made in the test)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import trustme

from tests.agent.agentproc import AgentProcess
from tests.agent.hubapi import register, start_update, until, upload, wait_state
from tests.agent.test_thin_edge import Device, agents, install_hook
from tests.agent.test_thin_edge_hub import TITLE as TE_TITLE
from tests.agent.test_thin_edge_hub import config as te_config
from tests.agent.test_thingsboard import TITLE, tb_config
from tests.hubproc import HubProcess, free_port

__all__ = ["agents"]  # the fixture, shared with the thin-edge tests


async def test_thingsboard_update_over_tls_and_an_untrusted_server_refused(
    hub_factory: Callable[..., HubProcess], agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    trustme.CA().cert_pem.write_to_path(tmp_path / "other-ca.pem")
    tls_port = free_port()
    hub = hub_factory(
        "--no-auth",
        "--mqtt-tls-port",
        str(tls_port),
        "--tls-cert",
        str(tmp_path / "cert.pem"),
        "--tls-key",
        str(tmp_path / "key.pem"),
    )
    register(hub, name="tb-tls", dialect="thingsboard", token="token-tls")
    upload(hub, TITLE, "2.0.0", os.urandom(30_000))
    device = Device(tmp_path)

    def config(ca_file: Path) -> dict[str, object]:
        cfg = tb_config(hub, device, "token-tls", install_hook(device))
        cfg["mqtt"] = {**cfg["mqtt"], "port": tls_port, "tls": True, "ca_file": str(ca_file)}
        return cfg

    # A server certificate from another CA: refused, so nothing reaches the hub.
    untrusting = agents(config(tmp_path / "other-ca.pem"), name="untrusting")
    await until(lambda: "CERTIFICATE_VERIFY_FAILED" in untrusting.log())
    untrusting.stop()
    assert "connected to" not in untrusting.log()

    agents(config(tmp_path / "ca.pem"))
    update_id = await start_update(hub, "tb-tls", TITLE, "2.0.0")
    update = await wait_state(hub, update_id)
    assert update["state"] == "succeeded", update
    assert device.hook_runs() == ["2.0.0"]


async def test_thin_edge_agent_logs_in_with_its_client_certificate_alone(
    hub_factory: Callable[..., HubProcess], agents: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """No password: the certificate is the device's identity, and its own topics its rights."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("te-cert@devices.invalid", common_name="te-cert")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    server.private_key_pem.write_to_path(tmp_path / "server-key.pem")
    server.cert_chain_pems[0].write_to_path(tmp_path / "server.pem")
    client.private_key_pem.write_to_path(tmp_path / "client-key.pem")
    client.cert_chain_pems[0].write_to_path(tmp_path / "client.pem")
    tls_port = free_port()
    hub = hub_factory(
        *("--no-auth", "--mqtt-tls-port", str(tls_port)),
        *(
            "--tls-cert",
            str(tmp_path / "server.pem"),
            "--tls-key",
            str(tmp_path / "server-key.pem"),
        ),
        *("--tls-ca", str(tmp_path / "ca.pem"), "--require-client-cert"),
    )
    pem = client.cert_chain_pems[0].bytes().decode()
    register(hub, name="te-cert", dialect="thin-edge", certificate=pem)
    upload(hub, TE_TITLE, "3.0.1", os.urandom(30_000))
    device = Device(tmp_path)
    cfg = te_config(hub, device, "te-cert", install_hook(device))
    cfg["mqtt"] |= {
        "port": tls_port,
        "tls": True,
        "ca_file": str(tmp_path / "ca.pem"),
        "cert_file": str(tmp_path / "client.pem"),
        "key_file": str(tmp_path / "client-key.pem"),
    }
    agents(cfg)
    update_id = await start_update(hub, "te-cert", TE_TITLE, "3.0.1")
    update = await wait_state(hub, update_id)
    assert update["state"] == "succeeded", update
    assert "thin-edge device 'te-cert' logs in with its client certificate" in hub.log()
