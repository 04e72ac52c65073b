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



"""Fuzzing of the TPM evidence verifiers (``tpm.verify``) with evidence
from a real swtpm, mutated field by field, and random bytes.

Property: a verifier either accepts or raises a documented
``VerificationError`` (a ``VtpmMigrationException``); mutated signed data
(a quote's or certification's ``TPMS_ATTEST``) is never accepted.
"""

import collections.abc
import dataclasses
import os
import typing as ty

import hypothesis
from hypothesis import strategies as st
import pytest

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.tpm import ekcert
from nova_vtpm_migration.tpm import errors as tpm_errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify
from tests.functional import swtpm_fixtures
from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
from tests.fuzz import fuzzlib
from tests.support import attestation
from tests.support import swtpm

os.environ.setdefault('TSS2_LOG', 'all+NONE')

QD = b'\x42' * 32


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Valid evidence of one real swtpm host."""

    identity: evidence.HostIdentity
    quote: evidence.Quote
    binding: evidence.CertifiedKey
    signing: evidence.CertifiedKey
    message: bytes
    signature: bytes
    policy: policy_mod.TrustPolicy
    pcrs: dict[int, bytes]


@pytest.fixture(scope='module')
def ev(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
       ) -> collections.abc.Iterator[Evidence]:
    sim = swtpm_fixtures.attach(swtpm.SwtpmHostTpm(swtpm_ca, 'fuzz',
                                                   clone=True))
    try:
        tpm = sim.tpm
        pcrs = tpm.pcr_values()
        policy = attestation.golden_policy(swtpm_ca.bundle_pem(), pcrs)
        msg = b'fuzzed message'
        identity = dataclasses.replace(
            tpm.identity(), ak_certificate=attestation.default_ca().enroll(
                tpm, 'fuzz', swtpm_ca.bundle_pem()))
        result = Evidence(
            identity=identity, quote=tpm.quote(QD),
            binding=tpm.certified_binding_key(QD),
            signing=tpm.certified_signing_key(crypto.SIGNING_KEY_QUALIFIER),
            message=msg, signature=tpm.sign(msg), policy=policy, pcrs=pcrs)
    finally:
        sim.stop()
    # the unmodified evidence verifies
    verify.verify_identity(result.identity, policy)
    verify.verify_quote(result.quote, result.identity.ak_public, QD, policy,
                        None)
    verify.verify_binding_key(result.binding, result.identity.ak_public, QD,
                              policy, pcrs)
    verify.verify_signing_key(result.signing, result.identity.ak_public,
                              crypto.SIGNING_KEY_QUALIFIER)
    verify.verify_signature(result.signing.public, msg, result.signature)
    yield result


@st.composite
def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """A byte mutation of ``data`` or (sometimes) random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=len(data) + 16))
    return draw(fuzzlib.mutated_bytes(data))


def _refuse(name: str, fn: collections.abc.Callable[..., ty.Any],
            *args: ty.Any) -> bool:
    ok, exc = fuzzlib.refused_or_ok(name, fn, *args)
    if not ok and isinstance(exc, Exception) and not isinstance(
            exc, tpm_errors.TpmError):
        return False  # a known finding (see fuzzlib.KNOWN)
    if not ok:
        assert isinstance(exc, tpm_errors.VerificationError), repr(exc)
    return ok


def _same_public(accepted: bytes, certified: bytes) -> None:
    # A TPM2B size field is checked: only the certified encoding itself is
    # accepted.
    assert accepted == certified, (
        'a different public area was accepted as the certified one')


@fuzzlib.budget(4)
@hypothesis.given(st.sampled_from(('ek_certificate', 'ek_public',
                                   'ak_public')), st.data())
def test_identity(ev: Evidence, field: str, data: st.DataObject) -> None:
    original = getattr(ev.identity, field)
    ident = dataclasses.replace(ev.identity,
                                **{field: data.draw(mutate(original))})
    if _refuse('verify.identity', verify.verify_identity, ident, ev.policy):
        # an accepted identity can be challenged (MakeCredential)
        fuzzlib.refused_or_ok('verify.make_credential',
                              verify.make_credential, ident, b'\x01' * 32)
    fuzzlib.refused_or_ok('verify.ek_matches_certificate',
                          ekcert.check_ek_matches_certificate,
                          ident.ek_certificate, ident.ek_public)


@fuzzlib.budget(6)
@hypothesis.given(st.sampled_from(('attest', 'signature', 'pcr_values',
                                   'ak_public', 'qualifying_data')),
                  st.data())
def test_quote(ev: Evidence, field: str, data: st.DataObject) -> None:
    quote, ak, qd = ev.quote, ev.identity.ak_public, QD
    if field == 'ak_public':
        ak = data.draw(mutate(ak))
    elif field == 'qualifying_data':
        qd = data.draw(mutate(qd))
    elif field == 'pcr_values':
        pcrs = list(quote.pcr_values)
        i = data.draw(st.integers(0, len(pcrs) - 1))
        op = data.draw(st.sampled_from(('value', 'index', 'drop', 'add')))
        if op == 'value':
            pcrs[i] = (pcrs[i][0], data.draw(mutate(pcrs[i][1])))
        elif op == 'index':
            pcrs[i] = (data.draw(st.integers(-5, 40)), pcrs[i][1])
        elif op == 'drop':
            del pcrs[i]
        else:
            pcrs.append((data.draw(st.integers(0, 30)),
                         data.draw(st.binary(max_size=40))))
        quote = dataclasses.replace(quote, pcr_values=tuple(pcrs))
    else:
        quote = dataclasses.replace(
            quote, **{field: data.draw(mutate(getattr(quote, field)))})
    if _refuse('verify.quote', verify.verify_quote, quote, ak, qd,
               ev.policy, None):
        assert quote.attest == ev.quote.attest and qd == QD


@fuzzlib.budget(4)
@hypothesis.given(st.sampled_from(('public', 'certify_attest',
                                   'certify_signature', 'ak_public')),
                  st.data())
def test_binding_key(ev: Evidence, field: str, data: st.DataObject) -> None:
    key, ak = ev.binding, ev.identity.ak_public
    if field == 'ak_public':
        ak = data.draw(mutate(ak))
    else:
        key = dataclasses.replace(
            key, **{field: data.draw(mutate(getattr(key, field)))})
    if _refuse('verify.binding_key', verify.verify_binding_key, key, ak, QD,
               ev.policy, ev.pcrs):
        assert key.certify_attest == ev.binding.certify_attest
        _same_public(key.public, ev.binding.public)


@fuzzlib.budget(3)
@hypothesis.given(st.sampled_from(('public', 'certify_attest',
                                   'certify_signature', 'ak_public')),
                  st.data())
def test_signing_key(ev: Evidence, field: str, data: st.DataObject) -> None:
    key, ak = ev.signing, ev.identity.ak_public
    if field == 'ak_public':
        ak = data.draw(mutate(ak))
    else:
        key = dataclasses.replace(
            key, **{field: data.draw(mutate(getattr(key, field)))})
    if _refuse('verify.signing_key', verify.verify_signing_key, key, ak,
               crypto.SIGNING_KEY_QUALIFIER):
        assert key.certify_attest == ev.signing.certify_attest
        _same_public(key.public, ev.signing.public)


@fuzzlib.budget(3)
@hypothesis.given(st.sampled_from(('public', 'message', 'signature')),
                  st.data())
def test_signature(ev: Evidence, field: str, data: st.DataObject) -> None:
    args = {'public': ev.signing.public, 'message': ev.message,
            'signature': ev.signature}
    args[field] = data.draw(mutate(args[field]))
    if _refuse('verify.signature', verify.verify_signature, args['public'],
               args['message'], args['signature']):
        assert args['message'] == ev.message


@fuzzlib.budget(2)
@hypothesis.given(st.binary(max_size=400), st.binary(max_size=400),
                  st.binary(max_size=400))
def test_random_evidence(ev: Evidence, a: bytes, b: bytes, c: bytes) -> None:
    """Random bytes in every position of every verifier."""
    ident = evidence.HostIdentity(ek_certificate=a, ek_public=b,
                                  ak_public=c)
    _refuse('verify.random', verify.verify_identity, ident, ev.policy)
    quote = evidence.Quote(attest=a, signature=b, pcr_values=())
    _refuse('verify.random', verify.verify_quote, quote, c, QD, ev.policy,
            None)
    key = evidence.CertifiedKey(public=a, certify_attest=b,
                                certify_signature=c)
    _refuse('verify.random', verify.verify_binding_key, key,
            ev.identity.ak_public, QD, ev.policy, ev.pcrs)
    _refuse('verify.random', verify.verify_signing_key, key, c, QD)
    _refuse('verify.random', verify.verify_signature, a, b, c)


@pytest.mark.parametrize('which', ['binding', 'signing'])
def test_unknown_name_alg_is_invalid_evidence(ev: Evidence,
                                              which: str) -> None:
    """A certified key whose public area names an unknown hash algorithm
    (bytes 4-5 of the TPM2B_PUBLIC) must be refused with a
    VerificationError, not a ValueError (reachable from a peer: the
    binding key in prepare_reply, the signing key in hello)."""
    key = ev.binding if which == 'binding' else ev.signing
    public = key.public[:4] + b'\x01\x0b' + key.public[6:]
    bad = dataclasses.replace(key, public=public)
    with pytest.raises(tpm_errors.VerificationError):
        if which == 'binding':
            verify.verify_binding_key(bad, ev.identity.ak_public, QD,
                                      ev.policy, ev.pcrs)
        else:
            verify.verify_signing_key(bad, ev.identity.ak_public,
                                      crypto.SIGNING_KEY_QUALIFIER)


def test_unknown_attribute_bits_are_invalid_evidence(ev: Evidence) -> None:
    """An AK whose objectAttributes has a reserved bit (0x08000000) set
    must be refused with a CredentialError (reachable from a peer: the
    identity in hello / hello_reply, and offline in audit records)."""
    ak = bytearray(ev.identity.ak_public)
    ak[6] |= 0x08  # objectAttributes are bytes 6-9 of the TPM2B_PUBLIC
    ident = dataclasses.replace(ev.identity, ak_public=bytes(ak))
    with pytest.raises(tpm_errors.VerificationError):
        verify.verify_identity(ident, ev.policy)


def test_tpm2b_size_is_checked(ev: Evidence) -> None:
    public = ev.binding.public
    size = int.from_bytes(public[:2], 'big')
    bad = dataclasses.replace(ev.binding,
                              public=(size - 8).to_bytes(2, 'big')
                              + public[2:])
    with pytest.raises(tpm_errors.VerificationError):
        verify.verify_binding_key(bad, ev.identity.ak_public, QD,
                                  ev.policy, ev.pcrs)


RSA_SPKI_OID = b'\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00'


def test_unknown_certificate_key_type_is_refused(ev: Evidence) -> None:
    cert = ev.identity.ek_certificate
    assert RSA_SPKI_OID in cert
    # the OID length swallows the NULL parameters: OID 1.2.840.113549.1.1.1.5.0
    bad = cert.replace(RSA_SPKI_OID, b'\x06\x0b' + RSA_SPKI_OID[2:], 1)
    try:
        ekcert.check_ek_matches_certificate(bad, ev.identity.ek_public)
    except tpm_errors.VerificationError:
        return
    raise AssertionError('accepted')


def test_ek_symmetric_parameters_are_checked(ev: Evidence) -> None:
    ek = bytearray(ev.identity.ek_public)
    assert ek[44:50] == b'\x00\x06\x00\x80\x00\x43'  # AES-128-CFB
    ek[48:50] = b'\x01\x43'  # mode 0x143
    ident = dataclasses.replace(ev.identity, ek_public=bytes(ek))
    try:
        verify.verify_identity(ident, ev.policy)
    except tpm_errors.VerificationError:
        return
    with pytest.raises(tpm_errors.VerificationError):
        verify.make_credential(ident, b'\x01' * 32)


def _bad_version(cert: bytes) -> bytes:
    v3 = b'\xa0\x03\x02\x01\x02'
    assert v3 in cert
    return cert.replace(v3, b'\xa0\x03\x02\x01\x0a', 1)


def test_invalid_certificate_version_is_refused(ev: Evidence) -> None:
    ident = dataclasses.replace(
        ev.identity, ek_certificate=_bad_version(ev.identity.ek_certificate))
    with pytest.raises(tpm_errors.VerificationError):
        verify.verify_identity(ident, ev.policy)
