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

"""Host identity, EK certificate checks and AK-to-EK binding (real swtpm)."""

import dataclasses
import os

import pytest

from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import policy as policy_mod
from nova_vtpm_migration.tpm import verify
from tests.functional.swtpm_fixtures import SimHost
from tests.functional.swtpm_fixtures import attach
from tests.support import attestation
from tests.support import swtpm


def test_identity_verifies(host_pair: tuple[SimHost, SimHost],
                           trust_policy: policy_mod.TrustPolicy) -> None:
    a, b = host_pair
    ida, idb = a.tpm.identity(), b.tpm.identity()
    verify.verify_ek_identity(ida, trust_policy)
    verify.verify_ek_identity(idb, trust_policy)
    assert ida.ek_fingerprint != idb.ek_fingerprint
    assert ida.ak_public != idb.ak_public
    # With its AK certificate the identity is that of one host.
    certified = dataclasses.replace(
        ida, ak_certificate=attestation.default_ca().enroll(
            a.tpm, 'host-a', a.swtpm.ca.bundle_pem()))
    assert verify.verify_identity(certified, trust_policy) == 'host-a'
    with pytest.raises(errors.AkCertificateError, match='no AK cert'):
        verify.verify_identity(ida, trust_policy)


def test_ak_survives_restart(host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    first = a.tpm.identity()
    again = attach(a.swtpm).tpm.identity()
    assert again == first


def test_credential_roundtrip(host_pair: tuple[SimHost, SimHost],
                              trust_policy: policy_mod.TrustPolicy) -> None:
    a, _ = host_pair
    ident = a.tpm.identity()
    verify.verify_ek_identity(ident, trust_policy)
    secret = os.urandom(32)
    assert a.tpm.activate_credential(
        verify.make_credential(ident, secret)) == secret


def test_ek_from_untrusted_ca_refused(
        swtpm_factory: object, untrusted_ca: swtpm.SwtpmCA,
        trust_policy: policy_mod.TrustPolicy) -> None:
    rogue = swtpm_factory('rogue', ca=untrusted_ca)  # type: ignore
    ident = rogue.tpm.identity()
    with pytest.raises(errors.EkCertificateError, match='trusted EK CA'):
        verify.verify_ek_identity(ident, trust_policy)
    # The same host is fine for a policy trusting its CA.
    verify.verify_ek_identity(ident, attestation.golden_policy(
        untrusted_ca.bundle_pem(), rogue.tpm.pcr_values()))


def test_ek_not_matching_certificate_refused(
        host_pair: tuple[SimHost, SimHost],
        trust_policy: policy_mod.TrustPolicy) -> None:
    a, b = host_pair
    # A's valid EK certificate presented with B's EK (bait and switch).
    forged = dataclasses.replace(a.tpm.identity(),
                                 ek_public=b.tpm.identity().ek_public)
    with pytest.raises(errors.EkCertificateError, match='does not match'):
        verify.verify_ek_identity(forged, trust_policy)


def test_ek_allow_list(host_pair: tuple[SimHost, SimHost],
                       swtpm_ca: swtpm.SwtpmCA) -> None:
    a, b = host_pair
    only_a = attestation.golden_policy(
        swtpm_ca.bundle_pem(), a.tpm.pcr_values(),
        ek_fingerprints=[a.tpm.identity().ek_fingerprint])
    verify.verify_ek_identity(a.tpm.identity(), only_a)
    with pytest.raises(errors.PolicyViolation) as exc:
        verify.verify_ek_identity(b.tpm.identity(), only_a)
    assert exc.value.rule == 'ek_fingerprints'
    assert b.tpm.identity().ek_fingerprint in str(exc.value)


def test_ak_not_bound_to_ek_refused(
        host_pair: tuple[SimHost, SimHost]) -> None:
    """A claims B's AK: the credential is for a name A's TPM lacks."""
    a, b = host_pair
    claimed = dataclasses.replace(a.tpm.identity(),
                                  ak_public=b.tpm.identity().ak_public)
    challenge = verify.make_credential(claimed, os.urandom(32))
    with pytest.raises(errors.CredentialError):
        a.tpm.activate_credential(challenge)


def test_credential_for_other_ek_refused(
        host_pair: tuple[SimHost, SimHost]) -> None:
    a, b = host_pair
    challenge = verify.make_credential(b.tpm.identity(), os.urandom(32))
    with pytest.raises(errors.CredentialError):
        a.tpm.activate_credential(challenge)


def test_ak_with_wrong_attributes_refused(
        host_pair: tuple[SimHost, SimHost],
        trust_policy: policy_mod.TrustPolicy) -> None:
    a, _ = host_pair
    signing = a.tpm.certified_signing_key(b'n').public
    claimed = dataclasses.replace(a.tpm.identity(), ak_public=signing)
    with pytest.raises(errors.CredentialError, match='missing restricted'):
        verify.verify_ek_identity(claimed, trust_policy)


def test_expired_chain_refused(host_pair: tuple[SimHost, SimHost],
                               trust_policy: policy_mod.TrustPolicy) -> None:
    import datetime
    a, _ = host_pair
    # swtpm_localca certificates are valid from their creation until 9999.
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(errors.EkCertificateError):
        verify.verify_ek_identity(a.tpm.identity(), trust_policy, now=past)


def test_hosts_are_independent(swtpm_ca: swtpm.SwtpmCA) -> None:
    with swtpm.HostGroup(swtpm.make_hosts(swtpm_ca, 2, distinct=False,
                                          prefix='clone')) as hosts:
        dirs = [h.dir for h in hosts]
        assert hosts[0].tcti != hosts[1].tcti
        sims = [attach(h) for h in hosts]
        ids = [s.tpm.identity() for s in sims]
        # Clones share the EK but not the AK.
        assert ids[0].ek_certificate == ids[1].ek_certificate
        assert ids[0].ak_public != ids[1].ak_public
        for s in sims:
            s.ctx.close()
    assert not any(d.exists() for d in dirs)
    assert not any(h.running for h in hosts)


def test_bundle_with_intermediate_only_or_root_only(
        host_pair: tuple[SimHost, SimHost], swtpm_ca: swtpm.SwtpmCA) -> None:
    a, _ = host_pair
    values = a.tpm.pcr_values()
    root, inter = swtpm_ca.bundle_pem()
    verify.verify_ek_identity(a.tpm.identity(),
                           attestation.golden_policy([inter], values))
    # Without the issuing intermediate there is no chain.
    with pytest.raises(errors.EkCertificateError):
        verify.verify_ek_identity(a.tpm.identity(),
                               attestation.golden_policy(
                                   [root], values))
