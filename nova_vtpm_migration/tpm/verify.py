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

"""Pure-software verification of TPM evidence (no TPM, no I/O).

A peer host's evidence (:mod:`~nova_vtpm_migration.tpm.evidence`) is
checked here against a :class:`~nova_vtpm_migration.tpm.policy.TrustPolicy`
with ``cryptography``; tpm2-pytss is used only to (un)marshal TPM
structures and for ``MakeCredential``. Every check failure raises its own
:class:`~nova_vtpm_migration.tpm.errors.VerificationError` subclass.
The EK certificate's own checks (TCG EK Credential Profile) are in
:mod:`~nova_vtpm_migration.tpm.ekcert`.
"""

import collections.abc
import datetime
import hashlib
import hmac
import os
import typing as ty

from cryptography import exceptions as crypto_exceptions
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives.ciphers import aead
from tpm2_pytss import constants
from tpm2_pytss import types
from tpm2_pytss import utils as tss_utils

from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import ekcert
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import policy as policy_mod

_ALG = constants.TPM2_ALG
_NONCE_LEN = 12

PcrValues = (collections.abc.Mapping[int, bytes]
             | collections.abc.Iterable[tuple[int, bytes]])


# -- helpers ---------------------------------------------------------------

def _public(data: bytes, error: type[errors.VerificationError],
            what: str) -> types.TPM2B_PUBLIC:
    try:
        return objects.unmarshal_public(data)
    except Exception as exc:
        raise error(reason=f'{what}: malformed TPM2B_PUBLIC ({exc})') \
            from exc


def _p256_key(pub: types.TPM2B_PUBLIC, error: type[errors.VerificationError],
              what: str) -> ec.EllipticCurvePublicKey:
    area = pub.publicArea
    if area.type != _ALG.ECC or \
            area.parameters.eccDetail.curveID != constants.TPM2_ECC.NIST_P256:
        raise error(reason=f'{what} is not an ECC P-256 key')
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(bytes(area.unique.ecc.x), 'big'),
            int.from_bytes(bytes(area.unique.ecc.y), 'big'),
            ec.SECP256R1()).public_key()
    except ValueError as exc:
        raise error(reason=f'{what}: invalid point ({exc})') from exc


def _attr_names(value: int) -> str:
    if not value:
        return 'none'
    try:
        return str(constants.TPMA_OBJECT(value))
    except ValueError:
        # Reserved bits have no name.
        return f'{value:#010x}'


def _check_attributes(pub: types.TPM2B_PUBLIC, required: int,
                      error: type[errors.VerificationError],
                      what: str) -> None:
    actual = int(pub.publicArea.objectAttributes)
    if actual != int(required):
        missing = int(required) & ~actual
        extra = actual & ~int(required)
        raise error(reason=(
            f'{what} attributes are {_attr_names(actual)}; missing '
            f'{_attr_names(missing)}, not allowed {_attr_names(extra)}'))
    if pub.publicArea.nameAlg != _ALG.SHA256:
        raise error(reason=f'{what} nameAlg is not sha256')


def _verify_attest(attest: bytes, signature: bytes, ak_public: bytes,
                   qualifying_data: bytes, expected_type: int, what: str,
                   error: type[errors.VerificationError]
                   ) -> types.TPMS_ATTEST:
    """Check an AK signature over ``attest`` and its header fields."""
    ak = _p256_key(_public(ak_public, errors.CredentialError, 'AK'),
                   errors.CredentialError, 'AK')
    try:
        sig, used = types.TPMT_SIGNATURE.unmarshal(signature)
    except Exception as exc:
        raise errors.SignatureInvalid(what=what, reason=f'malformed: {exc}') \
            from exc
    if used != len(signature) or sig.sigAlg != _ALG.ECDSA or \
            sig.signature.ecdsa.hash != _ALG.SHA256:
        raise errors.SignatureInvalid(
            what=what, reason='not an ECDSA/SHA-256 signature')
    der = asym_utils.encode_dss_signature(
        int.from_bytes(bytes(sig.signature.ecdsa.signatureR), 'big'),
        int.from_bytes(bytes(sig.signature.ecdsa.signatureS), 'big'))
    try:
        ak.verify(der, attest, ec.ECDSA(hashes.SHA256()))
    except crypto_exceptions.InvalidSignature as exc:
        raise errors.SignatureInvalid(
            what=what, reason='does not verify with the AK') from exc
    try:
        att, used = types.TPMS_ATTEST.unmarshal(attest)
    except Exception as exc:
        raise error(reason=f'{what}: malformed TPMS_ATTEST ({exc})') from exc
    if used != len(attest):
        raise error(reason=f'{what}: trailing bytes after TPMS_ATTEST')
    if att.magic != constants.TPM2_GENERATED.VALUE:
        raise error(reason=f'{what}: not generated by a TPM '
                           f'(magic {int(att.magic):#x})')
    if att.type != expected_type:
        raise error(reason=f'{what}: attestation type {int(att.type):#x}, '
                           f'expected {int(expected_type):#x}')
    extra = bytes(att.extraData)
    if not hmac.compare_digest(extra, qualifying_data):
        raise errors.QualifyingDataMismatch(
            what=what, expected=qualifying_data.hex(), actual=extra.hex())
    return att


def _pcr_dict(values: PcrValues) -> dict[int, bytes]:
    items = values.items() if isinstance(
        values, collections.abc.Mapping) else values
    result: dict[int, bytes] = {}
    for index, value in items:
        if index in result or len(value) != 32:
            raise errors.QuoteError(reason=f'bad claimed value of PCR '
                                           f'{index}')
        result[int(index)] = bytes(value)
    return result


# -- identity and credential -------------------------------------------------

#: The qualified name of the endorsement hierarchy (its handle).
_ENDORSEMENT_QN = (0x4000000B).to_bytes(4, 'big')
#: ``TPM2_ALG_SHA256``, the name algorithm prefix of names.
_SHA256_ALG = (0x000B).to_bytes(2, 'big')


def verify_ek_identity(identity: evidence.HostIdentity,
                       policy: policy_mod.TrustPolicy, *,
                       now: datetime.datetime | None = None) -> None:
    """Verify the TPM part of an identity (what the attestation CA checks
    before it certifies an AK).

    Checks the EK certificate chain to the policy's EK CAs (with validity
    periods at *now*), that it is an EK certificate (TCG profile), not
    revoked by the policy's CRLs, that the EK public area matches it
    (:func:`~nova_vtpm_migration.tpm.ekcert.verify_ek_certificate`), the
    EK allow-list, and that the AK is a restricted ECC P-256 signing key.

    :raises errors.EkCertificateError: chain, profile, revocation or EK
        mismatch.
    :raises errors.PolicyViolation: EK not in the allow-list.
    :raises errors.CredentialError: the AK is not an attestation key.
    """
    ekcert.verify_ek_certificate(identity, policy, now=now)
    policy.check_ek_fingerprint(identity.ek_fingerprint)
    ak = _public(identity.ak_public, errors.CredentialError, 'AK')
    _check_attributes(ak, objects.AK_ATTRIBUTES, errors.CredentialError, 'AK')
    _p256_key(ak, errors.CredentialError, 'AK')
    scheme = ak.publicArea.parameters.eccDetail.scheme
    if scheme.scheme != _ALG.ECDSA or \
            scheme.details.anySig.hashAlg != _ALG.SHA256:
        raise errors.CredentialError(reason='AK scheme is not ECDSA/SHA-256')


def verify_identity(identity: evidence.HostIdentity,
                    policy: policy_mod.TrustPolicy, *,
                    host: str | None = None,
                    now: datetime.datetime | None = None) -> str:
    """Verify a host identity against the trust policy.

    :func:`verify_ek_identity`, then the AK certificate
    (:func:`nova_vtpm_migration.tpm.akcert.verify`): it chains to the
    policy's attestation CA, certifies exactly this AK and EK certificate
    and, when *host* is given, exactly that host. The certificate is the
    offline proof that the AK lives in the TPM of that EK (the attestation
    CA checked it with a credential at enrollment).

    :param host: the host name the identity must be certified for.
    :param now: judge validity at this time (an audit of an old record).
    :returns: the certified host name.
    :raises errors.VerificationError: the first failed check
        (``HostBindingError`` for another host).
    """
    verify_ek_identity(identity, policy, now=now)
    return akcert.verify(identity, policy.attestation_ca_certificates,
                         policy.crls, host=host, now=now)


def qualified_signer(identity: evidence.HostIdentity) -> bytes:
    """The qualified name of an AK created under its host's EK (what the
    TPM puts into ``TPMS_ATTEST.qualifiedSigner``)."""
    ek_name = objects.public_name(identity.ek_public)
    ek_qn = _SHA256_ALG + hashlib.sha256(_ENDORSEMENT_QN + ek_name).digest()
    return _SHA256_ALG + hashlib.sha256(
        ek_qn + objects.public_name(identity.ak_public)).digest()


def make_credential(identity: evidence.HostIdentity,
                    secret: bytes) -> evidence.CredentialChallenge:
    """``TPM2_MakeCredential`` in software for (EK, AK name).

    Only the TPM holding both the EK and an object with the AK's name can
    recover ``secret`` with ``TPM2_ActivateCredential``.

    :param identity: the (verified) identity of the peer.
    :param secret: the challenge secret (at most 32 bytes).
    """
    ek = _public(identity.ek_public, errors.CredentialError, 'EK')
    ak = _public(identity.ak_public, errors.CredentialError, 'AK')
    name = objects.public_name(ak)
    try:
        blob, enc = tss_utils.make_credential(ek, secret,
                                              types.TPM2B_NAME(name))
    except ValueError as exc:
        raise errors.CredentialError(
            reason=f'cannot make a credential for this EK ({exc})') from exc
    return evidence.CredentialChallenge(credential_blob=blob.marshal(),
                                        encrypted_secret=enc.marshal())


# -- quotes ------------------------------------------------------------------

def clock_info(attest: types.TPMS_ATTEST) -> evidence.ClockInfo:
    """The :class:`~evidence.ClockInfo` of an unmarshalled attestation."""
    ci = attest.clockInfo
    return evidence.ClockInfo(clock=int(ci.clock),
                              reset_count=int(ci.resetCount),
                              restart_count=int(ci.restartCount),
                              safe=bool(ci.safe))


def check_clock(current: evidence.ClockInfo,
                previous: evidence.ClockInfo | None) -> None:
    """Refuse a TPM clock that went backwards against ``previous``.

    :raises errors.ClockRollback: reset count, restart count (same
        reset) or clock (same reset and restart) decreased.
    """
    if previous is None:
        return
    checks: list[tuple[str, int, int]] = [
        ('reset_count', current.reset_count, previous.reset_count)]
    if current.reset_count == previous.reset_count:
        checks.append(('restart_count', current.restart_count,
                       previous.restart_count))
        if current.restart_count == previous.restart_count:
            checks.append(('clock', current.clock, previous.clock))
    for field, now, before in checks:
        if now < before:
            raise errors.ClockRollback(field=field, actual=now,
                                       expected=before)
        if now > before:
            return


def verify_quote(quote: evidence.Quote,
                 ak_public: bytes | evidence.HostIdentity,
                 qualifying_data: bytes, policy: policy_mod.TrustPolicy,
                 previous: evidence.ClockInfo | None
                 ) -> evidence.ClockInfo:
    """Verify a quote and the PCR values it claims.

    :param quote: the quote.
    :param ak_public: the peer's (verified) identity, or only its AK; with
        the identity the quote's ``qualifiedSigner`` must be the AK under
        that EK.
    :param qualifying_data: the nonce the verifier asked for.
    :param policy: the trust policy (PCR selection, golden values,
        minimum firmware version).
    :param previous: clock of the last accepted evidence of this AK.
    :returns: the clock of this quote, to pass as ``previous`` next time.
    :raises errors.VerificationError: the first failed check.
    """
    identity = (ak_public if isinstance(ak_public, evidence.HostIdentity)
                else None)
    if identity is not None:
        ak_public = identity.ak_public
    assert isinstance(ak_public, bytes)
    att = _verify_attest(quote.attest, quote.signature, ak_public,
                         qualifying_data, constants.TPM2_ST.ATTEST_QUOTE,
                         'quote', errors.QuoteError)
    if identity is not None and not hmac.compare_digest(
            bytes(att.qualifiedSigner), qualified_signer(identity)):
        raise errors.QuoteError(
            reason='the quote was not signed by this AK under this EK '
                   '(qualifiedSigner)')
    policy.check_firmware_version(int(att.firmwareVersion))
    info = att.attested.quote
    selected = info.pcrSelect.marshal()
    wanted = policy_mod.pcr_selection_bytes(policy.pcr_selection)
    if selected != wanted:
        raise errors.PolicyViolation(rule='pcr_selection',
                                     expected=list(policy.pcr_selection),
                                     actual=f'selection {selected.hex()}')
    claimed = _pcr_dict(quote.pcr_values)
    if tuple(sorted(claimed)) != policy.pcr_selection:
        raise errors.PolicyViolation(rule='pcr_selection',
                                     expected=list(policy.pcr_selection),
                                     actual=sorted(claimed))
    digest = policy_mod.pcr_composite_digest(claimed)
    quoted = bytes(info.pcrDigest)
    if not hmac.compare_digest(digest, quoted):
        raise errors.PcrDigestMismatch(expected=digest.hex(),
                                       actual=quoted.hex())
    policy.check_pcr_values(claimed)
    clock = clock_info(att)
    if not clock.safe:
        raise errors.QuoteError(reason='the TPM clock is not safe (it may '
                                       'have been rolled back)')
    check_clock(clock, previous)
    return clock


# -- certified keys ----------------------------------------------------------

def _verify_certified(key: evidence.CertifiedKey, ak_public: bytes,
                      qualifying_data: bytes, what: str
                      ) -> tuple[types.TPM2B_PUBLIC, types.TPMS_ATTEST]:
    att = _verify_attest(key.certify_attest, key.certify_signature,
                         ak_public, qualifying_data,
                         constants.TPM2_ST.ATTEST_CERTIFY,
                         f'{what} certification', errors.CertifyError)
    pub = _public(key.public, errors.CertifyError, what)
    if pub.publicArea.nameAlg != _ALG.SHA256:
        raise errors.CertifyError(reason=f'{what} nameAlg is not sha256')
    certified = bytes(att.attested.certify.name)
    if not hmac.compare_digest(certified, objects.public_name(pub)):
        raise errors.CertifyError(
            reason=f'the certified name is not the name of the {what}')
    return pub, att


def check_binding_public(pub: types.TPM2B_PUBLIC) -> None:
    """Check a binding key's public area has exactly the required type
    and attributes (ECC P-256 ECDH, fixedTPM|fixedParent|
    sensitiveDataOrigin|decrypt, no userWithAuth).

    :raises errors.BindingKeyError: otherwise.
    """
    _check_attributes(pub, objects.BINDING_ATTRIBUTES,
                      errors.BindingKeyError, 'binding key')
    _p256_key(pub, errors.BindingKeyError, 'binding key')
    if pub.publicArea.parameters.eccDetail.scheme.scheme not in (
            _ALG.ECDH, _ALG.NULL):
        raise errors.BindingKeyError(reason='binding key is not an ECDH key')


def verify_binding_key(key: evidence.CertifiedKey, ak_public: bytes,
                       qualifying_data: bytes,
                       policy: policy_mod.TrustPolicy,
                       pcr_values: PcrValues,
                       evidence_clock: evidence.ClockInfo | None = None
                       ) -> None:
    """Verify a certified binding key.

    :param key: the key and its certification.
    :param ak_public: the peer's verified AK.
    :param qualifying_data: the nonce asked for in the certification.
    :param policy: the trust policy.
    :param pcr_values: the PCR values of the peer's verified quote; the
        key's authPolicy must be PolicyPCR over exactly these.
    :param evidence_clock: the clock of that quote: the certification
        must be from the same TPM boot and at most the policy's
        ``max_evidence_age`` later (the quote is that fresh when the key
        is released on it).
    :raises errors.VerificationError: the first failed check.
    """
    pub, att = _verify_certified(key, ak_public, qualifying_data,
                                 'binding key')
    if evidence_clock is not None:
        now = clock_info(att)
        if (now.reset_count, now.restart_count) != (
                evidence_clock.reset_count, evidence_clock.restart_count):
            raise errors.QuoteError(
                reason='the TPM restarted since it was attested; attest '
                       'it again')
        age_ms = now.clock - evidence_clock.clock
        if not 0 <= age_ms <= policy.max_evidence_age * 1000:
            raise errors.PolicyViolation(
                rule='max_evidence_age',
                expected=f'0..{policy.max_evidence_age}s',
                actual=f'{age_ms / 1000:.1f}s since the quote')
    check_binding_public(pub)
    values = _pcr_dict(pcr_values)
    if tuple(sorted(values)) != policy.pcr_selection:
        raise errors.PolicyViolation(rule='pcr_selection',
                                     expected=list(policy.pcr_selection),
                                     actual=sorted(values))
    expected = policy_mod.pcr_policy_digest(values)
    actual = bytes(pub.publicArea.authPolicy)
    if not hmac.compare_digest(expected, actual):
        raise errors.BindingKeyError(
            reason=f'authPolicy {actual.hex()} is not PolicyPCR over the '
                   f'quoted PCRs ({expected.hex()})')


def verify_signing_key(key: evidence.CertifiedKey, ak_public: bytes,
                       qualifying_data: bytes) -> None:
    """Verify a certified signing key (non-migratable ECDSA P-256).

    :raises errors.VerificationError: the first failed check.
    """
    pub, _ = _verify_certified(key, ak_public, qualifying_data,
                               'signing key')
    _check_attributes(pub, objects.SIGNING_ATTRIBUTES,
                      errors.SigningKeyError, 'signing key')
    _p256_key(pub, errors.SigningKeyError, 'signing key')
    scheme = pub.publicArea.parameters.eccDetail.scheme
    if scheme.scheme != _ALG.ECDSA or \
            scheme.details.anySig.hashAlg != _ALG.SHA256:
        raise errors.SigningKeyError(
            reason='signing key scheme is not ECDSA/SHA-256')


# -- wrapping and signatures -------------------------------------------------

def wrap(binding_public: bytes, secret: bytes,
         info: bytes) -> evidence.WrappedKey:
    """Wrap ``secret`` to a (verified) binding key, in software.

    :param binding_public: marshalled ``TPM2B_PUBLIC`` of the key.
    :param secret: the secret to protect.
    :param info: context bound into the key derivation (the unwrapper
        must pass the same bytes).
    """
    pub = _public(binding_public, errors.BindingKeyError, 'binding key')
    check_binding_public(pub)
    peer = _p256_key(pub, errors.BindingKeyError, 'binding key')
    eph = ec.generate_private_key(ec.SECP256R1())
    point = eph.public_key().public_bytes(
        serialization.Encoding.X962,
        serialization.PublicFormat.UncompressedPoint)
    name = objects.public_name(pub)
    kek = objects.derive_kek(eph.exchange(ec.ECDH(), peer), point, name,
                             info)
    nonce = os.urandom(_NONCE_LEN)
    return evidence.WrappedKey(
        ephemeral_point=point, nonce=nonce,
        ciphertext=aead.AESGCM(kek).encrypt(nonce, secret, name))


def verify_signature(signing_public: bytes, message: bytes,
                     signature: bytes) -> None:
    """Verify a DER ECDSA-P256/SHA-256 signature from
    :meth:`~nova_vtpm_migration.tpm.host.HostTpm.sign`, offline.

    :param signing_public: marshalled ``TPM2B_PUBLIC`` of the (verified)
        signing key.
    :raises errors.SignatureInvalid: the signature does not verify.
    """
    key = _p256_key(_public(signing_public, errors.SigningKeyError,
                            'signing key'),
                    errors.SigningKeyError, 'signing key')
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (crypto_exceptions.InvalidSignature, ValueError) as exc:
        raise errors.SignatureInvalid(
            what='message', reason='does not verify with the signing key') \
            from exc


__all__: ty.Sequence[str] = (
    'check_binding_public', 'check_clock', 'clock_info', 'make_credential',
    'qualified_signer',
    'verify_binding_key', 'verify_ek_identity', 'verify_identity',
    'verify_quote', 'verify_signature', 'verify_signing_key', 'wrap')
