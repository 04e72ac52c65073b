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


"""Requirement E: atomicity. An abort at every step leaves the source's
key usable and the destination clean; a crash of the source, of the
destination or of both at every step, followed by recovery from the
on-disk journal and key store, leaves exactly one usable key - the
original secret - on exactly one host. Also the TOCTOU case: a PCR
change on the destination between attestation and unwrap."""

import collections.abc
import os
import typing as ty

import pytest

from nova_vtpm_migration.protocol import engine as engine_mod
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.protocol import transport
from nova_vtpm_migration.tpm import errors as tpm_errors
from tests.functional import swtpm_fixtures
from tests.functional.protocol import conftest
from tests.support import swtpm

#: The requests of one migration, in order (commit sent separately).
STEPS = ('hello', 'attest', 'prepare', 'transfer', 'commit')
#: Points of failure: before the request is delivered / after the
#: destination processed it but before the source got the reply.
POINTS = [(s, w) for s in STEPS for w in ('request', 'reply')]


class FailAt(transport.Adversary):
    """Fails the exchange of ``step`` at ``when`` with ``action()``."""

    def __init__(self, step: str, when: str,
                 action: collections.abc.Callable[[], None]) -> None:
        self.step, self.when, self.action = step, when, action
        self.fired = False

    def _maybe(self, request: bytes, when: str) -> None:
        if (not self.fired and when == self.when
                and conftest.inner_type(request) == self.step):
            self.fired = True
            self.action()

    def on_request(self, peer: str, request: bytes) -> bytes:
        self._maybe(request, 'request')
        return request

    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        self._maybe(request, 'reply')
        return reply


def _drop() -> None:
    raise errors.TransportError(peer='dst', reason='message lost')


def _run(cluster: conftest.Cluster, inst: str) -> str | None:
    """Migrate and commit; return the migration id if it got that far."""
    src = cluster.nodes['src']
    handle = src.engine.migrate_key(inst, 'dst')
    src.engine.commit(handle.migration_id)
    return handle.migration_id


def _check_one_usable(cluster: conftest.Cluster, inst: str, secret: bytes
                      ) -> str:
    """Exactly one host holds an ACTIVE key (the original secret) and a
    sealed blob for ``inst``; no other host holds any blob for it."""
    keys = conftest.usable_keys(cluster, inst)
    active = [h for h, s in keys.items() if s == 'ACTIVE']
    assert len(active) == 1, keys
    assert all(s in ('ACTIVE', 'DESTROYED') for s in keys.values()), keys
    owner = active[0]
    assert cluster.nodes[owner].engine.keystore.read(inst) == secret
    for name, node in cluster.nodes.items():
        node.engine.keystore.wipe_orphans()
        blobs = [f for f in os.listdir(os.path.join(node.state_dir, 'keys'))
                 if f.startswith(inst)]
        assert len(blobs) == (1 if name == owner else 0), (name, blobs)
    return owner


@pytest.mark.parametrize('step,when', POINTS)
def test_e_abort_at_every_step(cluster: conftest.Cluster, step: str,
                               when: str) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, secret = conftest.new_instance(src)
    cluster.transport.adversary = FailAt(step, when, _drop)
    if step == 'commit':
        handle = src.engine.migrate_key(inst, 'dst')
        with pytest.raises(errors.TransportError):
            src.engine.commit(handle.migration_id)
        # The decision was commit: it cannot be aborted any more ...
        with pytest.raises(errors.StateError):
            src.engine.abort(handle.migration_id)
        # ... and is re-sent until acknowledged.
        src.engine.commit(handle.migration_id)
        assert _check_one_usable(cluster, inst, secret) == 'dst'
        return
    with pytest.raises(errors.TransportError):
        _run(cluster, inst)
    assert _check_one_usable(cluster, inst, secret) == 'src'
    assert dst.engine.keystore.state(inst) in (
        None, conftest.states_mod().KeyState.DESTROYED)
    for row in dst.engine.journal.list_migrations():
        assert row.state == 'ABORTED'
    # The source is still fully usable: migrate again.
    cluster.transport.adversary = transport.Adversary()
    _run(cluster, inst)
    assert _check_one_usable(cluster, inst, secret) == 'dst'


def test_e_explicit_abort_after_transfer(cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, secret = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst')
    assert conftest.usable_keys(cluster, inst) == {'src': 'LOCKED',
                                                   'dst': 'PENDING'}
    # No second export while LOCKED.
    with pytest.raises(errors.InstanceBusy):
        src.engine.migrate_key(inst, 'other')
    src.engine.abort(handle.migration_id)
    src.engine.abort(handle.migration_id)  # idempotent
    assert _check_one_usable(cluster, inst, secret) == 'src'
    with pytest.raises(errors.KeyNotFound):
        dst.engine.take_pending_key(inst, handle.migration_id)
    with pytest.raises(errors.StateError):
        src.engine.commit(handle.migration_id)


def test_e_commit_is_final(cluster: conftest.Cluster) -> None:
    src = cluster.nodes['src']
    inst, secret = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst')
    src.engine.commit(handle.migration_id)
    with pytest.raises(errors.StateError):
        src.engine.abort(handle.migration_id)
    # The destination refuses an abort of a committed migration too.
    with pytest.raises(errors.PeerRefused) as exc:
        src.engine.channel.call('dst', 'abort', {
            'seq': 3, 'migration_id': handle.migration_id, 'reason': 'x'})
    assert exc.value.kwargs['peer_code'] == 'state'
    assert _check_one_usable(cluster, inst, secret) == 'dst'


def _recover_all(cluster: conftest.Cluster, order: tuple[str, ...]) -> None:
    for _ in range(2):
        for name in order:
            cluster.nodes[name].engine.recover()


CRASHES = [(s, w, who) for s, w in POINTS for who in ('src', 'dst', 'both')
           if not (w == 'request' and who == 'dst')]
#: Phase 3: the source crashes after the transfer, before it decides.
CRASHES += [('handover', '-', 'src'), ('handover', '-', 'both')]


@pytest.mark.parametrize('step,when,who', CRASHES)
@pytest.mark.parametrize('oracle', ['presumed_abort', 'guest_on_dst'])
def test_e_crash_at_every_step(cluster: conftest.Cluster, step: str,
                               when: str, who: str, oracle: str) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, secret = conftest.new_instance(src)

    def guest_on_dst(row: journal_mod.MigrationRow) -> str:
        # Under Nova: the instance's host of record. The VM hand-over
        # (phase 3) starts only after the transfer was acknowledged.
        return 'commit' if row.state == 'TRANSFERRED' else 'abort'

    if oracle == 'guest_on_dst':
        src.oracle = guest_on_dst

    def crash() -> None:
        if who in ('dst', 'both'):
            dst.crash()
        if who in ('src', 'both'):
            raise conftest.SimulatedCrash()
        raise errors.TransportError(peer='dst', reason='peer died')

    if step == 'handover':
        src.engine.migrate_key(inst, 'dst')
        if who == 'both':
            dst.crash()
    else:
        cluster.transport.adversary = FailAt(step, when, crash)
        try:
            _run(cluster, inst)
        except conftest.SimulatedCrash:
            assert who != 'dst'
        except errors.ProtocolError:
            assert who == 'dst'
        else:
            raise AssertionError('the failure was not injected')
        cluster.transport.adversary = transport.Adversary()
    # Restart from what is on disk, then recover (in both orders).
    if who in ('src', 'both'):
        src.restart()
    if who in ('dst', 'both'):
        dst.open()
    _recover_all(cluster, ('dst', 'src') if step == 'prepare'
                 else ('src', 'dst'))
    owner = _check_one_usable(cluster, inst, secret)
    if step == 'commit' or (step == 'handover'
                            and oracle == 'guest_on_dst'):
        expected = 'dst'
    else:
        expected = 'src'
    assert owner == expected
    for node in (src, dst):
        for row in node.engine.journal.list_migrations():
            assert row.state in ('COMMITTED', 'ABORTED'), row


@pytest.fixture
def volatile_host(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
                  ) -> collections.abc.Iterator[swtpm_fixtures.SimHost]:
    sim = swtpm_fixtures.attach(swtpm.SwtpmHostTpm(swtpm_ca, 'volatile',
                                                   clone=True))
    yield sim
    sim.stop()


class ExtendBeforeTransfer(transport.Adversary):
    def __init__(self, sim: swtpm_fixtures.SimHost) -> None:
        self.sim = sim

    def on_request(self, peer: str, request: bytes) -> bytes:
        if conftest.inner_type(request) == 'transfer':
            conftest.extend_pcr(self.sim, 16, b'runtime compromise')
        return request


def test_e_toctou_pcr_change_before_unwrap(
        cluster: conftest.Cluster,
        volatile_host: swtpm_fixtures.SimHost) -> None:
    dst = cluster.add('volatile', volatile_host)
    src = cluster.nodes['src']
    inst, secret = conftest.new_instance(src)
    cluster.transport.adversary = ExtendBeforeTransfer(volatile_host)
    with pytest.raises(errors.PeerRefused) as exc:
        src.engine.migrate_key(inst, 'volatile')
    assert exc.value.kwargs['peer_code'] == 'TpmPolicyCheckFailed'
    assert conftest.usable_keys(cluster, inst) == {'src': 'ACTIVE'}
    assert [r.state for r in dst.engine.journal.list_migrations()] == [
        'ABORTED']
    assert src.engine.keystore.read(inst) == secret
    # And the changed host is no longer trusted at all.
    cluster.transport.adversary = transport.Adversary()
    with pytest.raises(tpm_errors.PolicyViolation):
        src.engine.attest_peer('volatile', fresh=True)


__all__: ty.Sequence[str] = ()


@pytest.mark.parametrize('decision', ['commit', 'abort'])
def test_e_no_oracle_keeps_handover_in_doubt(cluster: conftest.Cluster,
                                             decision: str) -> None:
    """Without an outcome oracle nothing is presumed after a crash.

    The Promela model shows presumed abort is unsafe once the guest may
    have been handed over; the migration stays in doubt (no usable key
    anywhere, none lost) until a decision arrives.
    """
    src = cluster.nodes['src']
    src.oracle = engine_mod.no_oracle
    inst, secret = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst')
    src.restart()
    _recover_all(cluster, ('src', 'dst'))
    assert conftest.usable_keys(cluster, inst) == {'src': 'LOCKED',
                                                   'dst': 'PENDING'}
    assert src.engine.journal.get(handle.migration_id,
                                  states.Role.SOURCE).state == 'TRANSFERRED'
    assert src.engine.decide(handle.migration_id, decision) == (
        'COMMITTED' if decision == 'commit' else 'ABORTED')
    _recover_all(cluster, ('dst', 'src'))
    owner = _check_one_usable(cluster, inst, secret)
    assert owner == ('dst' if decision == 'commit' else 'src')
    with pytest.raises(errors.StateError):
        src.engine.decide(handle.migration_id, decision)
