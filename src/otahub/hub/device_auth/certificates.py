"""X.509 client certificates as device credentials: fingerprint and common name.

A device is registered with its certificate (PEM); the hub keeps the
certificate's SHA-256 fingerprint and its subject CN and finds the device
of a TLS client by either (``--client-cert-identity``), as ThingsBoard's
X.509 device authentication does. The TLS layer has already verified the
certificate against ``--tls-ca``; this only reads it.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from enum import StrEnum

# OID 2.5.4.3 (commonName), DER-encoded
_CN_OID = bytes([0x06, 0x03, 0x55, 0x04, 0x03])
_SEQUENCE = 0x30
_SET = 0x31


class CertIdentity(StrEnum):
    """What of a client certificate names its device."""

    FINGERPRINT = "fingerprint"
    CN = "cn"


class CertificateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CertificateId:
    sha256: str  # lowercase hex of the DER certificate's SHA-256
    cn: str | None  # the subject's common name, if it has one


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def identify_der(der: bytes) -> CertificateId:
    return CertificateId(fingerprint(der), subject_cn(der))


def identify_pem(pem: str) -> CertificateId:
    """The first certificate of a PEM text (a chain starts with the device's own)."""
    begin = pem.find("-----BEGIN CERTIFICATE-----")
    end_marker = "-----END CERTIFICATE-----"
    end = pem.find(end_marker, begin)
    if begin < 0 or end < 0:
        raise CertificateError("no PEM certificate (-----BEGIN CERTIFICATE-----) found")
    try:
        der = ssl.PEM_cert_to_DER_cert(pem[begin : end + len(end_marker)])
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate: {exc}") from None
    return identify_der(der)


def subject_cn(der: bytes) -> str | None:
    """The subject's (last) commonName of a DER certificate; CertificateError if malformed."""
    cert, _ = _element(der, 0, _SEQUENCE)
    tbs, _ = _element(der, cert, _SEQUENCE)
    pos = tbs
    if der[pos : pos + 1] == b"\xa0":  # [0] version
        pos = _skip(der, pos)
    for _ in range(4):  # serialNumber, signature, issuer, validity
        pos = _skip(der, pos)
    subject, subject_end = _element(der, pos, _SEQUENCE)
    cn: str | None = None
    pos = subject
    while pos < subject_end:
        rdn, rdn_end = _element(der, pos, _SET)
        inner = rdn
        while inner < rdn_end:
            atv, atv_end = _element(der, inner, _SEQUENCE)
            if der[atv : atv + len(_CN_OID)] == _CN_OID:
                value, value_end = _content(der, atv + len(_CN_OID))
                cn = der[value:value_end].decode("utf-8", "replace")
            inner = atv_end
        pos = rdn_end
    return cn


def _content(der: bytes, pos: int) -> tuple[int, int]:
    """Start and end of the contents of the element at ``pos``."""
    if pos + 2 > len(der):
        raise CertificateError("truncated certificate")
    length = der[pos + 1]
    start = pos + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(der):
            raise CertificateError("malformed certificate (length)")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    if end > len(der):
        raise CertificateError("truncated certificate")
    return start, end


def _element(der: bytes, pos: int, tag: int) -> tuple[int, int]:
    if pos >= len(der) or der[pos] != tag:
        raise CertificateError("malformed certificate (unexpected element)")
    return _content(der, pos)


def _skip(der: bytes, pos: int) -> int:
    return _content(der, pos)[1]
