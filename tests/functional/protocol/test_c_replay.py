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


"""Requirement C: replay resistance (sessions, single messages, splicing
across concurrent migrations, single-use migration ids)."""

import dataclasses
import time
import uuid

import pytest

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import transport
from nova_vtpm_migration.tpm import errors as tpm_errors
from tests.functional.protocol import conftest


def _is_error(reply: bytes) -> bool:
    msg = messages.decode(reply)
    return msg.type == 'error' or conftest.inner_type(reply) == 'error'


def _snapshot(node: conftest.Node) -> tuple[object, object]:
    return ([(r.migration_id, r.role, r.state)
             for r in node.engine.journal.list_migrations()],
            node.engine.keystore.instances())


def test_c_replay_whole_old_session(cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, secret = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst')
    src.engine.commit(handle.migration_id)
    old = [x.request for x in cluster.transport.captured]
    assert [conftest.inner_type(r) for r in old] == [
        'hello', 'attest', 'prepare', 'transfer', 'commit']
    before = _snapshot(dst)
    for attempt in ('live', 'restarted'):
        for request in old:
            reply = cluster.transport.deliver('dst', request)
            if conftest.msg_type(request) == 'hello':
                # Anyone may start a handshake; it yields a new session.
                assert messages.decode(reply).type == 'hello_reply'
            else:
                assert _is_error(reply), (attempt, conftest.inner_type(
                    request))
        assert _snapshot(dst) == before
        dst.restart()
    assert dst.engine.keystore.read(inst) == secret


class Duplicate(transport.Adversary):
    """Delivers every sealed request a second time right after it."""

    def __init__(self, cluster: conftest.Cluster) -> None:
        self.cluster = cluster
        self.refused: list[str] = []

    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        if conftest.msg_type(request) in ('sealed', 'attest'):
            again = self.cluster.transport.deliver(peer, request)
            assert _is_error(again)
            self.refused.append(conftest.inner_type(request))
        return reply


def test_c_replay_single_messages(cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, secret = conftest.new_instance(src)
    adversary = Duplicate(cluster)
    cluster.transport.adversary = adversary
    handle = src.engine.migrate_key(inst, 'dst')
    src.engine.commit(handle.migration_id)
    assert adversary.refused == ['attest', 'prepare', 'transfer', 'commit']
    assert conftest.usable_keys(cluster, inst) == {'src': 'DESTROYED',
                                                   'dst': 'ACTIVE'}
    assert dst.engine.keystore.read(inst) == secret


class ReplayOldHelloReply(transport.Adversary):
    def __init__(self, old_reply: bytes) -> None:
        self.old_reply = old_reply

    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        if conftest.msg_type(reply) == 'hello_reply':
            return self.old_reply
        return reply


def test_c_replay_old_attestation(cluster: conftest.Cluster) -> None:
    src = cluster.nodes['src']
    src.engine.attest_peer('dst')
    old_reply = cluster.transport.captured[0].reply
    assert old_reply is not None
    cluster.transport.adversary = ReplayOldHelloReply(old_reply)
    # Its evidence was encrypted for the old handshake's ephemeral key.
    with pytest.raises(errors.AuthenticationFailed, match='decrypt'):
        src.engine.attest_peer('dst', fresh=True)


class SpliceTransfer(transport.Adversary):
    """Puts migration X's (earlier, authentic) transfer in place of
    migration Y's."""

    def __init__(self) -> None:
        self.x_transfer: bytes | None = None
        self.armed = False

    def on_request(self, peer: str, request: bytes) -> bytes:
        if conftest.inner_type(request) == 'transfer':
            if self.x_transfer is None:
                self.x_transfer = request
            elif self.armed:
                return self.x_transfer
        return request


def test_c_splice_two_migrations(cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    x_inst, _ = conftest.new_instance(src)
    y_inst, y_secret = conftest.new_instance(src)
    adversary = SpliceTransfer()
    cluster.transport.adversary = adversary
    x = src.engine.migrate_key(x_inst, 'dst')
    adversary.armed = True
    # Y's transfer is replaced by X's authentic one: refused.
    with pytest.raises(errors.PeerRefused) as exc:
        src.engine.migrate_key(y_inst, 'dst')
    assert exc.value.kwargs['peer_code'] == 'replay'
    cluster.transport.adversary = transport.Adversary()
    assert conftest.usable_keys(cluster, y_inst) == {'src': 'ACTIVE'}
    # Inside the channel too: X's transfer body re-labelled for Y, and a
    # commit of X naming Y's manifest, are refused by the destination.
    y = src.engine.migrate_key(y_inst, 'dst')
    x_manifest = x.manifest
    with pytest.raises(errors.PeerRefused) as exc:
        src.engine.channel.call('dst', 'commit', {
            'seq': 3, 'migration_id': x.migration_id,
            'manifest_hash': bytes.fromhex(src.engine.journal.get(
                y.migration_id, conftest.states_mod().Role.SOURCE
            ).context['manifest_hash']),
            'manifest_batch': [], 'manifest_signature': b'\0' * 64})
    assert exc.value.kwargs['peer_code'] == 'auth_failed'
    z_inst, _ = conftest.new_instance(src)
    z_mid = str(uuid.uuid4())
    body = messages.decode(messages.decode(
        adversary.x_transfer or b'').body['payload']).body
    # Reserve a slot for z, then send X's transfer re-labelled as z's.
    reply, _raw, _sess = src.engine.channel.call('dst', 'prepare', {
        'seq': 1, 'migration_id': z_mid, 'instance_uuid': z_inst,
        'source_host': 'src', 'nonce': b'n' * 32})
    assert reply.type == 'prepare_reply'
    with pytest.raises(errors.PeerRefused) as exc:
        src.engine.channel.call('dst', 'transfer',
                                dict(body, migration_id=z_mid))
    assert exc.value.kwargs['peer_code'] == 'auth_failed'
    assert 'manifest field migration_id' in str(exc.value)
    assert dst.engine.keystore.state(z_inst) is None
    # Both genuine migrations still complete.
    assert x_manifest['migration_id'] == x.migration_id
    src.engine.commit(x.migration_id)
    src.engine.commit(y.migration_id)
    assert dst.engine.keystore.read(y_inst) == y_secret


def test_c_reuse_migration_id(cluster: conftest.Cluster) -> None:
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, _ = conftest.new_instance(src)
    mid = str(uuid.uuid4())
    handle = src.engine.migrate_key(inst, 'dst', migration_id=mid)
    src.engine.commit(handle.migration_id)
    inst2, _ = conftest.new_instance(src)
    with pytest.raises(errors.MigrationIdReused):
        src.engine.migrate_key(inst2, 'dst', migration_id=mid)
    # A source that lost its journal (or another source) and a restarted
    # destination: the id is still refused.
    dst.restart()
    other = cluster.nodes['other']
    inst3, _ = conftest.new_instance(other)
    with pytest.raises(errors.PeerRefused) as exc:
        other.engine.migrate_key(inst3, 'dst', migration_id=mid)
    assert exc.value.kwargs['peer_code'] == 'id_reused'
    assert conftest.usable_keys(cluster, inst3) == {'other': 'ACTIVE'}


class Delay(transport.Adversary):
    def on_reply(self, peer: str, request: bytes, reply: bytes) -> bytes:
        if conftest.msg_type(reply) == 'hello_reply':
            time.sleep(1.2)
        return reply


def test_c_delayed_attestation_refused(cluster: conftest.Cluster) -> None:
    # Evidence held back longer than the policy's max_evidence_age is
    # stale even though its nonce is right.
    strict = dataclasses.replace(cluster.policy, max_evidence_age=1)
    src = cluster.add('strict-src', cluster.nodes['src'].sim, policy=strict)
    cluster.transport.adversary = Delay()
    with pytest.raises(tpm_errors.PolicyViolation,
                       match='max_evidence_age'):
        src.engine.attest_peer('dst')


def test_c_peer_clock_never_goes_back(cluster: conftest.Cluster) -> None:
    """The last clock of each peer AK's quotes is persisted and must not go
    back (kept apart for a responder's amortised epoch quotes)."""
    src = cluster.nodes['src']
    sess = src.engine.attest_peer('dst')
    key = sess.peer_ak_name + handshake.EPOCH_CLOCK_SUFFIX
    seen = src.engine.journal.get_peer_clock(key)
    assert seen is not None and seen.safe
    src.restart()  # the last clock of each peer AK is persisted
    assert src.engine.journal.get_peer_clock(key) == seen
    src.engine.attest_peer('dst')
    later = src.engine.journal.get_peer_clock(key)
    assert later is not None and (later.reset_count, later.restart_count,
                                  later.clock) >= (
        seen.reset_count, seen.restart_count, seen.clock)
    # Evidence from a TPM whose clock is behind what was seen (a rolled
    # back or cloned state) is refused.
    src.engine.journal.set_peer_clock(key, dataclasses.replace(
        later, reset_count=later.reset_count + 1))
    with pytest.raises(tpm_errors.ClockRollback):
        src.engine.attest_peer('dst', fresh=True)
