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

"""Requirement A one level up: the peer is the TPM certified for the host
that was asked for, and stays so for the whole migration.

Each test is an attack that is refused, on real swtpm hosts enrolled with
the test attestation CA (their AK certificates name src, dst and other).
"""

import os
import uuid

import pytest

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.tpm import errors as tpm_errors
from tests.functional.protocol import conftest

_K = states.KeyState


def _nothing_moved(cluster: conftest.Cluster, inst: str) -> None:
    assert conftest.usable_keys(cluster, inst) == {'src': 'ACTIVE'}
    for name in ('dst', 'other'):
        assert cluster.nodes[name].engine.journal.list_migrations() == []


def test_relay_without_tpm_identity_is_refused(
        cluster: conftest.Cluster) -> None:
    """A host registered under its own name ('relay') forwards the
    protocol to a trusted host: the source sees a TPM certified for dst,
    not for relay, and refuses before anything moves."""
    cluster.transport.register('relay', cluster.nodes['dst'].engine.handle)
    inst, _secret = conftest.new_instance(cluster.nodes['src'])
    with pytest.raises(tpm_errors.HostBindingError,
                       match='relay was expected.*certified for dst'):
        cluster.nodes['src'].engine.migrate_key(inst, 'relay')
    _nothing_moved(cluster, inst)


def test_trusted_host_cannot_answer_for_another(
        cluster: conftest.Cluster) -> None:
    """Everything addressed to dst is answered by other, a host the policy
    trusts: its TPM is certified for other, so the key does not go to it."""
    cluster.transport.register('dst', cluster.nodes['other'].engine.handle)
    inst, _secret = conftest.new_instance(cluster.nodes['src'])
    with pytest.raises(tpm_errors.HostBindingError,
                       match='dst was expected.*certified for other'):
        cluster.nodes['src'].engine.migrate_key(inst, 'dst')
    _nothing_moved(cluster, inst)


def test_source_must_be_the_host_it_claims(
        cluster: conftest.Cluster) -> None:
    """A trusted source names another host as the source in ``prepare``
    (the destination's recovery asks it, and Nova's record is checked
    against it): refused."""
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, _secret = conftest.new_instance(src)
    mid = str(uuid.uuid4())
    with pytest.raises(errors.PeerRefused, match='identity_mismatch'):
        src.engine.channel.call('dst', 'prepare', {
            'seq': 1, 'migration_id': mid, 'instance_uuid': inst,
            'source_host': 'other', 'nonce': os.urandom(32)})
    assert dst.engine.journal.get(mid, states.Role.DESTINATION) is None


def test_another_tpm_certified_for_the_host_is_refused_mid_migration(
        cluster: conftest.Cluster) -> None:
    """The session attested at Nova's pre-check expires before the key
    moves, and the host's name now leads to another TPM that the
    attestation CA also certified for dst (a swapped machine, a stale
    certificate): the key moves only to the AK attested at the pre-check.
    """
    src, dst, other = (cluster.nodes[n] for n in ('src', 'dst', 'other'))
    pinned = src.engine.attest_peer('dst').peer_ak_name
    certificate = cluster.sim.ak_certificate('other', host='dst')
    impostor = cluster.sim.engine(
        'dst', cluster.transport, tpm=other.sim.tpm,
        state_dir=cluster.sim.state_dir('impostor'),
        ak_certificate=certificate)
    cluster.transport.register('dst', impostor.handle)
    src.engine.forget_sessions()
    inst, _secret = conftest.new_instance(src)
    with pytest.raises(errors.PeerIdentityMismatch, match='another TPM'):
        src.engine.migrate_key(inst, 'dst', expect_ak=pinned)
    assert impostor.keystore.state(inst) is None
    assert src.engine.keystore.state(inst) is _K.ACTIVE
    assert dst.engine.keystore.state(inst) is None


def test_rollback_only_from_the_destination_and_before_commit(
        cluster: conftest.Cluster) -> None:
    """A destination asks its source to abort over its own attested
    session; another trusted host cannot, and nobody can once the source
    committed (or while its guard says the guest was handed over)."""
    src, dst, other = (cluster.nodes[n] for n in ('src', 'dst', 'other'))
    inst, secret = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst')
    mid = handle.migration_id
    body = {'migration_id': mid, 'reason': 'forged'}
    with pytest.raises(errors.PeerRefused, match='identity_mismatch'):
        other.engine.channel.call('src', 'rollback', body)
    assert conftest.usable_keys(cluster, inst) == {'src': 'LOCKED',
                                                   'dst': 'PENDING'}
    # The source's guard (Nova: the guest was handed over) refuses too.
    src.engine.source._abort_guard = lambda row: False
    with pytest.raises(errors.PeerRefused, match='abort_refused'):
        dst.engine.request_rollback(mid, 'late')
    src.engine.source._abort_guard = None
    # Refused: the key that arrived stays (PENDING) rather than being lost.
    assert conftest.usable_keys(cluster, inst) == {'src': 'LOCKED',
                                                   'dst': 'PENDING'}
    src.engine.commit(mid)
    with pytest.raises(errors.PeerRefused, match='abort_refused'):
        dst.engine.channel.call('src', 'rollback', body)
    assert conftest.usable_keys(cluster, inst) == {'src': 'DESTROYED',
                                                   'dst': 'ACTIVE'}
    assert dst.engine.keystore.read(inst) == secret


def test_rollback_from_the_destination_aborts_on_both_hosts(
        cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, _secret = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst')
    dst.engine.request_rollback(handle.migration_id, 'pre_live_migration '
                                                     'failed')
    assert conftest.usable_keys(cluster, inst) == {'src': 'ACTIVE',
                                                   'dst': 'DESTROYED'}
