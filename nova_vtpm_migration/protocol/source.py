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


"""The source role: phase 2 as coordinator, commit, abort, recovery.

Every state change is journalled (and fsynced) before the message that
depends on it is sent; the key is ``LOCKED`` in the same transaction that
enters ``TRANSFERRING`` and destroyed in the one that enters
``COMMITTED``. The manifest is signed (``TPM2_Sign``) when the commit is
decided, outside the state lock, and the signature is journalled with
``COMMITTING`` so that a re-sent commit carries the same one.
"""

import dataclasses
import time
import typing as ty
import uuid

from oslo_log import log as logging

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import context as context_mod
from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import journal as journal_mod
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import session as session_mod
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.protocol import transfer
from nova_vtpm_migration.protocol import wire

LOG = logging.getLogger(__name__)

_S = states.SourceState
_ROLE = states.Role.SOURCE

SIGNED_MANIFEST = receipts.SIGNED_MANIFEST
SIGNED_RECEIPT = receipts.SIGNED_RECEIPT
MANIFEST = messages.MANIFEST
RECEIPT = messages.RECEIPT

_IN_DOUBT = (_S.TRANSFERRING.value, _S.TRANSFERRED.value)

#: ``guard(row) -> bool``: whether a destination's rollback may abort.
AbortGuard = ty.Callable[[journal_mod.MigrationRow], bool]
#: ``check(session)``: raises unless the session may carry this key.
SessionCheck = ty.Callable[[session_mod.Session], None]


@dataclasses.dataclass(frozen=True)
class MigrationHandle:
    """A migration whose key transfer completed (source ``TRANSFERRED``).

    :ivar migration_id: the single-use migration id.
    :ivar instance_uuid: the instance.
    :ivar peer: the destination's transport address.
    :ivar manifest: the manifest (public; signed at commit).
    :ivar receipt: the destination's ``installed`` receipt
        (authenticated by the session; unsigned).
    """

    migration_id: str
    instance_uuid: str
    peer: str
    manifest: dict[str, ty.Any]
    receipt: dict[str, ty.Any]


class SourceRole:
    """Source-side operations of a host (see
    :class:`~.engine.MigrationEngine`).

    :param ctx: the host's protocol state.
    :param abort_guard: ``guard(row)`` tells whether a destination's
        ``rollback`` request may abort the migration of *row* (the caller
        checks that the guest was not handed over); ``None`` allows it.
    """

    def __init__(self, ctx: context_mod.HostContext,
                 abort_guard: AbortGuard | None = None) -> None:
        self.ctx = ctx
        self._abort_guard = abort_guard
        #: The session each unfinished migration ran on; its outcome
        #: messages use it too (one attestation per migration even with a
        #: session lifetime of 0), unless the peer forgot it.
        self._sessions: dict[str, session_mod.Session] = {}

    def _session(self, mid: str) -> session_mod.Session | None:
        sess = self._sessions.get(mid)
        return sess if sess is not None and sess.valid else None

    def _set(self, mid: str, new: states.SourceState,
             **context: ty.Any) -> journal_mod.MigrationRow:
        return self.ctx.journal.set_state(mid, _ROLE, new.value, **context)

    def _row(self, mid: str) -> journal_mod.MigrationRow:
        row = self.ctx.journal.get(mid, _ROLE)
        if row is None:
            raise errors.UnknownMigration(migration_id=mid)
        return row

    def migrate(self, instance_uuid: str, peer: str,
                migration_id: str | None, state_blobs: dict[str, bytes]
                | None, expect_ak: bytes = b'',
                check_session: SessionCheck | None = None
                ) -> MigrationHandle:
        """Run phases 1 and 2: afterwards the destination holds the key
        ``PENDING`` and this host ``LOCKED``.

        On any failure the migration is aborted (best effort) and the
        error re-raised; the key is ``ACTIVE`` again unless the abort could
        not be delivered after the transfer (then recovery finishes it).
        Asked again for a migration that already transferred to *peer*,
        it returns that migration (the destination may ask twice).

        :param expect_ak: the peer AK attested earlier (at Nova's
            pre-check): the key moves to that TPM only.
        :param check_session: called with every session the key's
            messages use (e.g. a named trust policy's extra checks).
        :raises InstanceBusy: the key is not ``ACTIVE`` here.
        :raises MigrationIdReused: ``migration_id`` was used before.
        :raises PeerIdentityMismatch: the peer is not ``expect_ak``.
        """
        mid = messages.check_uuid(migration_id or str(uuid.uuid4()),
                                  'migration_id')
        messages.check_uuid(instance_uuid, 'instance_uuid')
        blobs = dict(state_blobs or {})
        done = self._transferred(mid, instance_uuid, peer)
        if done is not None:
            return done
        self.register(mid, instance_uuid, peer)
        try:
            return self._run(mid, instance_uuid, peer, blobs, expect_ak,
                             check_session)
        except Exception as exc:
            self.abort_failed(mid, exc)
            raise

    def register(self, mid: str, instance_uuid: str, peer: str) -> None:
        """Journal a NEW migration of an instance whose key is ACTIVE
        here.

        :raises InstanceBusy: the key is not ``ACTIVE`` here.
        :raises MigrationIdReused: ``mid`` was used before.
        """
        ctx = self.ctx
        with ctx.state_lock:
            if ctx.keystore.state(instance_uuid) is not states.KeyState.ACTIVE:
                raise errors.InstanceBusy(
                    instance_uuid=instance_uuid,
                    reason='no ACTIVE key on this host')
            with ctx.journal.transaction():
                ctx.journal.mark_seen(mid)
                ctx.journal.create_migration(mid, _ROLE, _S.NEW.value,
                                           instance_uuid, peer)

    def abort_failed(self, mid: str, exc: BaseException) -> None:
        """Abort a migration that failed with ``exc`` (best effort: an
        abort that cannot be delivered is finished by recovery)."""
        LOG.warning('Migration %s failed: %s', mid, exc)
        try:
            self.abort(mid, reason=type(exc).__name__)
        except exception.VtpmMigrationException as abort_exc:
            LOG.warning('Abort of migration %s incomplete (recovery '
                        'will finish it): %s', mid, abort_exc)

    def _transferred(self, mid: str, instance_uuid: str,
                     peer: str) -> MigrationHandle | None:
        """The migration *mid* if it already transferred this instance's
        key to *peer* (a repeated request), else ``None``."""
        row = self.ctx.journal.get(mid, _ROLE)
        if row is None or row.state != _S.TRANSFERRED.value or \
                row.instance_uuid != instance_uuid or row.peer != peer:
            return None
        receipt = wire.decode(self._record(mid, 'receipt_installed'),
                              RECEIPT)
        return MigrationHandle(migration_id=mid, instance_uuid=instance_uuid,
                               peer=peer, manifest=self._manifest(mid),
                               receipt=receipt)

    def attested_session(self, peer: str, expect_ak: bytes,
                         check_session: SessionCheck | None
                         ) -> session_mod.Session:
        """Phase 1 towards *peer*: its attested session, whose AK is pinned
        for the whole migration: a re-attestation (peer forgot the session,
        or it expired) must find the TPM attested at the pre-check
        (*expect_ak*), else :class:`errors.PeerIdentityMismatch`."""
        channel = self.ctx.channel
        sess = channel.attest(peer, fresh=channel.session_lifetime <= 0)
        pinned = expect_ak or sess.peer_ak_name
        if sess.peer_ak_name != pinned:
            raise errors.PeerIdentityMismatch(
                reason=f'{peer} presents another TPM identity than the one '
                       'attested before')
        if check_session is not None:
            check_session(sess)
        return sess

    def _run(self, mid: str, instance_uuid: str, peer: str,
             blobs: dict[str, bytes], expect_ak: bytes,
             check_session: SessionCheck | None) -> MigrationHandle:
        ctx = self.ctx
        started = time.monotonic()
        sess = self.attested_session(peer, expect_ak, check_session)
        self._set(mid, _S.ATTESTED, peer_ak_name=sess.peer_ak_name.hex())
        phase1 = time.monotonic()
        source_nonce = crypto.random_bytes(crypto.NONCE_SIZE)
        self._sessions[mid] = sess
        reply, prepare_raw, used = ctx.channel.call(peer, 'prepare', {
            'seq': 1, 'migration_id': mid, 'instance_uuid': instance_uuid,
            'source_host': ctx.host, 'nonce': source_nonce}, session=sess,
            expect_ak=sess.peer_ak_name)
        if used is not sess and check_session is not None:
            check_session(used)
        sess = used
        body = reply.body
        if body['migration_id'] != mid:
            raise errors.UnexpectedMessage(type='prepare_reply',
                                           reason='other migration')
        binding_key = messages.certified_from_wire(body['binding_key'])
        transfer.verify_binding_key(binding_key, sess.peer_identity,
                                    sess.peer_pcr_values,
                                    sess.binding_qualifier(), ctx.policy,
                                    peer_clock=sess.peer_clock)
        mig = transfer.MigrationContext(
            migration_id=mid, instance_uuid=instance_uuid,
            version=sess.version, source_host=ctx.channel.local.host,
            dest_host=sess.peer_host, source_ak_name=sess.local_ak_name,
            dest_ak_name=sess.peer_ak_name, source_nonce=source_nonce,
            dest_nonce=body['nonce'], binding_key=binding_key,
            migration_hash=transfer.migration_hash(prepare_raw, reply.raw))
        self._set(mid, _S.PREPARED, **mig.to_json())
        tbody, manifest = transfer.build_transfer(
            mig, ctx.keystore.read(instance_uuid), blobs, int(time.time()))
        # One durable transaction locks the key (no second
        # export) and journals TRANSFERRING before the key leaves.
        with ctx.state_lock, ctx.journal.transaction():
            ctx.keystore.lock_for_export(instance_uuid, mid)
            self._set(mid, _S.TRANSFERRING)
            ctx.journal.put_record(mid, 'manifest',
                                   wire.encode(manifest, MANIFEST))
            ctx.journal.put_record(mid, 'dest_evidence', wire.encode(
                receipts.signer_evidence(sess.peer_identity,
                                         sess.peer_signing_key),
                receipts.SIGNER))
        reply, _raw, _sess = ctx.channel.call(
            peer, 'transfer', tbody, session=sess,
            expect_ak=sess.peer_ak_name)
        receipt = reply.body['receipt']
        receipts.check_receipt_matches(receipt, manifest, 'installed')
        with ctx.journal.transaction():
            ctx.journal.put_record(mid, 'receipt_installed',
                                   wire.encode(receipt, RECEIPT))
            self._set(mid, _S.TRANSFERRED,
                      manifest_hash=receipts.manifest_hash(manifest).hex())
        LOG.info('Migration %s: key of instance %s transferred to %s '
                 '(phase 1 %.1f ms, phase 2 %.1f ms)', mid, instance_uuid,
                 peer, (phase1 - started) * 1000,
                 (time.monotonic() - phase1) * 1000)
        return MigrationHandle(migration_id=mid,
                               instance_uuid=instance_uuid, peer=peer,
                               manifest=manifest, receipt=receipt)

    def _check_receipt(self, mid: str, receipt: dict[str, ty.Any],
                       signature: bytes, manifest: dict[str, ty.Any],
                       status: str, batch: list[bytes]) -> None:
        dest = wire.decode(self._record(mid, 'dest_evidence'),
                           receipts.SIGNER)
        receipts.verify_receipt(receipt, signature, dest, self.ctx.policy,
                                batch=batch)
        receipts.check_receipt_matches(receipt, manifest, status)

    def _record(self, mid: str, kind: str) -> bytes:
        data = self.ctx.journal.get_record(mid, kind)
        if data is None:
            raise errors.JournalError(reason=f'{kind} of {mid} missing')
        return data

    def _manifest(self, mid: str) -> dict[str, ty.Any]:
        manifest: dict[str, ty.Any] = wire.decode(
            self._record(mid, 'manifest'), MANIFEST)
        return manifest

    # -- commit ---------------------------------------------------------

    def commit(self, mid: str) -> dict[str, ty.Any]:
        """Decide commit: the destination activates its copy, then this
        host verifies the ``committed`` receipt and destroys its own.

        :returns: the signed ``committed`` receipt.
        :raises StateError: the migration is not ``TRANSFERRED``.
        """
        row = self._row(mid)
        if row.state == _S.TRANSFERRED.value:
            self._decide_commit(mid)
            row = self._row(mid)
        if row.state != _S.COMMITTING.value:
            raise errors.StateError(role=_ROLE.value, migration_id=mid,
                                    old=row.state, new=_S.COMMITTING.value)
        return self._send_commit(row)

    def _decide_commit(self, mid: str,
                       before: tuple[str, ...] = (_S.TRANSFERRED.value,)
                       ) -> None:
        """``TRANSFERRED -> COMMITTING`` (or from another state of
        ``before``) with the manifest signature."""
        self.decide_commits([mid], before)

    def decide_commits(self, mids: list[str],
                       before: tuple[str, ...] = (_S.TRANSFERRED.value,)
                       ) -> None:
        """Decide commit for a batch: one ``TPM2_Sign`` over the batch of
        their manifest hashes; each migration journals the signature and
        the batch with ``COMMITTING``.

        The TPM signs before the state lock is taken; a concurrent
        decision (another commit, an abort) found under the lock wins and
        that migration keeps its own.
        """
        batch, signature = receipts.sign_manifests(
            self.ctx.tpm, [self._manifest(mid) for mid in mids])
        encoded = wire.encode({'kind': 'manifests', 'hashes': batch},
                              receipts.BATCH)
        for mid in mids:
            with self.ctx.state_lock, self.ctx.journal.transaction():
                if self._row(mid).state not in before:
                    continue
                self.ctx.journal.put_record(mid, 'manifest_signature',
                                            signature)
                self.ctx.journal.put_record(mid, 'manifest_batch', encoded)
                self._set(mid, _S.COMMITTING)

    def signed_manifest(self, mid: str) -> tuple[list[bytes], bytes]:
        """The batch and signature journalled with ``COMMITTING``."""
        batch = wire.decode(self._record(mid, 'manifest_batch'),
                            receipts.BATCH)['hashes']
        return batch, self._record(mid, 'manifest_signature')

    def _send_commit(self, row: journal_mod.MigrationRow
                     ) -> dict[str, ty.Any]:
        ctx = self.ctx
        mid = row.migration_id
        manifest = self._manifest(mid)
        batch, manifest_signature = self.signed_manifest(mid)
        reply, _raw, _sess = ctx.channel.call(row.peer, 'commit', {
            'seq': 3, 'migration_id': mid,
            'manifest_hash': receipts.manifest_hash(manifest),
            'manifest_batch': batch,
            'manifest_signature': manifest_signature},
            session=self._session(mid), expect_ak=row.peer_ak_name)
        return self.finish_commit(row, reply.body['receipt'],
                                  reply.body['receipt_batch'],
                                  reply.body['receipt_signature'])

    def finish_commit(self, row: journal_mod.MigrationRow,
                      receipt: dict[str, ty.Any], receipt_batch: list[bytes],
                      signature: bytes) -> dict[str, ty.Any]:
        """Verify the ``committed`` receipt, keep the audit record and
        destroy this host's key (``COMMITTED``).

        :returns: the receipt with its signature.
        :raises ReceiptInvalid: the receipt does not verify.
        """
        ctx = self.ctx
        mid = row.migration_id
        manifest = self._manifest(mid)
        batch, manifest_signature = self.signed_manifest(mid)
        self._check_receipt(mid, receipt, signature, manifest, 'committed',
                            receipt_batch)
        record = receipts.build_record(
            manifest, manifest_signature, receipt, signature,
            receipts.signer_evidence(ctx.channel.local.identity,
                                     ctx.channel.local.signing_key),
            wire.decode(self._record(mid, 'dest_evidence'),
                        receipts.SIGNER),
            manifest_batch=batch, receipt_batch=receipt_batch)
        with ctx.state_lock:
            with ctx.journal.transaction():
                ctx.journal.put_record(mid, 'record', record)
                if ctx.keystore.migration_of(row.instance_uuid) == mid:
                    ctx.keystore.destroy(row.instance_uuid)
                self._set(mid, _S.COMMITTED)
            ctx.keystore.wipe_orphans()
        self._sessions.pop(mid, None)
        LOG.info('Migration %s committed; key of instance %s destroyed on '
                 'this host', mid, row.instance_uuid)
        return dict(receipt, signature=signature)

    # -- abort ------------------------------------------------------------

    def abort(self, mid: str, reason: str = 'requested') -> None:
        """Decide abort: the destination destroys what it received, then
        the key is ``ACTIVE`` here again.

        :raises StateError: the migration is committing or committed.
        :raises TransportError: the destination could not confirm (the
            migration stays ``ABORTING``; recovery re-sends).
        """
        with self.ctx.state_lock:
            row = self._row(mid)
            if row.state == _S.ABORTED.value:
                return
            if row.state != _S.ABORTING.value:
                row = self._set(mid, _S.ABORTING, abort_from=row.state)
        self._send_abort(row, reason)

    def _send_abort(self, row: journal_mod.MigrationRow,
                    reason: str) -> None:
        ctx = self.ctx
        mid = row.migration_id
        before = row.context.get('abort_from', _S.NEW.value)
        sent_key = before in (_S.TRANSFERRING.value, _S.TRANSFERRED.value)
        if before != _S.NEW.value:
            try:
                reply, _raw, _sess = ctx.channel.call(row.peer, 'abort', {
                    'seq': 3, 'migration_id': mid,
                    'reason': ''.join(c for c in reason
                                      if c.isprintable())[:256]},
                    session=self._session(mid), expect_ak=row.peer_ak_name)
                if reply.body['state'] != states.DestState.ABORTED.value:
                    raise errors.StateError(
                        role='destination', migration_id=mid,
                        old=reply.body['state'],
                        new=states.DestState.ABORTED.value)
            except exception.VtpmMigrationException:
                # Before the transfer the destination holds no
                # key; a RESERVED slot is released by its own recovery.
                if sent_key:
                    raise
                LOG.warning('Migration %s: destination not told about the '
                            'abort (it holds no key)', mid)
        with ctx.state_lock:
            with ctx.journal.transaction():
                if (ctx.keystore.migration_of(row.instance_uuid) == mid and
                        ctx.keystore.state(row.instance_uuid)
                        is states.KeyState.LOCKED):
                    ctx.keystore.unlock(row.instance_uuid, mid)
                self._set(mid, _S.ABORTED)
        self._sessions.pop(mid, None)
        LOG.info('Migration %s aborted; key of instance %s is ACTIVE on '
                 'this host', mid, row.instance_uuid)

    # -- a destination's rollback ----------------------------------------

    def on_rollback(self, sess: session_mod.Session,
                    msg: messages.Message) -> bytes:
        """A destination asks this host (its source) to abort.

        Only the destination's own TPM identity may ask (the session's
        AK is the one the migration is bound to), only before the commit,
        and only while the abort guard (Nova: the guest was not handed
        over) allows it; a refusal leaves everything as it is.

        :raises UnknownMigration: no such migration here.
        :raises PeerIdentityMismatch: another host asks.
        :raises AbortRefused: committing, or the guard refuses.
        """
        mid = msg.body['migration_id']
        row = self._row(mid)
        if row.peer_ak_name != sess.peer_ak_name:
            raise errors.PeerIdentityMismatch(
                reason=f'migration {mid} has another destination')
        if row.state in (_S.COMMITTING.value, _S.COMMITTED.value):
            raise errors.AbortRefused(migration_id=mid,
                                      reason=f'it is {row.state}')
        if row.state != _S.ABORTED.value:
            if self._abort_guard is not None and \
                    not self._abort_guard(row):
                raise errors.AbortRefused(
                    migration_id=mid,
                    reason='the guest may have been handed over')
            self.abort(mid, reason='destination rollback: '
                       + msg.body['reason'])
        return messages.encode('rollback_reply', {
            'migration_id': mid, 'state': self._row(mid).state[:16]})

    # -- status (answering a destination) ----------------------------------

    def decision(self, mid: str) -> tuple[str, str]:
        """This host's decision on a migration it is the source of.

        :returns: (state, 'commit' | 'abort' | 'pending').
        """
        row = self.ctx.journal.get(mid, _ROLE)
        if row is None:
            # Presumed abort: a migration this source has no
            # record of can never be committed by it.
            return 'UNKNOWN', 'abort'
        if row.state in (_S.COMMITTING.value, _S.COMMITTED.value):
            return row.state, 'commit'
        if row.state in (_S.ABORTING.value, _S.ABORTED.value):
            return row.state, 'abort'
        return row.state, 'pending'

    def decide(self, mid: str, outcome: str) -> str:
        """Resolve an in-doubt migration by an external decision.

        For an operator (``nova-vtpm-migration journal decide``) or an
        outcome oracle that answers later than recovery ran.

        :param mid: the migration id.
        :param outcome: ``commit`` or ``abort``.
        :returns: the state after the decision.
        :raises StateError: the migration is not in doubt.
        :raises ValueError: unknown outcome.
        """
        if outcome not in ('commit', 'abort'):
            raise ValueError(f'outcome must be commit or abort: {outcome!r}')
        row = self._row(mid)
        if row.state not in (_S.TRANSFERRING.value, _S.TRANSFERRED.value):
            raise errors.StateError(
                role=_ROLE.value, migration_id=mid, old=row.state,
                new=(_S.COMMITTING if outcome == 'commit'
                     else _S.ABORTING).value)
        LOG.info('Migration %s of instance %s decided: %s', mid,
                 row.instance_uuid, outcome)
        if outcome == 'commit':
            self._decide_commit(mid, _IN_DOUBT)
            self._send_commit(self._row(mid))
        else:
            self.abort(mid, reason='operator decision')
        return self._row(mid).state

    # -- recovery -----------------------------------------------------------

    def recover(self, oracle: ty.Callable[[journal_mod.MigrationRow], str]
                ) -> dict[str, str]:
        """Resolve unfinished source migrations (see the engine).

        :param oracle: decides in-doubt migrations (``commit``, ``abort``
            or ``unknown``).
        """
        return self._resolve(oracle, settle_age=None)

    def settle(self, oracle: ty.Callable[[journal_mod.MigrationRow], str],
               min_age: float) -> dict[str, str]:
        """Finish source migrations while this host runs (see the engine).

        Unlike :meth:`recover` nothing that may still be in flight is
        aborted: only decided migrations (COMMITTING, ABORTING) are
        re-sent, and in-doubt ones (TRANSFERRING, TRANSFERRED) unchanged
        for *min_age* seconds are put to *oracle*.
        """
        return self._resolve(oracle, settle_age=min_age)

    def _resolve(self, oracle: ty.Callable[[journal_mod.MigrationRow], str],
                 settle_age: float | None) -> dict[str, str]:
        result: dict[str, str] = {}
        final = {s.value for s in states.SOURCE_FINAL}
        in_doubt = (_S.TRANSFERRING.value, _S.TRANSFERRED.value)
        decided = (_S.COMMITTING.value, _S.ABORTING.value)
        now = time.time()
        for row in self.ctx.journal.list_migrations(_ROLE):
            if row.state in final:
                continue
            if settle_age is not None and not (
                    row.state in decided or (row.state in in_doubt and
                                             now - row.updated_at
                                             >= settle_age)):
                continue
            mid = row.migration_id
            try:
                if row.state in in_doubt:
                    outcome = oracle(row)
                    LOG.info('Recovery: migration %s in %s, oracle says '
                             '%s', mid, row.state, outcome)
                    if outcome == 'commit':
                        self._decide_commit(mid, _IN_DOUBT)
                        self._send_commit(self._row(mid))
                    elif outcome == 'abort':
                        self.abort(mid, reason='recovery')
                    else:
                        LOG.warning('Migration %s of instance %s stays in '
                                    'doubt (%s): the outcome oracle cannot '
                                    'tell where the guest runs', mid,
                                    row.instance_uuid, row.state)
                elif row.state == _S.COMMITTING.value:
                    self._send_commit(row)
                else:
                    self.abort(mid, reason='recovery')
            except exception.VtpmMigrationException as exc:
                LOG.warning('Recovery of migration %s incomplete: %s', mid,
                            exc)
            result[mid] = self._row(mid).state
        return result
