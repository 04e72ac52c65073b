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


"""The source of a batch (see :mod:`.batch`): several instances moved to
one peer with one phase 1, one phase-2 exchange and one commit exchange.

Every migration of the batch has its own id and journal rows and goes
through the same states as a single one (:mod:`.source`); a migration
refused or failing is aborted alone and reported in its place in the
result, the others go on. :class:`Coalescer` turns concurrent single
migrations (and commits) towards one peer into batches.
"""

import collections
import dataclasses
import threading
import time
import typing as ty
import uuid

from oslo_log import log as logging

from nova_vtpm_migration.protocol import batch
from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import source
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.protocol import transfer
from nova_vtpm_migration.protocol import wire

LOG = logging.getLogger(__name__)

_S = states.SourceState
#: A migration's result in a batch: its handle, or why it failed.
Outcome = source.MigrationHandle | Exception


@dataclasses.dataclass(frozen=True)
class BatchItem:
    """One instance of a batch.

    :ivar instance_uuid: the instance.
    :ivar migration_id: its single-use migration id (default: new).
    :ivar state_blobs: small state blobs sent with its secret.
    """

    instance_uuid: str
    migration_id: str | None = None
    state_blobs: dict[str, bytes] | None = None


@dataclasses.dataclass
class _Live:
    index: int
    mid: str
    instance: str
    blobs: dict[str, bytes]
    mig: transfer.MigrationContext | None = None
    item: dict[str, ty.Any] | None = None


def migrate_batch(role: source.SourceRole, peer: str,
                  items: list[BatchItem], expect_ak: bytes = b'',
                  check_session: source.SessionCheck | None = None
                  ) -> list[Outcome]:
    """Phases 1 and 2 for every instance of ``items`` towards ``peer``.

    :returns: per item, in order: its handle (the destination holds the
        key PENDING, this host LOCKED) or the exception that ended it
        (then it was aborted, best effort, as a single migration is).
    :raises ValueError: more than :data:`~.batch.MAX_BATCH` items.
    """
    if len(items) > batch.MAX_BATCH:
        raise ValueError(f'at most {batch.MAX_BATCH} migrations per batch')
    results: dict[int, Outcome] = {}
    live: list[_Live] = []
    for index, item in enumerate(items):
        try:
            mid = messages.check_uuid(item.migration_id or str(uuid.uuid4()),
                                      'migration_id')
            messages.check_uuid(item.instance_uuid, 'instance_uuid')
            done = role._transferred(mid, item.instance_uuid, peer)
            if done is not None:
                results[index] = done     # asked again
                continue
            blobs = dict(item.state_blobs or {})
            if sum(len(d) + len(n) for n, d in blobs.items()) > \
                    messages.MAX_BATCH_CIPHERTEXT // 2:
                raise errors.InstanceBusy(
                    instance_uuid=item.instance_uuid,
                    reason='its state blobs are too big for a batch')
            role.register(mid, item.instance_uuid, peer)
        except Exception as exc:  # noqa: BLE001 - reported in its place
            results[index] = exc
            continue
        live.append(_Live(index, mid, item.instance_uuid, blobs))
    if live:
        try:
            _run(role, peer, live, results, expect_ak, check_session)
        except Exception as exc:  # noqa: BLE001 - reported per item
            for entry in live:
                if entry.index not in results:
                    role.abort_failed(entry.mid, exc)
                    results[entry.index] = exc
    return [results[i] for i in range(len(items))]


def _refuse(role: source.SourceRole, entry: _Live, exc: Exception,
            results: dict[int, Outcome]) -> None:
    role.abort_failed(entry.mid, exc)
    results[entry.index] = exc


def _run(role: source.SourceRole, peer: str, live: list[_Live],
         results: dict[int, Outcome], expect_ak: bytes,
         check_session: source.SessionCheck | None) -> None:
    ctx = role.ctx
    sess = role.attested_session(peer, expect_ak, check_session)
    for entry in live:
        role._set(entry.mid, _S.ATTESTED,
                  peer_ak_name=sess.peer_ak_name.hex())
        role._sessions[entry.mid] = sess
    source_nonce = crypto.random_bytes(crypto.NONCE_SIZE)
    reply, prepare_raw, used = ctx.channel.call(peer, 'prepare_batch', {
        'seq': 1, 'source_host': ctx.host, 'nonce': source_nonce,
        'items': [{'migration_id': e.mid, 'instance_uuid': e.instance}
                  for e in live]}, session=sess, expect_ak=sess.peer_ak_name)
    if used is not sess:
        if check_session is not None:
            check_session(used)
        sess = used
        for entry in live:
            role._sessions[entry.mid] = sess
    codes = {i['migration_id']: i['code'] for i in reply.body['items']}
    if sorted(codes) != sorted(e.mid for e in live):
        raise errors.UnexpectedMessage(type='prepare_batch_reply',
                                       reason='other migrations')
    binding_key = messages.certified_from_wire(reply.body['binding_key'])
    transfer.verify_binding_key(binding_key, sess.peer_identity,
                                sess.peer_pcr_values,
                                sess.binding_qualifier(), ctx.policy,
                                peer_clock=sess.peer_clock)
    batch_hash = batch.batch_hash(prepare_raw, reply.raw)
    accepted = []
    for entry in live:
        if codes[entry.mid]:
            _refuse(role, entry, errors.PeerRefused(
                peer=peer, request='prepare_batch',
                peer_code=codes[entry.mid],
                peer_message='refused this migration of the batch'),
                results)
            continue
        entry.mig = transfer.MigrationContext(
            migration_id=entry.mid, instance_uuid=entry.instance,
            version=sess.version, source_host=ctx.channel.local.host,
            dest_host=sess.peer_host, source_ak_name=sess.local_ak_name,
            dest_ak_name=sess.peer_ak_name, source_nonce=source_nonce,
            dest_nonce=reply.body['nonce'], binding_key=binding_key,
            migration_hash=batch.item_hash(batch_hash, entry.mid))
        role._set(entry.mid, _S.PREPARED, **entry.mig.to_json())
        accepted.append(entry)
    if not accepted:
        return
    # One data key, wrapped once (one ECDH here, one ECDH_ZGen in
    # the destination's TPM); each migration has its own payload key.
    data_key = crypto.random_bytes(crypto.KEY_SIZE)
    wrapped = transfer.wrap_data_key(binding_key, data_key,
                                     batch.wrap_info(batch_hash))
    dest_evidence = wire.encode(receipts.signer_evidence(
        sess.peer_identity, sess.peer_signing_key), receipts.SIGNER)
    for entry in accepted:
        assert entry.mig is not None
        entry.item = transfer.seal_item(
            entry.mig, data_key, wrapped, ctx.keystore.read(entry.instance),
            entry.blobs, int(time.time()))
        with ctx.state_lock, ctx.journal.transaction():
            ctx.keystore.lock_for_export(entry.instance, entry.mid)
            role._set(entry.mid, _S.TRANSFERRING)
            ctx.journal.put_record(entry.mid, 'manifest', wire.encode(
                entry.item['manifest'], messages.MANIFEST))
            ctx.journal.put_record(entry.mid, 'dest_evidence', dest_evidence)
    reply, _raw, _sess = ctx.channel.call(peer, 'transfer_batch', {
        'seq': 2, 'wrapped_key': wrapped,
        'items': [e.item for e in accepted]}, session=sess,
        expect_ak=sess.peer_ak_name)
    got = {r['migration_id']: r for r in reply.body['receipts']}
    refused = {r['migration_id']: r['code'] for r in reply.body['refused']}
    for entry in accepted:
        assert entry.item is not None
        manifest = entry.item['manifest']
        receipt = got.get(entry.mid)
        try:
            if receipt is None:
                raise errors.PeerRefused(
                    peer=peer, request='transfer_batch',
                    peer_code=refused.get(entry.mid, 'missing'),
                    peer_message='refused this migration of the batch')
            receipts.check_receipt_matches(receipt, manifest, 'installed')
        except errors.ProtocolError as exc:
            _refuse(role, entry, exc, results)
            continue
        with ctx.journal.transaction():
            ctx.journal.put_record(entry.mid, 'receipt_installed',
                                   wire.encode(receipt, messages.RECEIPT))
            role._set(entry.mid, _S.TRANSFERRED,
                      manifest_hash=receipts.manifest_hash(manifest).hex())
        results[entry.index] = source.MigrationHandle(
            migration_id=entry.mid, instance_uuid=entry.instance, peer=peer,
            manifest=manifest, receipt=receipt)
    LOG.info('Batch to %s: %d of %d keys transferred', peer,
             sum(isinstance(results.get(e.index), source.MigrationHandle)
                 for e in live), len(live))


def commit_batch(role: source.SourceRole, mids: list[str]
                 ) -> list[dict[str, ty.Any] | Exception]:
    """Commit transferred migrations together: one ``TPM2_Sign`` here and
    one on each destination for the migrations it holds.

    :returns: per migration, in order: the signed ``committed`` receipt,
        or the exception that left it as it was (a COMMITTING migration
        is finished by a later commit or by recovery).
    """
    batch.check_ids(list(mids))
    results: dict[str, dict[str, ty.Any] | Exception] = {}
    todo = []
    for mid in mids:
        row = role._row(mid)
        if row.state not in (_S.TRANSFERRED.value, _S.COMMITTING.value):
            results[mid] = errors.StateError(
                role=states.Role.SOURCE.value, migration_id=mid,
                old=row.state, new=_S.COMMITTING.value)
            continue
        todo.append(mid)
    deciding = [m for m in todo
                if role._row(m).state == _S.TRANSFERRED.value]
    if deciding:
        role.decide_commits(deciding)
    groups: dict[tuple[str, bytes, bytes], list[str]] = (
        collections.defaultdict(list))
    for mid in todo:
        row = role._row(mid)
        if row.state != _S.COMMITTING.value:
            results[mid] = errors.StateError(
                role=states.Role.SOURCE.value, migration_id=mid,
                old=row.state, new=_S.COMMITTING.value)
            continue
        signed_batch, signature = role.signed_manifest(mid)
        groups[(row.peer, b''.join(signed_batch), signature)].append(mid)
    for (peer, _hashes, signature), group in groups.items():
        _commit_group(role, peer, group, signature, results)
    return [results[mid] for mid in mids]


def _commit_group(role: source.SourceRole, peer: str, group: list[str],
                  signature: bytes,
                  results: dict[str, dict[str, ty.Any] | Exception]
                  ) -> None:
    rows = [role._row(mid) for mid in group]
    signed_batch, _sig = role.signed_manifest(group[0])
    try:
        reply, _raw, _sess = role.ctx.channel.call(peer, 'commit_batch', {
            'seq': 3,
            'items': [{'migration_id': r.migration_id,
                       'manifest_hash': receipts.manifest_hash(
                           role._manifest(r.migration_id))} for r in rows],
            'manifest_batch': signed_batch,
            'manifest_signature': signature},
            session=role._session(group[0]),
            expect_ak=rows[0].peer_ak_name)
        answers = reply.body['items']
        if len(answers) != len(rows):
            raise errors.UnexpectedMessage(type='commit_batch_reply',
                                           reason='other migrations')
    except Exception as exc:  # noqa: BLE001 - they stay COMMITTING
        for row in rows:
            results[row.migration_id] = exc
        return
    for row, answer in zip(rows, answers, strict=True):
        try:
            results[row.migration_id] = role.finish_commit(
                row, answer['receipt'], answer['batch'],
                answer['signature'])
        except Exception as exc:  # noqa: BLE001 - stays COMMITTING
            results[row.migration_id] = exc


class _Waiting:
    """A caller waiting in a :class:`Coalescer` queue."""

    def __init__(self, work: ty.Any) -> None:
        self.work = work
        self.outcome: ty.Any = None
        self.event = threading.Event()
        self.lead = False

    def result(self) -> ty.Any:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class Coalescer:
    """Concurrent migrations (and commits) towards one peer leave as one
    batch.

    The first caller towards a peer starts at once (a lone migration
    waits for nothing and uses the single-migration messages); callers
    that arrive while it runs queue up and leave together, as one batch,
    when it is done -- the coalescing window is the exchange in flight.

    :param role: this host's source role.
    """

    def __init__(self, role: source.SourceRole) -> None:
        self._role = role
        self._lock = threading.Lock()
        self._queues: dict[ty.Hashable, list[_Waiting]] = {}
        self._busy: set[ty.Hashable] = set()

    def migrate(self, instance_uuid: str, peer: str,
                migration_id: str | None = None,
                state_blobs: dict[str, bytes] | None = None,
                expect_ak: bytes = b'',
                check_session: source.SessionCheck | None = None
                ) -> source.MigrationHandle:
        """:meth:`.source.SourceRole.migrate`, batched with concurrent
        migrations to ``peer`` (with the same ``expect_ak`` and
        ``check_session``)."""
        item = BatchItem(instance_uuid, migration_id, state_blobs)

        def run(group: list[_Waiting]) -> None:
            if len(group) == 1:
                one: BatchItem = group[0].work
                self._single(group[0], lambda: self._role.migrate(
                    one.instance_uuid, peer, one.migration_id,
                    one.state_blobs, expect_ak, check_session))
                return
            outcomes = migrate_batch(self._role, peer,
                                     [w.work for w in group], expect_ak,
                                     check_session)
            for waiting, outcome in zip(group, outcomes, strict=True):
                waiting.outcome = outcome
        handle: source.MigrationHandle = self._submit(
            ('migrate', peer, expect_ak, check_session), item, run)
        return handle

    def commit(self, migration_id: str) -> dict[str, ty.Any]:
        """:meth:`.source.SourceRole.commit`, batched with concurrent
        commits of migrations to the same peer."""
        peer = self._role._row(migration_id).peer

        def run(group: list[_Waiting]) -> None:
            if len(group) == 1:
                mid: str = group[0].work
                self._single(group[0], lambda: self._role.commit(mid))
                return
            outcomes = commit_batch(self._role, [w.work for w in group])
            for waiting, outcome in zip(group, outcomes, strict=True):
                waiting.outcome = outcome
        receipt: dict[str, ty.Any] = self._submit(('commit', peer),
                                                  migration_id, run)
        return receipt

    @staticmethod
    def _single(waiting: _Waiting, call: ty.Callable[[], ty.Any]) -> None:
        try:
            waiting.outcome = call()
        except Exception as exc:  # noqa: BLE001 - re-raised by its caller
            waiting.outcome = exc

    def _submit(self, key: ty.Hashable, work: ty.Any,
                run: ty.Callable[[list[_Waiting]], None]) -> ty.Any:
        mine = _Waiting(work)
        with self._lock:
            queue = self._queues.setdefault(key, [])
            queue.append(mine)
            mine.lead = key not in self._busy
            self._busy.add(key)
        if not mine.lead:
            mine.event.wait()
        if mine.lead and mine.outcome is None:
            self._lead(key, run)
        return mine.result()

    def _lead(self, key: ty.Hashable, run: ty.Callable[[list[_Waiting]],
                                                       None]) -> None:
        """Run the queue's next batch; hand the lead to a waiting caller
        if more queued up meanwhile."""
        with self._lock:
            queue = self._queues[key]
            group = queue[:batch.MAX_BATCH]
            del queue[:batch.MAX_BATCH]
        try:
            # Every caller's own arguments are in its work item; the
            # leader's run function serves the whole group.
            run(group)
        except Exception as exc:  # noqa: BLE001 - reported per caller
            for waiting in group:
                if waiting.outcome is None:
                    waiting.outcome = exc
        finally:
            with self._lock:
                if queue:
                    queue[0].lead = True
                    nxt: _Waiting | None = queue[0]
                else:
                    nxt = None
                    self._busy.discard(key)
            for waiting in group:
                waiting.lead = False
                waiting.event.set()
            if nxt is not None:
                nxt.event.set()
