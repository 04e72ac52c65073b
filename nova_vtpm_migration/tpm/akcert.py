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

"""AK certificates: a compute host's Nova host name bound to its TPM.

The operator runs an *attestation CA* (as a Privacy CA does). At
enrollment it checks a host's EK certificate against the EK CAs, proves
with ``TPM2_MakeCredential``/``TPM2_ActivateCredential`` that the host's AK
lives in the TPM of that EK, and issues an X.509 certificate:

* subject CN and SAN dNSName: the host's Nova host name (``CONF.host``);
* public key: the AK's P-256 key; key usage ``digitalSignature``;
  extended key usage ``tcg-kp-AIKCertificate`` (2.23.133.8.3); not a CA;
* extension :data:`TPM_BINDING_OID` (non-critical): the AK's TPM name
  (which covers its attributes: restricted, fixedTPM...) and the SHA-256
  fingerprint of the EK certificate.

A verifier that trusts the attestation CA can then check offline, from
the certificate and the public areas alone, that an AK belongs to exactly
that host and that EK: no online credential round trip, and audit records
that nobody can forge with a software AK.

Pure software (``cryptography``); the TPM side of enrollment is
:meth:`nova_vtpm_migration.tpm.host.HostTpm.activate_credential`.
"""

import datetime
import hashlib
import hmac
import os
import typing as ty

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import oid as x509_oid
from cryptography.x509 import verification

from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import objects

#: Extended key usage of TCG attestation identity (AK) certificates.
TCG_KP_AIK_CERTIFICATE = x509.ObjectIdentifier('2.23.133.8.3')
#: Extension binding the certificate to a TPM object: an OCTET STRING
#: holding the AK's TPM name followed by the EK certificate's SHA-256.
#: (A UUID-derived OID, ITU-T X.667.)
TPM_BINDING_OID = x509.ObjectIdentifier(
    '2.25.134934114956035708661666625076957251477')
#: Bytes of the challenge secret of an enrollment.
CHALLENGE_SIZE = 32
#: Label of an enrollment's activation proof.
_PROOF_LABEL = b'nova-vtpm-migration ak enrollment v1'
_DEFAULT_DAYS = 3 * 365


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(common_name: str, days: int = 10 * 365
            ) -> tuple[bytes, bytes]:
    """Create an attestation CA (an ECC P-256 key and a self-signed
    certificate).

    :returns: the PEM private key (keep it offline, mode 0600) and the PEM
        certificate (goes into every trust policy).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509_oid.NameOID.COMMON_NAME,
                                         common_name)])
    now = _utcnow()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def new_challenge_secret() -> bytes:
    """A fresh secret for one enrollment's credential challenge."""
    return os.urandom(CHALLENGE_SIZE)


def activation_proof(secret: bytes, host: str, ak_public: bytes) -> bytes:
    """What the host returns after ``TPM2_ActivateCredential``: a MAC
    under the recovered secret over the host name and the AK (so the
    proof cannot be moved to another host or AK)."""
    msg = (_PROOF_LABEL + b'\0' + host.encode() + b'\0'
           + objects.public_name(ak_public))
    return hmac.new(secret, msg, hashlib.sha256).digest()


def check_activation(secret: bytes, host: str, ak_public: bytes,
                     proof: bytes) -> None:
    """CA side: the host answered the challenge with its TPM.

    :raises errors.CredentialError: the proof does not match (the AK is
        not in the TPM of that EK, or another host/AK was named).
    """
    if not hmac.compare_digest(
            activation_proof(secret, host, ak_public), proof):
        raise errors.CredentialError(
            reason='the activation proof does not match: the AK is not in '
                   'the TPM of the enrolled EK')


def _binding_value(ak_public: bytes, ek_certificate: bytes) -> bytes:
    content = (objects.public_name(ak_public)
               + hashlib.sha256(ek_certificate).digest())
    # DER OCTET STRING (the content is 66 bytes: a one-byte length).
    return bytes([0x04, len(content)]) + content


def _ak_key(ak_public: bytes) -> ec.EllipticCurvePublicKey:
    pub = objects.unmarshal_public(ak_public)
    key = serialization.load_pem_public_key(pub.publicArea.to_pem())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise errors.AkCertificateError(reason='the AK is not an ECC key')
    return key


def issue(ca_key_pem: bytes, ca_cert_pem: bytes,
          identity: evidence.HostIdentity, host: str,
          days: int = _DEFAULT_DAYS) -> bytes:
    """Issue the AK certificate of *host* (after :func:`check_activation`).

    :param identity: the host's verified TPM identity (EK certificate, EK
        and AK public areas).
    :param host: the host's Nova host name.
    :returns: the DER certificate.
    """
    if not host or len(host) > 255 or any(c.isspace() for c in host):
        raise errors.AkCertificateError(reason=f'bad host name {host!r}')
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    now = _utcnow()
    ak_key = _ak_key(identity.ak_public)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(
                x509_oid.NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject)
            .public_key(ak_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + datetime.timedelta(days=days),
                                 ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([TCG_KP_AIK_CERTIFICATE]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(host)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
            .add_extension(x509.UnrecognizedExtension(
                TPM_BINDING_OID,
                _binding_value(identity.ak_public,
                               identity.ek_certificate)), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.DER)


def load(data: bytes) -> bytes:
    """The DER form of a PEM or DER AK certificate.

    :raises errors.AkCertificateError: not a certificate.
    """
    try:
        if data.lstrip().startswith(b'-----BEGIN'):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise errors.AkCertificateError(
            reason=f'not an X.509 certificate ({exc})') from exc
    return cert.public_bytes(serialization.Encoding.DER)


def certified_host(certificate: bytes) -> str:
    """The host name an AK certificate certifies (its SAN dNSName).

    :raises errors.AkCertificateError: none, or more than one.
    """
    cert = _parse(certificate)
    try:
        san = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise errors.AkCertificateError(
            reason='no subjectAltName with the host name') from None
    names = san.get_values_for_type(x509.DNSName)
    if len(names) != 1:
        raise errors.AkCertificateError(
            reason=f'{len(names)} host names; exactly one is required')
    return str(names[0])


def _parse(certificate: bytes) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(certificate)
        cert.version  # noqa: B018 - parsed lazily; may be invalid
        cert.extensions  # noqa: B018
    except (ValueError, x509.InvalidVersion) as exc:
        raise errors.AkCertificateError(
            reason=f'not a DER certificate ({exc})') from exc
    return cert


def verify(identity: evidence.HostIdentity,
           cas: ty.Sequence[x509.Certificate],
           crls: ty.Sequence[x509.CertificateRevocationList] = (),
           host: str | None = None,
           now: datetime.datetime | None = None) -> str:
    """Verify an identity's AK certificate.

    Checks the chain to one of *cas* (at *now*, default the current
    time), the profile (not a CA, ``digitalSignature``, the AK EKU), that
    its key is the AK's and its binding extension names exactly this AK
    and EK certificate, revocation against *crls*, and, when *host* is
    given, that it certifies exactly *host*.

    :returns: the certified host name.
    :raises errors.AkCertificateError: any check but the host name.
    :raises errors.HostBindingError: certified for another host.
    """
    if not identity.ak_certificate:
        raise errors.AkCertificateError(
            reason='no AK certificate (enroll the host with the '
                   'attestation CA)')
    if not cas:
        raise errors.AkCertificateError(
            reason='the policy has no attestation CA')
    cert = _parse(identity.ak_certificate)
    chain = verify_chain(cert, cas, [], now, errors.AkCertificateError,
                         'attestation CA')
    _check_profile(cert)
    check_revocation(chain, crls, errors.AkCertificateError, now)
    check_binding(identity, cert)
    certified = certified_host(identity.ak_certificate)
    if host is not None and certified.lower() != host.lower():
        raise errors.HostBindingError(expected=host, actual=certified)
    return certified


def check_binding(identity: evidence.HostIdentity,
                  cert: x509.Certificate) -> None:
    """The certificate's key is the identity's AK and its binding
    extension names exactly that AK and EK certificate.

    :raises errors.AkCertificateError: otherwise.
    """
    try:
        same_key = _ak_key(identity.ak_public).public_numbers() == \
            cert.public_key().public_numbers()  # type: ignore[union-attr]
    except (ValueError, AttributeError) as exc:
        raise errors.AkCertificateError(
            reason=f'unusable certificate key ({exc})') from exc
    if not same_key:
        raise errors.AkCertificateError(
            reason='the certificate is for another key than this AK')
    try:
        ext = cert.extensions.get_extension_for_oid(TPM_BINDING_OID)
    except x509.ExtensionNotFound:
        raise errors.AkCertificateError(
            reason='no TPM binding extension') from None
    value = ty.cast(x509.UnrecognizedExtension, ext.value).value
    if not hmac.compare_digest(
            value, _binding_value(identity.ak_public,
                                  identity.ek_certificate)):
        raise errors.AkCertificateError(
            reason='the certificate binds another AK or EK certificate')


def _check_profile(cert: x509.Certificate) -> None:
    ext = cert.extensions
    try:
        basic = ext.get_extension_for_class(x509.BasicConstraints).value
        if basic.ca:
            raise errors.AkCertificateError(reason='a CA certificate')
    except x509.ExtensionNotFound:
        pass
    try:
        usage = ext.get_extension_for_class(x509.KeyUsage).value
        eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise errors.AkCertificateError(
            reason='key usage or extended key usage missing') from None
    if not usage.digital_signature:
        raise errors.AkCertificateError(
            reason='key usage lacks digitalSignature')
    if TCG_KP_AIK_CERTIFICATE not in eku:
        raise errors.AkCertificateError(
            reason='not an AK certificate (no tcg-kp-AIKCertificate '
                   'extended key usage)')


def verify_chain(cert: x509.Certificate,
                 cas: ty.Sequence[x509.Certificate],
                 intermediates: ty.Sequence[x509.Certificate],
                 now: datetime.datetime | None,
                 error: type[errors.VerificationError],
                 what: str) -> list[x509.Certificate]:
    """The chain from *cert* to one of the trust anchors *cas*.

    TCG certificates (EK and AK) carry TCG EKUs and critical SAN directory
    names, which the default WebPKI client verifier rejects: the end
    entity's extensions are left to the caller's profile check, CA
    certificates are checked strictly. Validity periods are judged at
    *now* (default: the current time).

    :raises error: no valid chain (*what* names the trust anchors).
    """
    builder = (verification.PolicyBuilder()
               .store(verification.Store(list(cas)))
               .extension_policies(
                   ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                   ee_policy=verification.ExtensionPolicy.permit_all()))
    if now is not None:
        builder = builder.time(now)
    try:
        chain = builder.build_client_verifier().verify(
            cert, list(intermediates))
    except verification.VerificationError as exc:
        raise error(reason=f'no valid chain to a trusted {what}: {exc}'
                    ) from exc
    return list(chain.chain)


def check_revocation(chain: ty.Sequence[x509.Certificate],
                     crls: ty.Sequence[x509.CertificateRevocationList],
                     error: type[errors.VerificationError],
                     now: datetime.datetime | None = None) -> None:
    """Refuse a chain one of whose certificates a CRL revokes.

    A CRL counts only when its issuer is in the chain and its signature
    verifies with that issuer's key; a revocation dated after *now* (the
    time the evidence is judged at) does not count.

    :raises error: a certificate is revoked.
    """
    if not crls:
        return
    by_subject = {c.subject: c for c in chain}
    for cert in chain:
        issuer = by_subject.get(cert.issuer)
        if issuer is None:
            continue
        for crl in crls:
            if crl.issuer != cert.issuer:
                continue
            if not crl.is_signature_valid(
                    issuer.public_key()):  # type: ignore[arg-type]
                continue
            revoked = crl.get_revoked_certificate_by_serial_number(
                cert.serial_number)
            if revoked is None:
                continue
            when = revoked.revocation_date_utc
            if now is not None and when > now:
                continue
            raise error(reason=f'certificate {cert.subject.rfc4514_string()}'
                               f' (serial {cert.serial_number:x}) is '
                               f'revoked since {when.isoformat()}')
