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

"""The EK certificate of a host: the TCG EK Credential Profile checks.

Pure software (no TPM, no I/O), used by
:func:`~nova_vtpm_migration.tpm.verify.verify_ek_identity`: the EK
certificate chains to the policy's EK CAs and is not revoked, it is an EK
certificate (extended key usage ``tcg-kp-EKCertificate`` 2.23.133.8.1 or a
``tcg-at-tpmManufacturer`` subjectAltName, key usage, not a CA), and the
EK public area is a TCG default EK template holding the certificate's key.
Every failure raises :class:`~nova_vtpm_migration.tpm.errors.
EkCertificateError`.
"""

import collections.abc
import datetime
import hmac
import typing as ty

from cryptography import exceptions as crypto_exceptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tpm2_pytss import types
from tpm2_pytss.internal import templates as ek_templates

from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import policy as policy_mod


def _ek_public(ek_public: bytes) -> types.TPM2B_PUBLIC:
    try:
        return objects.unmarshal_public(ek_public)
    except Exception as exc:
        raise errors.EkCertificateError(
            reason=f'EK: malformed TPM2B_PUBLIC ({exc})') from exc


#: EK templates accepted (TCG EK Credential Profile, low range).
EK_TEMPLATES = ('EK-RSA2048', 'EK-ECC256', 'EK-HIGH-RSA2048',
                'EK-HIGH-ECC256', 'EK-HIGH-ECC384', 'EK-HIGH-ECC521',
                'EK-HIGH-RSA3072', 'EK-HIGH-RSA4096')


def check_ek_matches_certificate(certificate: bytes, ek_public: bytes) -> None:
    """Check that the EK public area holds the certificate's public key.

    :raises errors.EkCertificateError: on any mismatch.
    """
    cert_key = _certificate(certificate).public_key_or_error()
    pub = _ek_public(ek_public)
    _check_ek_template(ek_public, pub)
    try:
        ek_key = serialization.load_pem_public_key(pub.publicArea.to_pem())
    except Exception as exc:
        raise errors.EkCertificateError(
            reason=f'unsupported EK public area ({exc})') from exc
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if not hmac.compare_digest(ek_key.public_bytes(enc, fmt),
                               cert_key.public_bytes(enc, fmt)):
        raise errors.EkCertificateError(
            reason='the EK does not match the public key of its certificate')


class _Cert:
    """A parsed EK certificate whose every accessor maps parse errors."""

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert

    def public_key_or_error(self) -> ty.Any:
        try:
            return self.cert.public_key()
        except (ValueError, crypto_exceptions.UnsupportedAlgorithm) as exc:
            raise errors.EkCertificateError(
                reason=f'unsupported certificate key ({exc})') from exc


def _certificate(der: bytes) -> _Cert:
    """Parse a DER EK certificate, eagerly enough to catch bad fields.

    :raises errors.EkCertificateError: not a usable X.509 v3 certificate.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.version  # noqa: B018 - parsed lazily; may be invalid
    except (ValueError, x509.InvalidVersion) as exc:
        raise errors.EkCertificateError(
            reason=f'not a DER certificate ({exc})') from exc
    return _Cert(cert)


def _check_ek_template(ek_public: bytes, pub: types.TPM2B_PUBLIC) -> None:
    """The EK public area must be a TCG default EK template (RSA 2048 or
    ECC P-256 of the low range, or a high-range template but SM2) apart
    from its ``unique`` field.

    Binding every field, not only the key, keeps identities and audit
    records non-malleable, and ``TPM2_MakeCredential`` relies on the
    template's symmetric parameters.
    """
    for ek_type in EK_TEMPLATES:
        template = types.TPM2B_PUBLIC(
            publicArea=ek_templates.ek_template.lookup(
                ek_type).template.publicArea)
        area = template.publicArea
        if area.type != pub.publicArea.type:
            continue
        area.unique = pub.publicArea.unique
        if hmac.compare_digest(template.marshal(), ek_public):
            return
    raise errors.EkCertificateError(
        reason='the EK public area is not a TCG default EK template '
               f'({", ".join(EK_TEMPLATES)})')


#: Extended key usage of TCG EK certificates (EK Credential Profile).
TCG_KP_EK_CERTIFICATE = x509.ObjectIdentifier('2.23.133.8.1')
#: TCG attribute tpmManufacturer of the EK certificate's SAN directory
#: name (EK Credential Profile): present in every conforming EK
#: certificate.
TCG_AT_TPM_MANUFACTURER = x509.ObjectIdentifier('2.23.133.2.1')


def _check_ek_profile(cert: x509.Certificate) -> None:
    """The certificate is an EK certificate (TCG EK Credential Profile),
    not merely a certificate from a CA the policy trusts.

    Required: not a CA; an extended key usage, when present, includes
    ``tcg-kp-EKCertificate`` (2.23.133.8.1) and one is present unless the
    subjectAltName names the TPM (``tcg-at-tpmManufacturer``); key usage,
    when present, allows ``keyEncipherment`` (RSA EK) or ``keyAgreement``
    (ECC EK).

    :raises errors.EkCertificateError: otherwise (e.g. a TLS server
        certificate from a bundled CA).
    """
    ext = cert.extensions
    try:
        if ext.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise errors.EkCertificateError(reason='a CA certificate is '
                                                   'not an EK certificate')
    except x509.ExtensionNotFound:
        pass
    try:
        eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and TCG_KP_EK_CERTIFICATE not in eku:
        raise errors.EkCertificateError(
            reason='not an EK certificate: its extended key usage lacks '
                   'tcg-kp-EKCertificate (2.23.133.8.1)')
    if eku is None and not _names_tpm(cert):
        raise errors.EkCertificateError(
            reason='not an EK certificate: no tcg-kp-EKCertificate '
                   'extended key usage and no TPM manufacturer in its '
                   'subjectAltName')
    try:
        usage = ext.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.key_encipherment or usage.key_agreement):
        raise errors.EkCertificateError(
            reason='not an EK certificate: key usage allows neither '
                   'keyEncipherment nor keyAgreement')


def _names_tpm(cert: x509.Certificate) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return any(attr.oid == TCG_AT_TPM_MANUFACTURER
               for name in san.get_values_for_type(x509.DirectoryName)
               for attr in name)


def _verify_chain(cert: x509.Certificate,
                  cas: collections.abc.Sequence[x509.Certificate],
                  now: datetime.datetime | None
                  ) -> list[x509.Certificate]:
    if not cas:
        raise errors.EkCertificateError(reason='the policy has no EK CA')
    # Every certificate of the bundle is a trust anchor (an
    # operator may trust one vendor intermediate only) and may serve as an
    # intermediate; EK certificates carry no chain, so the bundle must
    # hold the intermediates.
    return akcert.verify_chain(cert, cas, cas, now, errors.EkCertificateError,
                               'EK CA')


def verify_ek_certificate(identity: evidence.HostIdentity,
                          policy: policy_mod.TrustPolicy, *,
                          now: datetime.datetime | None = None) -> None:
    """Verify the EK certificate of an identity and its EK.

    The chain to the policy's EK CAs (validity periods at *now*), the TCG
    EK profile, revocation by the policy's CRLs, and that the EK public
    area matches the certificate (:func:`check_ek_matches_certificate`).

    :raises errors.EkCertificateError: the first failed check.
    """
    cert = _certificate(identity.ek_certificate).cert
    chain = _verify_chain(cert, policy.ek_ca_certificates, now)
    _check_ek_profile(cert)
    akcert.check_revocation(chain, policy.crls, errors.EkCertificateError,
                            now)
    check_ek_matches_certificate(identity.ek_certificate, identity.ek_public)


__all__: ty.Sequence[str] = (
    'EK_TEMPLATES', 'TCG_AT_TPM_MANUFACTURER', 'TCG_KP_EK_CERTIFICATE',
    'check_ek_matches_certificate', 'verify_ek_certificate')
