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

"""AK certificates bind an AK to its EK and to one host name (no TPM: the
AK is a software key with the AK's public area)."""

import dataclasses
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import oid
import pytest
from tpm2_pytss import constants
from tpm2_pytss import types

from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import objects

NOW = datetime.datetime.now(datetime.UTC)


def _ak_public() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    scheme = types.TPMT_ASYM_SCHEME(scheme=constants.TPM2_ALG.ECDSA)
    scheme.details.anySig.hashAlg = constants.TPM2_ALG.SHA256
    pub = types.TPM2B_PUBLIC.from_pem(
        pem, objectAttributes=objects.AK_ATTRIBUTES, scheme=scheme)
    return bytes(pub.marshal())


def _self_signed(cn: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(NOW).not_valid_after(
                NOW + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope='module')
def ca() -> tuple[bytes, bytes]:
    return akcert.make_ca('unit attestation CA')


@pytest.fixture(scope='module')
def identity() -> evidence.HostIdentity:
    return evidence.HostIdentity(ek_certificate=_self_signed('ek'),
                                 ek_public=b'unused', ak_public=_ak_public())


def _cas(ca: tuple[bytes, bytes]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(ca[1])]


def _with_cert(identity: evidence.HostIdentity, ca: tuple[bytes, bytes],
               host: str = 'host-a', days: int = 30
               ) -> evidence.HostIdentity:
    cert = akcert.issue(ca[0], ca[1], identity, host, days)
    return dataclasses.replace(identity, ak_certificate=cert)


def test_certificate_names_the_host_and_binds_ak_and_ek(
        ca: tuple[bytes, bytes], identity: evidence.HostIdentity) -> None:
    ident = _with_cert(identity, ca)
    assert akcert.verify(ident, _cas(ca)) == 'host-a'
    assert akcert.verify(ident, _cas(ca), host='HOST-A') == 'host-a'
    cert = x509.load_der_x509_certificate(ident.ak_certificate)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert akcert.TCG_KP_AIK_CERTIFICATE in eku.value
    assert not cert.extensions.get_extension_for_class(
        x509.BasicConstraints).value.ca


def test_certificate_for_another_host_is_refused(
        ca: tuple[bytes, bytes], identity: evidence.HostIdentity) -> None:
    ident = _with_cert(identity, ca, host='host-c')
    with pytest.raises(errors.HostBindingError,
                       match='host-b was expected.*certified for host-c'):
        akcert.verify(ident, _cas(ca), host='host-b')


def test_certificate_from_another_ca_is_refused(
        ca: tuple[bytes, bytes], identity: evidence.HostIdentity) -> None:
    rogue = akcert.make_ca('unit attestation CA')   # same name, other key
    ident = _with_cert(identity, rogue)
    with pytest.raises(errors.AkCertificateError, match='no valid chain'):
        akcert.verify(ident, _cas(ca))


def test_certificate_of_another_ak_or_ek_is_refused(
        ca: tuple[bytes, bytes], identity: evidence.HostIdentity) -> None:
    """A genuine certificate next to a software AK, or next to another
    host's EK certificate, does not verify."""
    genuine = _with_cert(identity, ca)
    software_ak = dataclasses.replace(genuine, ak_public=_ak_public())
    with pytest.raises(errors.AkCertificateError, match='another key'):
        akcert.verify(software_ak, _cas(ca))
    other_ek = dataclasses.replace(genuine,
                                   ek_certificate=_self_signed('other ek'))
    with pytest.raises(errors.AkCertificateError,
                       match='another AK or EK certificate'):
        akcert.verify(other_ek, _cas(ca))
    with pytest.raises(errors.AkCertificateError, match='no AK certificate'):
        akcert.verify(identity, _cas(ca))
    with pytest.raises(errors.AkCertificateError, match='not a DER'):
        akcert.verify(dataclasses.replace(identity, ak_certificate=b'xx'),
                      _cas(ca))


def test_ca_certificate_is_not_an_ak_certificate(
        ca: tuple[bytes, bytes], identity: evidence.HostIdentity) -> None:
    cert = x509.load_pem_x509_certificate(ca[1])
    ident = dataclasses.replace(identity, ak_certificate=cert.public_bytes(
        serialization.Encoding.DER))
    with pytest.raises(errors.AkCertificateError):
        akcert.verify(ident, _cas(ca))


def _crl(ca: tuple[bytes, bytes], serial: int,
         revoked_at: datetime.datetime) -> x509.CertificateRevocationList:
    key = serialization.load_pem_private_key(ca[0], None)
    cert = x509.load_pem_x509_certificate(ca[1])
    entry = (x509.RevokedCertificateBuilder().serial_number(serial)
             .revocation_date(revoked_at).build())
    return (x509.CertificateRevocationListBuilder()
            .issuer_name(cert.subject).last_update(NOW)
            .next_update(NOW + datetime.timedelta(days=7))
            .add_revoked_certificate(entry)
            .sign(key, hashes.SHA256()))  # type: ignore[arg-type]


def test_revoked_certificate_is_refused(
        ca: tuple[bytes, bytes], identity: evidence.HostIdentity) -> None:
    # (the time the certificate is issued, not the module's import)
    now = datetime.datetime.now(datetime.UTC)
    ident = _with_cert(identity, ca)
    serial = x509.load_der_x509_certificate(
        ident.ak_certificate).serial_number
    crl = _crl(ca, serial, now - datetime.timedelta(minutes=1))
    with pytest.raises(errors.AkCertificateError, match='revoked'):
        akcert.verify(ident, _cas(ca), [crl])
    # A record made before the revocation still verifies at its time.
    akcert.verify(ident, _cas(ca), [crl],
                  now=now - datetime.timedelta(minutes=2))
    # A CRL not signed by the issuer does not count.
    other = _crl(akcert.make_ca('unit attestation CA'), serial, now)
    akcert.verify(ident, _cas(ca), [other])


def test_expired_certificate_verifies_at_the_time_of_use(
        ca: tuple[bytes, bytes], identity: evidence.HostIdentity) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ident = _with_cert(identity, ca, days=1)
    later = now + datetime.timedelta(days=3)
    with pytest.raises(errors.AkCertificateError, match='no valid chain'):
        akcert.verify(ident, _cas(ca), now=later)
    assert akcert.verify(ident, _cas(ca), now=now) == 'host-a'


def test_activation_proof_is_bound_to_host_and_ak(
        identity: evidence.HostIdentity) -> None:
    secret = akcert.new_challenge_secret()
    proof = akcert.activation_proof(secret, 'host-a', identity.ak_public)
    akcert.check_activation(secret, 'host-a', identity.ak_public, proof)
    for args in ((akcert.new_challenge_secret(), 'host-a',
                  identity.ak_public),
                 (secret, 'host-b', identity.ak_public),
                 (secret, 'host-a', _ak_public())):
        with pytest.raises(errors.CredentialError):
            akcert.check_activation(*args, proof)


@pytest.mark.parametrize('host', ['', 'two words', 'x' * 256])
def test_bad_host_names_are_not_certified(
        ca: tuple[bytes, bytes], identity: evidence.HostIdentity,
        host: str) -> None:
    with pytest.raises(errors.AkCertificateError, match='bad host name'):
        akcert.issue(ca[0], ca[1], identity, host)
