"""Who a TLS client with a client certificate is, for every dialect.

The certificate names a registered device (by fingerprint, or by CN). That
device's dialect gives the session the identity its own login would have
given it (ThingsBoard's ``me`` topics, EnOS's keys, a thin-edge device's
topics). Credentials sent as well (a signed EnOS login, a password) must be
that same device's; a certificate that names no device is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from otahub.hub.device_auth.certificates import CertIdentity, CertificateError, identify_der
from otahub.hub.services.devices import DeviceService
from otahub.hub.services.views import DeviceView
from otahub.mqtt import ConnectInfo, Identity, ReasonCode, Refusal

log = logging.getLogger("otahub.hub.device_auth")

# A dialect's session identity for one of its devices; None when the device
# lacks what that dialect's sessions need.
SessionIdentity = Callable[[DeviceView], "Identity | None"]


class CertificateCheck:
    def __init__(
        self,
        devices: DeviceService,
        identify_by: CertIdentity = CertIdentity.FINGERPRINT,
        dialects: Mapping[str, SessionIdentity] | None = None,
    ) -> None:
        self.devices = devices
        self.identify_by = identify_by
        self.dialects: dict[str, SessionIdentity] = dict(dialects or {})

    async def __call__(
        self, info: ConnectInfo, verdict: Identity | Refusal | None
    ) -> Identity | Refusal | None:
        assert info.peer_cert_der is not None
        try:
            cert = identify_der(info.peer_cert_der)
        except CertificateError as exc:
            return _refuse(f"unreadable client certificate: {exc}")
        described = f"client certificate (SHA-256 {cert.sha256}, CN {cert.cn!r})"
        device: DeviceView | None
        if self.identify_by is CertIdentity.CN:
            found = () if cert.cn is None else await self.devices.by_certificate_cn(cert.cn)
            if len(found) > 1:
                names = ", ".join(repr(d.name) for d in found)
                return _refuse(f"{described}: its CN names several devices ({names})")
            device = found[0] if found else None
        else:
            device = await self.devices.by_certificate(cert.sha256)
        if device is None:
            return _refuse(f"{described} matches no registered device")
        if isinstance(verdict, Refusal):
            return verdict
        if verdict is not None:
            if verdict.name == device.name and verdict.dialect == device.dialect:
                return verdict  # its own credentials too: the identity they gave
            return _refuse(
                f"{described} is {device.dialect} device {device.name!r}'s, the credentials "
                f"are {verdict.dialect or 'another dialect'} device {verdict.name!r}'s"
            )
        session_identity = self.dialects.get(device.dialect)
        identity = None if session_identity is None else session_identity(device)
        if identity is None:
            return _refuse(f"{described}: {device.dialect} device {device.name!r} cannot log in")
        log.info(
            "%s device %r logs in with its client certificate (client id %r, %s)",
            device.dialect,
            device.name,
            info.client_id,
            info.peer,
        )
        return identity


def _refuse(message: str) -> Refusal:
    # the endpoint logs the refusal with this message; CONNACK 4 for 3.1.1
    return Refusal(ReasonCode.BAD_USER_NAME_OR_PASSWORD, message)
