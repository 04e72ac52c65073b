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


"""The TPM command budget of a migration, pinned per phase and side.

Every command that reaches either host's TPM is counted at the TCTI
(:mod:`nova_vtpm_migration.tpm.meter`): ESAPI's own commands, raw ESAPI
calls and the context's housekeeping included. The histograms are exact,
so any added command fails here; the budget they meet (both hosts
together):

* phase 2 over an established attested session (everything before the VM
  migration starts): at most 8 commands, one ECC point multiplication
  (``ECDH_ZGen``), no signature (``Sign``, ``Certify``, ``Quote``);
* a fresh phase 1: at most 12 more;
* the commit: at most 2;
* no ``CreatePrimary`` on any migration path.

What is kept, and why, is in the comments of the expected histograms.
"""

import collections.abc
import functools
import typing as ty

import pytest

from nova_vtpm_migration.tpm import meter
from tests.functional.protocol import conftest

#: Phase 1 with a fresh handshake (the responder's epoch quote exists).
FRESH_PHASE1 = {
    # The initiator's quote is fresh for every handshake (it covers the
    # responder's nonce); PCR_Read gives the values it covers.
    'source': {'Quote': 1, 'PCR_Read': 1},
    # The responder checks its PCRs are still those of its epoch quote
    # and certifies its binding key for the session (once per session:
    # every migration on it reuses the certification).
    'destination': {'PCR_Read': 1, 'Certify': 1},
}

#: Phase 2 on an established session: before the VM migration starts.
CACHED_PHASE2 = {
    # The instance's secret is sealed at rest under a PCR policy (a
    # weaker unsealed copy would break custody): Load the sealed object,
    # arm the resident policy session, Unseal (output encrypted), flush.
    'source': {'Load': 1, 'PolicyPCR': 1, 'Unseal': 1, 'FlushContext': 1},
    # PCR_Read: a PCR change since the session's attestation must stop
    # the migration before the key leaves the source (the source then
    # gets a new binding key it refuses); PolicyPCR + ECDH_ZGen on the
    # resident binding key: the one point multiplication; Create: the
    # received secret sealed (durable PENDING custody, so that a
    # destination crash before the commit loses nothing) under the
    # binding key's PCR policy, which ECDH_ZGen just proved current.
    'destination': {'PCR_Read': 1, 'PolicyPCR': 1, 'ECDH_ZGen': 1,
                    'Create/KEYEDHASH': 1},
}

#: The commit: one signature per side (the source's manifest and the
#: destination's committed receipt: non-repudiation of both).
COMMIT = {'source': {'Sign': 1}, 'destination': {'Sign': 1}}

_T = ty.TypeVar('_T')
SIGNATURES = ('Sign', 'Certify', 'Quote', 'NV_Certify', 'GetTime')
PHASE2_BUDGET = 8
PHASE1_BUDGET = 12
COMMIT_BUDGET = 2


def _meters(cluster: conftest.Cluster) -> dict[str, meter.TpmMeter]:
    return {'source': cluster.nodes['src'].sim.ctx.meter,
            'destination': cluster.nodes['dst'].sim.ctx.meter}


def _measure(cluster: conftest.Cluster, fn: collections.abc.Callable[[], _T]
             ) -> tuple[_T, meter.Measurement]:
    with meter.measure(_meters(cluster)) as m:
        result = fn()
    return result, m


def _histogram(m: meter.Measurement) -> dict[str, dict[str, int]]:
    return {side: m[side].class_counts for side in m.labels}


def _no_create_primary(m: meter.Measurement) -> None:
    assert 'CreatePrimary' not in m.total.counts, m.total.counts


@pytest.fixture
def warm(cluster: conftest.Cluster) -> conftest.Cluster:
    """Both hosts migrated once (keys, residents, epoch quote exist)."""
    src = cluster.nodes['src'].engine
    inst, _ = conftest.new_instance(cluster.nodes['src'])
    src.commit(src.migrate_key(inst, 'dst').migration_id)
    return cluster


def test_tpm_command_budget_per_phase_and_side(
        warm: conftest.Cluster) -> None:
    cluster = warm
    src = cluster.nodes['src'].engine
    dst = cluster.nodes['dst'].engine

    _, phase1 = _measure(cluster, lambda: src.attest_peer('dst', fresh=True))
    inst, secret = conftest.new_instance(cluster.nodes['src'])
    handle, phase2 = _measure(cluster, lambda: src.migrate_key(inst, 'dst'))
    taken, consumer = _measure(
        cluster, lambda: dst.take_pending_key(inst, handle.migration_id))
    _, commit = _measure(cluster, lambda: src.commit(handle.migration_id))
    print('phase 1:', _histogram(phase1), '\nphase 2:', _histogram(phase2),
          '\ncommit:', _histogram(commit))

    assert _histogram(phase1) == FRESH_PHASE1
    assert _histogram(phase2) == CACHED_PHASE2
    assert _histogram(commit) == COMMIT
    for m in (phase1, phase2, consumer, commit):
        _no_create_primary(m)
        assert m.total.failed == 0

    assert phase1.total.total <= PHASE1_BUDGET
    assert phase2.total.total <= PHASE2_BUDGET
    assert commit.total.total <= COMMIT_BUDGET
    assert phase2.total.counts.get('ECDH_ZGen', 0) <= 1
    assert not set(SIGNATURES) & set(phase2.total.counts)
    # The consumer gets the secret unwrapped in phase 2: not unsealed again.
    assert taken == secret and consumer.total.total == 0
    assert conftest.usable_keys(cluster, inst) == {'src': 'DESTROYED',
                                                   'dst': 'ACTIVE'}


def test_session_reuse_keeps_the_phase2_budget(
        warm: conftest.Cluster) -> None:
    """Every later migration on the session costs the same: the binding
    key's certification of the session is reused."""
    cluster = warm
    src = cluster.nodes['src'].engine
    src.attest_peer('dst', fresh=True)
    for _ in range(3):
        inst, _ = conftest.new_instance(cluster.nodes['src'])
        handle, phase2 = _measure(
            cluster, functools.partial(src.migrate_key, inst, 'dst'))
        _, commit = _measure(
            cluster, functools.partial(src.commit, handle.migration_id))
        assert _histogram(phase2) == CACHED_PHASE2
        assert _histogram(commit) == COMMIT


def test_abort_after_transfer_costs_no_signature(
        warm: conftest.Cluster) -> None:
    """An abort after the transfer: the key is ACTIVE again at the
    source, nothing was signed, no CreatePrimary."""
    cluster = warm
    src = cluster.nodes['src'].engine
    inst, secret = conftest.new_instance(cluster.nodes['src'])
    handle = src.migrate_key(inst, 'dst')
    _, aborted = _measure(cluster, lambda: src.abort(handle.migration_id))
    assert aborted.total.total == 0
    assert conftest.usable_keys(cluster, inst) == {'src': 'ACTIVE',
                                                   'dst': 'DESTROYED'}
    assert src.keystore.read(inst) == secret
