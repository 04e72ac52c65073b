# Copyright 2026 The nova-vtpm-migration Authors
#
#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""Enrollment with the attestation CA, and the EK and quote checks a
TCG-aware reviewer expects (real swtpm)."""

import dataclasses
import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import oid
import pytest

from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import enrollment
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify
from tests.functional.swtpm_fixtures import SimHost
from tests.support import attestation
from tests.support import swtpm


def _policy(ca: swtpm.SwtpmCA, host: SimHost, **kwargs: object
            ) -> policy_mod.TrustPolicy:
    return policy_mod.TrustPolicy.from_dict(policy_mod.TrustPolicy.document(
        ca.bundle_pem(), [('golden', host.tpm.pcr_values())],
        attestation_ca_pems=[attestation.default_ca().pem],
        **kwargs))  # type: ignore[arg-type]


def test_enrollment_binds_the_host_name_to_the_tpm(
        host_pair: tuple[SimHost, SimHost], swtpm_ca: swtpm.SwtpmCA) -> None:
    a, b = host_pair
    policy = _policy(swtpm_ca, a)
    ca = attestation.default_ca()
    identity = a.tpm.identity()
    challenge, secret = enrollment.challenge(identity, policy)
    proof = enrollment.respond(a.tpm, challenge, 'compute-a')
    cert = enrollment.certify(ca.key_pem, ca.cert_pem, identity,
                              'compute-a', secret, proof)
    certified = dataclasses.replace(identity, ak_certificate=cert)
    assert verify.verify_identity(certified, policy) == 'compute-a'
    assert enrollment.check_installable(identity, cert, 'compute-a') == cert
    with pytest.raises(errors.HostBindingError):
        enrollment.check_installable(identity, cert, 'compute-b')
    with pytest.raises(errors.AkCertificateError):
        enrollment.check_installable(b.tpm.identity(), cert, 'compute-a')


def test_another_tpm_cannot_answer_the_challenge(
        host_pair: tuple[SimHost, SimHost], swtpm_ca: swtpm.SwtpmCA) -> None:
    """The challenge is for A's EK and AK: B's TPM cannot activate it, and
    a proof made with another secret is refused."""
    a, b = host_pair
    challenge, secret = enrollment.challenge(a.tpm.identity(),
                                             _policy(swtpm_ca, a))
    with pytest.raises(errors.CredentialError):
        enrollment.respond(b.tpm, challenge, 'compute-a')
    ca = attestation.default_ca()
    with pytest.raises(errors.CredentialError):
        enrollment.certify(ca.key_pem, ca.cert_pem, a.tpm.identity(),
                           'compute-a', os.urandom(32),
                           enrollment.respond(a.tpm, challenge, 'compute-a'))
    with pytest.raises(errors.CredentialError):
        enrollment.certify(ca.key_pem, ca.cert_pem, a.tpm.identity(),
                           'compute-b', secret,
                           enrollment.respond(a.tpm, challenge, 'compute-a'))


def _tls_certificate(ca_key: ec.EllipticCurvePrivateKey,
                     ca_name: x509.Name,
                     subject_key: ec.EllipticCurvePublicKey) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(
                oid.NameOID.COMMON_NAME, 'www.example.org')]))
            .issuer_name(ca_name).public_key(subject_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage(
                [oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_tls_certificate_from_a_bundled_ca_is_not_an_ek_certificate(
        host_pair: tuple[SimHost, SimHost], swtpm_ca: swtpm.SwtpmCA) -> None:
    """A CA in the EK bundle that also issues TLS certificates: a TLS
    certificate (for the attacker's software "TPM") is refused as an EK
    certificate before anything else is looked at."""
    a, _ = host_pair
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME,
                                         'multi-purpose CA')])
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(name).public_key(key.public_key())
               .serial_number(1)
               .not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True,
                                                    path_length=None),
                              critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=False, content_commitment=False,
                   key_encipherment=False, data_encipherment=False,
                   key_agreement=False, key_cert_sign=True, crl_sign=True,
                   encipher_only=False, decipher_only=False), critical=True)
               .sign(key, hashes.SHA256()))
    bundle = swtpm_ca.bundle_pem() + [ca_cert.public_bytes(
        serialization.Encoding.PEM).decode()]
    policy = policy_mod.TrustPolicy.from_dict(policy_mod.TrustPolicy.document(
        bundle, [('golden', a.tpm.pcr_values())],
        attestation_ca_pems=[attestation.default_ca().pem]))
    software_ek = ec.generate_private_key(ec.SECP256R1()).public_key()
    forged = dataclasses.replace(
        a.tpm.identity(),
        ek_certificate=_tls_certificate(key, name, software_ek))
    with pytest.raises(errors.EkCertificateError,
                       match='not an EK certificate'):
        verify.verify_ek_identity(forged, policy)
    # The genuine EK certificate passes the same policy.
    verify.verify_ek_identity(a.tpm.identity(), policy)


def test_quote_must_come_from_the_ak_under_that_ek(
        host_pair: tuple[SimHost, SimHost], swtpm_ca: swtpm.SwtpmCA) -> None:
    """``qualifiedSigner``: A's quote verified with A's AK but B's EK is
    refused (the AK is not the one under that EK)."""
    a, b = host_pair
    policy = _policy(swtpm_ca, a)
    nonce = os.urandom(32)
    quote = a.tpm.quote(nonce)
    verify.verify_quote(quote, a.tpm.identity(), nonce, policy, None)
    mixed = dataclasses.replace(a.tpm.identity(),
                                ek_public=b.tpm.identity().ek_public)
    with pytest.raises(errors.QuoteError, match='qualifiedSigner'):
        verify.verify_quote(quote, mixed, nonce, policy, None)


def test_minimum_firmware_version(host_pair: tuple[SimHost, SimHost],
                                  swtpm_ca: swtpm.SwtpmCA) -> None:
    a, _ = host_pair
    nonce = os.urandom(32)
    quote = a.tpm.quote(nonce)
    low = _policy(swtpm_ca, a, min_firmware_version=1)
    verify.verify_quote(quote, a.tpm.identity(), nonce, low, None)
    high = _policy(swtpm_ca, a, min_firmware_version=2 ** 64 - 1)
    with pytest.raises(errors.PolicyViolation) as exc:
        verify.verify_quote(quote, a.tpm.identity(), nonce, high, None)
    assert exc.value.rule == 'min_firmware_version'


def test_revoked_ek_certificate_is_refused(
        host_pair: tuple[SimHost, SimHost], swtpm_ca: swtpm.SwtpmCA) -> None:
    """A CRL of the EK CA (from the policy) revokes one TPM."""
    a, b = host_pair
    crl_pem = swtpm_ca.crl_pem([a.tpm.identity().ek_certificate])
    policy = _policy(swtpm_ca, a, crl_pems=[crl_pem])
    with pytest.raises(errors.EkCertificateError, match='revoked'):
        verify.verify_ek_identity(a.tpm.identity(), policy)
    verify.verify_ek_identity(b.tpm.identity(), policy)
    assert akcert.TPM_BINDING_OID  # the module under test is loaded
