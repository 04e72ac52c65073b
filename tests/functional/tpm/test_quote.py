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

"""Quotes and their software verification (real swtpm)."""

import dataclasses
import hashlib
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
from tests.support import attestation


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1:]


def test_quote_verifies(host_pair: tuple[SimHost, SimHost],
                        trust_policy: policy_mod.TrustPolicy) -> None:
    a, _ = host_pair
    nonce = os.urandom(32)
    q = a.tpm.quote(nonce)
    clock = verify.verify_quote(q, a.tpm.identity().ak_public, nonce,
                                trust_policy, None)
    assert clock.safe and clock.reset_count >= 0
    q2 = a.tpm.quote(b'second')
    clock2 = verify.verify_quote(q2, a.tpm.identity().ak_public, b'second',
                                 trust_policy, clock)
    assert clock2.clock >= clock.clock
    assert [i for i, _ in q.pcr_values] == list(trust_policy.pcr_selection)


def test_wrong_nonce_refused(host_pair: tuple[SimHost, SimHost],
                             trust_policy: policy_mod.TrustPolicy) -> None:
    a, _ = host_pair
    q = a.tpm.quote(b'old nonce')
    with pytest.raises(errors.QualifyingDataMismatch):
        verify.verify_quote(q, a.tpm.identity().ak_public, b'new nonce',
                            trust_policy, None)


def test_forged_signature_refused(host_pair: tuple[SimHost, SimHost],
                                  trust_policy: policy_mod.TrustPolicy
                                  ) -> None:
    a, _ = host_pair
    q = a.tpm.quote(b'n')
    ak = a.tpm.identity().ak_public
    # A flipped bit in the attested data or in the signature.
    for forged in (dataclasses.replace(q, attest=_flip(q.attest, 40)),
                   dataclasses.replace(q, signature=_flip(
                       q.signature, len(q.signature) - 5))):
        with pytest.raises(errors.SignatureInvalid):
            verify.verify_quote(forged, ak, b'n', trust_policy, None)


def test_quote_from_another_ak_refused(
        host_pair: tuple[SimHost, SimHost],
        trust_policy: policy_mod.TrustPolicy) -> None:
    a, b = host_pair
    q = b.tpm.quote(b'n')
    with pytest.raises(errors.SignatureInvalid):
        verify.verify_quote(q, a.tpm.identity().ak_public, b'n',
                            trust_policy, None)


def test_pcr_digest_not_matching_claimed_values_refused(
        host_pair: tuple[SimHost, SimHost],
        trust_policy: policy_mod.TrustPolicy) -> None:
    a, _ = host_pair
    q = a.tpm.quote(b'n')
    lie = tuple((i, b'\x42' * 32 if i == 16 else v) for i, v in q.pcr_values)
    with pytest.raises(errors.PcrDigestMismatch):
        verify.verify_quote(dataclasses.replace(q, pcr_values=lie),
                            a.tpm.identity().ak_public, b'n', trust_policy,
                            None)


def test_pcr_value_not_in_policy_refused(swtpm_factory: object,
                                         trust_policy: policy_mod.TrustPolicy
                                         ) -> None:
    sim = swtpm_factory('outside')  # type: ignore
    sim.swtpm.extend_pcr(16, b'unexpected kernel')
    q = sim.tpm.quote(b'n')
    with pytest.raises(errors.PolicyViolation) as exc:
        verify.verify_quote(q, sim.tpm.identity().ak_public, b'n',
                            trust_policy, None)
    assert exc.value.rule == 'pcr[16]'
    assert dict(q.pcr_values)[16].hex() in str(exc.value)


def test_second_golden_set_accepted(swtpm_factory: object,
                                    swtpm_ca: object) -> None:
    sim = swtpm_factory('fw2')  # type: ignore
    fw1 = sim.tpm.pcr_values()
    sim.swtpm.extend_pcr(16, b'firmware 2')
    fw2 = sim.tpm.pcr_values()
    pol = policy_mod.TrustPolicy.from_dict(attestation.policy_document(
        swtpm_ca.bundle_pem(), [('fw1', fw1), ('fw2', fw2)]))  # type: ignore
    verify.verify_quote(sim.tpm.quote(b'n'), sim.tpm.identity().ak_public,
                        b'n', pol, None)


def test_reset_counter_going_backwards_refused(
        swtpm_factory: object, trust_policy: policy_mod.TrustPolicy) -> None:
    """An old quote (from before a reboot) replayed after a newer one."""
    sim = swtpm_factory('reboot')  # type: ignore
    ak = sim.tpm.identity().ak_public
    old = sim.tpm.quote(b'n1')
    sim.swtpm.power_cycle()
    new = sim.tpm.quote(b'n2')
    newest = verify.verify_quote(new, ak, b'n2', trust_policy, None)
    previous = verify.verify_quote(old, ak, b'n1', trust_policy, None)
    assert newest.reset_count == previous.reset_count + 1
    with pytest.raises(errors.ClockRollback, match='reset_count'):
        verify.verify_quote(old, ak, b'n1', trust_policy, newest)


def test_clock_checks() -> None:
    base = evidence.ClockInfo(clock=100, reset_count=3, restart_count=2,
                              safe=True)
    verify.check_clock(base, None)
    verify.check_clock(dataclasses.replace(base, clock=101), base)
    verify.check_clock(dataclasses.replace(base, reset_count=4, clock=1,
                                           restart_count=0), base)
    for field, kw in (('restart_count', {'restart_count': 1}),
                      ('clock', {'clock': 99}),
                      ('reset_count', {'reset_count': 2, 'clock': 10**9})):
        with pytest.raises(errors.ClockRollback, match=field):
            verify.check_clock(dataclasses.replace(base, **kw), base)


def test_quote_selection_must_match_policy(
        host_pair: tuple[SimHost, SimHost], swtpm_ca: object) -> None:
    a, _ = host_pair
    values = a.tpm.pcr_values()
    del values[16]
    narrower = attestation.golden_policy(
        swtpm_ca.bundle_pem(), values)  # type: ignore
    with pytest.raises(errors.PolicyViolation) as exc:
        verify.verify_quote(a.tpm.quote(b'n'), a.tpm.identity().ak_public,
                            b'n', narrower, None)
    assert exc.value.rule == 'pcr_selection'


def test_software_policy_digest_matches_tpm(
        host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    sel = objects.selection_string(a.tpm.pcr_selection)
    with a.ctx.esys() as e:
        t = e.start_auth_session(
            constants.ESYS_TR.NONE, constants.ESYS_TR.NONE,
            constants.TPM2_SE.TRIAL,
            types.TPMT_SYM_DEF(algorithm=constants.TPM2_ALG.NULL),
            constants.TPM2_ALG.SHA256)
        e.policy_pcr(t, None, sel)
        tpm_digest = bytes(e.policy_get_digest(t))
    assert tpm_digest == policy_mod.pcr_policy_digest(a.tpm.pcr_values())
    assert policy_mod.pcr_selection_bytes(a.tpm.pcr_selection) == \
        types.TPML_PCR_SELECTION.parse(sel).marshal()
    assert len(hashlib.sha256().digest()) == 32


def test_unsafe_clock_refused(swtpm_factory: object,
                              trust_policy: policy_mod.TrustPolicy) -> None:
    """After a power loss the TPM clock may have gone back: not safe."""
    sim = swtpm_factory('powerloss')  # type: ignore
    sim.swtpm.power_cycle(orderly=False)
    with pytest.raises(errors.QuoteError, match='not safe'):
        verify.verify_quote(sim.tpm.quote(b'n'),
                            sim.tpm.identity().ak_public, b'n',
                            trust_policy, None)
