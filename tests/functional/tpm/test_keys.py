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

"""Binding, signing and sealing keys of the host TPM (real swtpm)."""

import dataclasses
import os

import pytest
from tpm2_pytss import constants
from tpm2_pytss import types

from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify
from tests.functional.swtpm_fixtures import SimHost

_A = constants.TPMA_OBJECT
_NULL = types.TPMT_SIG_SCHEME(scheme=constants.TPM2_ALG.NULL)


def _quoted(sim: SimHost) -> dict[int, bytes]:
    return dict(sim.tpm.quote(b'q').pcr_values)


def _handmade(sim: SimHost, attributes: int, *,
              other_ak: bool = False) -> evidence.CertifiedKey:
    """A key with chosen attributes made directly through ESAPI, certified
    by the host's AK (or by another restricted key of the same TPM)."""
    auth_policy = policy_mod.pcr_policy_digest(sim.tpm.pcr_values())
    template = objects.binding_template(auth_policy)
    template.publicArea.objectAttributes = attributes
    sim.tpm.identity()
    with sim.ctx.esys() as e:
        srk = e.tr_from_tpmpublic(sim.tpm.srk_handle)
        priv, pub, *_ = e.create(srk, None, template)
        key = e.load(srk, priv, pub)
        if other_ak:
            apriv, apub, *_ = e.create(srk, None, objects.ak_template())
            signer = e.load(srk, apriv, apub)
        else:
            signer = e.tr_from_tpmpublic(sim.tpm.ak_handle)
        attest, sig = e.certify(key, signer, b'nonce', _NULL)
    return evidence.CertifiedKey(pub.marshal(), bytes(attest), sig.marshal())


# -- binding key -------------------------------------------------------------

def test_binding_key_verifies_and_unwraps(
        host_pair: tuple[SimHost, SimHost],
        trust_policy: policy_mod.TrustPolicy) -> None:
    a, b = host_pair
    quoted = _quoted(a)
    key = a.tpm.certified_binding_key(b'nonce')
    verify.verify_binding_key(key, a.tpm.identity().ak_public, b'nonce',
                              trust_policy, quoted)
    secret = os.urandom(32)
    wrapped = verify.wrap(key.public, secret, b'migration-1')
    assert secret not in wrapped.ciphertext
    assert a.tpm.unwrap(wrapped, b'migration-1') == secret
    # Cached: the same key again.
    assert a.tpm.certified_binding_key(b'n2').public == key.public
    # Another host's TPM cannot unwrap it.
    b.tpm.certified_binding_key(b'n')
    with pytest.raises(errors.UnwrapError):
        b.tpm.unwrap(wrapped, b'migration-1')


def test_unwrap_with_other_info_or_tampered_refused(
        host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    key = a.tpm.certified_binding_key(b'n')
    wrapped = verify.wrap(key.public, b'k' * 32, b'mig-1')
    with pytest.raises(errors.UnwrapError):
        a.tpm.unwrap(wrapped, b'mig-2')
    bad = dataclasses.replace(wrapped, ciphertext=bytes(
        [wrapped.ciphertext[0] ^ 1]) + wrapped.ciphertext[1:])
    with pytest.raises(errors.UnwrapError):
        a.tpm.unwrap(bad, b'mig-1')


def test_unwrap_after_pcr_extend_fails(swtpm_factory: object) -> None:
    sim = swtpm_factory('extend')  # type: ignore
    key = sim.tpm.certified_binding_key(b'n')
    wrapped = verify.wrap(key.public, b'k' * 32, b'i')
    assert sim.tpm.unwrap(wrapped, b'i') == b'k' * 32
    sim.swtpm.extend_pcr(16, b'rootkit')
    with pytest.raises(errors.TpmPolicyCheckFailed):
        sim.tpm.unwrap(wrapped, b'i')
    # The binding key is rotated on PCR change and works again.
    new = sim.tpm.certified_binding_key(b'n')
    assert new.public != key.public
    assert sim.tpm.unwrap(verify.wrap(new.public, b'x', b'i'), b'i') == b'x'
    # The old wrap stays unusable and the error says why.
    with pytest.raises(errors.UnwrapError, match='PCRs changed'):
        sim.tpm.unwrap(wrapped, b'i')


def test_binding_key_rotates_by_age(swtpm_factory: object) -> None:
    sim = swtpm_factory('age', binding_key_lifetime=0)  # type: ignore
    first = sim.tpm.certified_binding_key(b'n')
    wrapped = verify.wrap(first.public, b'old', b'i')
    second = sim.tpm.certified_binding_key(b'n')
    assert second.public != first.public
    # A wrap to the previous key still opens after one rotation.
    assert sim.tpm.unwrap(wrapped, b'i') == b'old'


def test_binding_key_without_fixed_tpm_refused(
        host_pair: tuple[SimHost, SimHost],
        trust_policy: policy_mod.TrustPolicy) -> None:
    a, _ = host_pair
    key = _handmade(a, _A.SENSITIVEDATAORIGIN | _A.DECRYPT)
    with pytest.raises(errors.BindingKeyError, match='missing .*fixedtpm'):
        verify.verify_binding_key(key, a.tpm.identity().ak_public, b'nonce',
                                  trust_policy, _quoted(a))
    with pytest.raises(errors.BindingKeyError):
        verify.wrap(key.public, b's', b'i')


def test_binding_key_with_user_with_auth_refused(
        host_pair: tuple[SimHost, SimHost],
        trust_policy: policy_mod.TrustPolicy) -> None:
    a, _ = host_pair
    key = _handmade(a, objects.BINDING_ATTRIBUTES | _A.USERWITHAUTH)
    with pytest.raises(errors.BindingKeyError,
                       match='not allowed userwithauth'):
        verify.verify_binding_key(key, a.tpm.identity().ak_public, b'nonce',
                                  trust_policy, _quoted(a))
    with pytest.raises(errors.BindingKeyError):
        verify.wrap(key.public, b's', b'i')


def test_certify_by_a_different_ak_refused(
        host_pair: tuple[SimHost, SimHost],
        trust_policy: policy_mod.TrustPolicy) -> None:
    a, b = host_pair
    key = _handmade(a, objects.BINDING_ATTRIBUTES, other_ak=True)
    with pytest.raises(errors.SignatureInvalid):
        verify.verify_binding_key(key, a.tpm.identity().ak_public, b'nonce',
                                  trust_policy, _quoted(a))
    # And a genuine certification checked against another host's AK.
    genuine = a.tpm.certified_binding_key(b'nonce')
    with pytest.raises(errors.SignatureInvalid):
        verify.verify_binding_key(genuine, b.tpm.identity().ak_public,
                                  b'nonce', trust_policy, _quoted(a))


def test_binding_key_checks(host_pair: tuple[SimHost, SimHost],
                            trust_policy: policy_mod.TrustPolicy) -> None:
    a, _ = host_pair
    ak = a.tpm.identity().ak_public
    quoted = _quoted(a)
    key = a.tpm.certified_binding_key(b'nonce')
    with pytest.raises(errors.QualifyingDataMismatch):
        verify.verify_binding_key(key, ak, b'other', trust_policy, quoted)
    # The certified name must be the name of the presented public area.
    signing = a.tpm.certified_signing_key(b'nonce')
    swapped = dataclasses.replace(key, public=signing.public)
    with pytest.raises(errors.CertifyError, match='name'):
        verify.verify_binding_key(swapped, ak, b'nonce', trust_policy,
                                  quoted)
    # A quote certification is not a key certification.
    q = a.tpm.quote(b'nonce')
    fake = dataclasses.replace(key, certify_attest=q.attest,
                               certify_signature=q.signature)
    with pytest.raises(errors.CertifyError, match='type'):
        verify.verify_binding_key(fake, ak, b'nonce', trust_policy, quoted)
    # authPolicy must be PolicyPCR over exactly the quoted values.
    other = dict(quoted)
    other[16] = b'\x01' * 32
    with pytest.raises(errors.BindingKeyError, match='authPolicy'):
        verify.verify_binding_key(key, ak, b'nonce', trust_policy, other)


# -- signing key ------------------------------------------------------------

def test_sign_and_verify_offline(host_pair: tuple[SimHost, SimHost]) -> None:
    a, b = host_pair
    ak = a.tpm.identity().ak_public
    key = a.tpm.certified_signing_key(b'nonce')
    verify.verify_signing_key(key, ak, b'nonce')
    sig = a.tpm.sign(b'receipt: installed')
    verify.verify_signature(key.public, b'receipt: installed', sig)
    with pytest.raises(errors.SignatureInvalid):
        verify.verify_signature(key.public, b'receipt: committed', sig)
    other = b.tpm.certified_signing_key(b'n')
    with pytest.raises(errors.SignatureInvalid):
        verify.verify_signature(other.public, b'receipt: installed', sig)
    with pytest.raises(errors.SignatureInvalid):
        verify.verify_signing_key(key, b.tpm.identity().ak_public, b'nonce')
    binding = a.tpm.certified_binding_key(b'nonce')
    with pytest.raises(errors.SigningKeyError):
        verify.verify_signing_key(binding, ak, b'nonce')


# -- sealing -----------------------------------------------------------------

def test_seal_unseal(host_pair: tuple[SimHost, SimHost]) -> None:
    a, b = host_pair
    secret = os.urandom(64)
    blob = a.tpm.seal(secret)
    assert secret not in blob
    assert a.tpm.unseal(blob) == secret
    with pytest.raises(errors.TpmError):
        b.tpm.unseal(blob)
    with pytest.raises(ValueError):
        a.tpm.seal(b'x' * 129)


def test_unseal_after_pcr_extend_fails(swtpm_factory: object) -> None:
    sim = swtpm_factory('seal')  # type: ignore
    blob = sim.tpm.seal(b'vtpm secret')
    sim.swtpm.extend_pcr(7, b'secure boot off')
    with pytest.raises(errors.TpmPolicyCheckFailed):
        sim.tpm.unseal(blob)
