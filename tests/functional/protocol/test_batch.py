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


"""Batches: an evacuation moves N instances with one phase-2 exchange,
one ECDH unwrap and one signature per host; custody, journal and
atomicity stay per instance; concurrent migrations coalesce."""

import threading
import typing as ty

import pytest

from nova_vtpm_migration.protocol import batch_source
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.protocol import transport
from nova_vtpm_migration.tpm import meter
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.functional.protocol import conftest

N = 4


def _meters(cluster: conftest.Cluster) -> dict[str, meter.TpmMeter]:
    return {'source': cluster.nodes['src'].sim.ctx.meter,
            'destination': cluster.nodes['dst'].sim.ctx.meter}


def _instances(cluster: conftest.Cluster, n: int
               ) -> list[tuple[str, bytes]]:
    return [conftest.new_instance(cluster.nodes['src']) for _ in range(n)]


def _types(cluster: conftest.Cluster) -> list[str]:
    return [conftest.inner_type(e.request) for e in cluster.transport.captured
            if conftest.msg_type(e.request) == 'sealed']


def test_evacuation_shares_one_unwrap_and_one_signature_per_host(
        cluster: conftest.Cluster,
        trust_policy: policy_mod.TrustPolicy) -> None:
    src = cluster.nodes['src'].engine
    dst = cluster.nodes['dst'].engine
    src.attest_peer('dst')
    instances = _instances(cluster, N)
    with meter.measure(_meters(cluster)) as phase2:
        handles = src.migrate_keys(
            [batch_source.BatchItem(inst) for inst, _ in instances], 'dst')
    assert all(not isinstance(h, Exception) for h in handles), handles
    with meter.measure(_meters(cluster)) as commit:
        done = src.commit_many([h.migration_id for h in handles
                                if not isinstance(h, Exception)])
    assert all(not isinstance(r, Exception) for r in done), done
    # Phase 2: per instance an unseal at the source and a seal at the
    # destination (per-instance custody); one PCR_Read and one
    # ECDH_ZGen for the whole batch; no signature.
    assert phase2['destination'].class_counts == {
        'PCR_Read': 1, 'PolicyPCR': 1, 'ECDH_ZGen': 1,
        'Create/KEYEDHASH': N}
    assert phase2['source'].class_counts == {
        'Load': N, 'PolicyPCR': N, 'Unseal': N, 'FlushContext': N}
    assert commit['source'].class_counts == {'Sign': 1}
    assert commit['destination'].class_counts == {'Sign': 1}
    assert _types(cluster).count('prepare_batch') == 1
    assert _types(cluster).count('transfer_batch') == 1
    assert _types(cluster).count('commit_batch') == 1
    for (inst, secret), handle in zip(instances, handles, strict=True):
        assert not isinstance(handle, Exception)
        assert conftest.usable_keys(cluster, inst) == {'src': 'DESTROYED',
                                                       'dst': 'ACTIVE'}
        assert dst.keystore.read(inst) == secret
        mid = handle.migration_id
        # One journal row per instance on each host, and a record
        # of its own that verifies offline.
        assert src.journal.get(mid, states.Role.SOURCE).state == 'COMMITTED'
        assert dst.journal.get(mid, states.Role.DESTINATION).state == \
            'COMMITTED'
        record = src.record(mid)
        assert record is not None and record == dst.record(mid)
        decoded = receipts.verify_record(record, trust_policy)
        assert len(decoded['manifest_batch']) == N
        assert decoded['manifest']['instance_uuid'] == inst


def test_one_refused_instance_does_not_stop_the_others(
        cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    instances = _instances(cluster, 3)
    busy, busy_secret = instances[1]
    # The destination already holds a key of the second instance.
    dst.engine.keystore.add(busy, b'k' * 32)
    handles = src.engine.migrate_keys(
        [batch_source.BatchItem(inst) for inst, _ in instances], 'dst')
    assert isinstance(handles[1], errors.PeerRefused)
    assert handles[1].kwargs['peer_code'] == errors.InstanceBusy.code
    assert conftest.usable_keys(cluster, busy) == {'src': 'ACTIVE',
                                                   'dst': 'ACTIVE'}
    assert src.engine.keystore.read(busy) == busy_secret
    moved = [h for h in handles if not isinstance(h, Exception)]
    assert len(moved) == 2
    for result in src.engine.commit_many([h.migration_id for h in moved]):
        assert not isinstance(result, Exception)
    for index in (0, 2):
        inst, secret = instances[index]
        assert dst.engine.keystore.read(inst) == secret


class _TakeOne(transport.Adversary):
    """Before ``transfer_batch`` is delivered, the destination takes
    custody of the first instance's key outside the protocol: that
    instance cannot be installed there any more."""

    def __init__(self, cluster: conftest.Cluster, instance: str) -> None:
        self.cluster, self.instance = cluster, instance

    def on_request(self, peer: str, request: bytes) -> bytes:
        if conftest.msg_type(request) == 'sealed' and \
                conftest.inner_type(request) == 'transfer_batch':
            self.cluster.nodes['dst'].engine.keystore.add(self.instance,
                                                          b'k' * 32)
        return request


def test_a_failing_instance_is_aborted_alone(
        cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    src.engine.attest_peer('dst')
    instances = _instances(cluster, 3)
    first, first_secret = instances[0]
    cluster.transport.adversary = _TakeOne(cluster, first)
    handles = src.engine.migrate_keys(
        [batch_source.BatchItem(inst) for inst, _ in instances], 'dst')
    cluster.transport.adversary = transport.Adversary()
    assert isinstance(handles[0], errors.PeerRefused)
    assert conftest.usable_keys(cluster, first) == {'src': 'ACTIVE',
                                                    'dst': 'ACTIVE'}
    assert src.engine.keystore.read(first) == first_secret
    for handle in handles[1:]:
        assert not isinstance(handle, Exception)
        src.engine.commit(handle.migration_id)
    for inst, secret in instances[1:]:
        assert dst.engine.keystore.read(inst) == secret


def test_commit_some_abort_others(cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    instances = _instances(cluster, 3)
    handles = src.engine.migrate_keys(
        [batch_source.BatchItem(inst) for inst, _ in instances], 'dst')
    mids = [h.migration_id for h in handles if not isinstance(h, Exception)]
    assert len(mids) == 3
    src.engine.abort(mids[1])
    assert src.engine.commit_many([mids[0], mids[2]])
    assert conftest.usable_keys(cluster, instances[1][0]) == {
        'src': 'ACTIVE', 'dst': 'DESTROYED'}
    for index in (0, 2):
        assert dst.engine.keystore.read(instances[index][0]) == \
            instances[index][1]


class _Hold(transport.Adversary):
    """Holds the first sealed request until ``release`` is set."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()

    def on_request(self, peer: str, request: bytes) -> bytes:
        if conftest.msg_type(request) == 'sealed' and \
                not self.held.is_set():
            self.held.set()
            self.release.wait(30)
        return request


def test_concurrent_migrations_coalesce(cluster: conftest.Cluster) -> None:
    """While one migration's exchange is in flight, the others queue and
    leave together as one batch; each keeps its own migration."""
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    src.engine.attest_peer('dst')
    instances = _instances(cluster, 5)
    hold = _Hold()
    cluster.transport.adversary = hold
    results: dict[str, ty.Any] = {}

    def migrate(inst: str) -> None:
        try:
            handle = src.engine.migrate_key(inst, 'dst')
            results[inst] = src.engine.commit(handle.migration_id)
        except Exception as exc:  # noqa: BLE001 - asserted below
            results[inst] = exc

    first = threading.Thread(target=migrate, args=(instances[0][0],))
    first.start()
    assert hold.held.wait(30)
    others = [threading.Thread(target=migrate, args=(inst,))
              for inst, _ in instances[1:]]
    for t in others:
        t.start()
    coalescer = src.engine._coalescer
    assert coalescer is not None
    for _ in range(300):
        queued = sum(len(q) for q in coalescer._queues.values())
        if queued >= len(instances):
            break
        threading.Event().wait(0.01)
    hold.release.set()
    for t in [first, *others]:
        t.join(60)
    cluster.transport.adversary = transport.Adversary()
    assert all(not isinstance(r, Exception) for r in results.values()), \
        results
    types = _types(cluster)
    assert types.count('prepare') == 1          # the first, alone
    assert types.count('prepare_batch') == 1    # the four others
    for inst, secret in instances:
        assert dst.engine.keystore.read(inst) == secret
        assert conftest.usable_keys(cluster, inst) == {'src': 'DESTROYED',
                                                       'dst': 'ACTIVE'}


def test_batch_commit_finished_by_recovery(
        cluster: conftest.Cluster,
        trust_policy: policy_mod.TrustPolicy) -> None:
    """The batch commit is lost after the source decided: each migration
    stays COMMITTING and recovery commits it alone, with the signature of
    the batch it was decided in."""
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    instances = _instances(cluster, 2)
    handles = src.engine.migrate_keys(
        [batch_source.BatchItem(inst) for inst, _ in instances], 'dst')
    mids = [h.migration_id for h in handles if not isinstance(h, Exception)]

    class Lose(transport.Adversary):
        def on_request(self, peer: str, request: bytes) -> bytes:
            if conftest.msg_type(request) == 'sealed' and \
                    conftest.inner_type(request) == 'commit_batch':
                raise errors.TransportError(peer=peer, reason='lost')
            return request
    cluster.transport.adversary = Lose()
    results = src.engine.commit_many(mids)
    assert all(isinstance(r, errors.TransportError) for r in results)
    cluster.transport.adversary = transport.Adversary()
    for mid in mids:
        assert src.engine.journal.get(mid, states.Role.SOURCE).state == \
            'COMMITTING'
    src.engine.recover()
    for (inst, secret), mid in zip(instances, mids, strict=True):
        assert dst.engine.keystore.read(inst) == secret
        record = src.engine.record(mid)
        assert record is not None
        receipts.verify_record(record, trust_policy)


def test_batch_size_is_bounded(cluster: conftest.Cluster) -> None:
    with pytest.raises(ValueError, match='at most'):
        cluster.nodes['src'].engine.migrate_keys(
            [batch_source.BatchItem(f'{i:08d}-0000-4000-8000-000000000000')
             for i in range(batch_source.batch.MAX_BATCH + 1)], 'dst')
