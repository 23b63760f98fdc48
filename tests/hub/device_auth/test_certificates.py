"""Reading a device certificate: its fingerprint and subject CN."""

from __future__ import annotations

import hashlib
import ssl

import pytest
import trustme

from otahub.hub.device_auth.certificates import CertificateError, identify_pem, subject_cn


def test_fingerprint_is_sha256_of_the_der_certificate_and_cn_is_the_subjects() -> None:
    ca = trustme.CA()
    pem = ca.issue_cert("dev.example", common_name="device 7").cert_chain_pems[0].bytes().decode()
    found = identify_pem(pem)
    assert found.sha256 == hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    assert found.cn == "device 7"


def test_the_first_certificate_of_a_chain_is_the_devices() -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("dev.example", common_name="leaf")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems) + ca.cert_pem.bytes()
    assert identify_pem(chain.decode()).cn == "leaf"


def test_certificate_without_cn_has_none() -> None:
    # without common_name trustme's subject has organisation names only
    leaf = trustme.CA().issue_cert("dev.example")
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    assert subject_cn(der) is None


@pytest.mark.parametrize(
    "text",
    ["", "not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
def test_what_is_not_a_certificate_is_a_clear_error(text: str) -> None:
    with pytest.raises(CertificateError):
        identify_pem(text)


def test_truncated_der_is_a_clear_error() -> None:
    pem = trustme.CA().cert_pem.bytes().decode()
    der = ssl.PEM_cert_to_DER_cert(pem)
    with pytest.raises(CertificateError):
        subject_cn(der[:40])
