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


"""The destination role: handlers of the sealed phase-2 and outcome
requests, the local consumer's access to a received key, and recovery.

Every handler checks that the attested peer of the session is the AK the
migration is bound to. TPM work (binding key, unwrap, seal, signature)
runs outside the engine's state lock; the lock is taken for the state
change only, and the state is checked again under it, so concurrent
migrations on one host wait for each other's journal writes, never for
each other's TPM commands.
"""

import functools
import time
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import batch
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
from nova_vtpm_migration.tpm import errors as tpm_errors
from nova_vtpm_migration.tpm import evidence

LOG = logging.getLogger(__name__)

_D = states.DestState
_ROLE = states.Role.DESTINATION


#: ``decision(migration_id) -> (state, 'commit' | 'abort' | 'pending')``
#: of this host as the source of a migration (answers ``status``).
SourceDecision = ty.Callable[[str], tuple[str, str]]


class DestinationRole:
    """Destination-side operations of a host (see
    :class:`~.engine.MigrationEngine`).

    :param ctx: the host's protocol state.
    :param source_decision: this host's decisions as a source, for
        ``status`` requests about migrations it coordinates.
    """

    def __init__(self, ctx: context_mod.HostContext,
                 source_decision: SourceDecision) -> None:
        self.ctx = ctx
        self._source_decision = source_decision
        self._blobs: dict[str, dict[str, bytes]] = {}
        #: migration id -> the secret it brought, for the local consumer
        #: until the outcome (it is not unsealed again); memory only.
        self._received: dict[str, bytes] = {}

    def dispatch(self, sess: session_mod.Session,
                 msg: messages.Message) -> bytes:
        """Handle one authenticated request; return the encoded inner
        reply.

        :raises ProtocolError: the request is refused.
        """
        handlers: dict[str, ty.Callable[
            [session_mod.Session, messages.Message], bytes]] = {
                    'prepare': self._on_prepare,
                    'transfer': self._on_transfer,
                    'commit': self._on_commit,
                    'prepare_batch': functools.partial(
                        batch.on_prepare_batch, self),
                    'transfer_batch': functools.partial(
                        batch.on_transfer_batch, self),
                    'commit_batch': functools.partial(
                        batch.on_commit_batch, self),
                    'abort': self._on_abort,
                    'status': self._on_status}
        handler = handlers.get(msg.type)
        if handler is None:
            raise errors.UnexpectedMessage(type=msg.type,
                                           reason='not a request')
        reply: bytes = handler(sess, msg)
        return reply

    def _row(self, mid: str, sess: session_mod.Session
             ) -> journal_mod.MigrationRow:
        row = self.ctx.journal.get(mid, _ROLE)
        if row is None:
            raise errors.UnknownMigration(migration_id=mid)
        if row.peer_ak_name and row.peer_ak_name != sess.peer_ak_name:
            raise errors.PeerIdentityMismatch(
                reason=f'migration {mid} belongs to another source')
        return row

    def _set(self, mid: str, new: states.DestState,
             **context: ty.Any) -> journal_mod.MigrationRow:
        return self.ctx.journal.set_state(mid, _ROLE, new.value, **context)

    # -- prepare: reserve a slot, present the binding key ------------------

    def _on_prepare(self, sess: session_mod.Session,
                    msg: messages.Message) -> bytes:
        ctx = self.ctx
        body = msg.body
        mid, instance = body['migration_id'], body['instance_uuid']
        self.check_session(sess, body['source_host'])
        self.check_free(mid, instance)
        dest_nonce = crypto.random_bytes(crypto.NONCE_SIZE)
        # Certified once per session (phase 1); one PCR_Read here
        # tells whether it still names the current key bound to the
        # current PCR values, else a new key is certified (and refused by
        # the source when the PCRs changed since the session's quote).
        key = ctx.tpm.certified_binding_key(sess.binding_qualifier(),
                                            reuse=sess.binding_key)
        sess.binding_key = key
        reply = messages.encode('prepare_reply', {
            'migration_id': mid, 'nonce': dest_nonce,
            'binding_key': messages.certified_to_wire(key)})
        with ctx.state_lock:
            self.check_free(mid, instance)
            self.reserve(sess, mid, instance, body['nonce'], dest_nonce, key,
                         transfer.migration_hash(msg.raw, reply))
        LOG.info('Migration %s: reserved a slot for instance %s', mid,
                 instance)
        return reply

    def check_session(self, sess: session_mod.Session,
                      source_host: str) -> None:
        """A new migration may start on ``sess`` from ``source_host``.

        :raises SessionError: the session's evidence is too old (the
            initiator attests again and retries).
        :raises PeerIdentityMismatch: the source names another host than
            its TPM identity is certified for.
        """
        if not self.ctx.channel.fresh_enough(sess):
            raise errors.SessionError(reason='the session\'s evidence is '
                                             'too old for a new migration')
        if source_host != sess.peer_host:
            raise errors.PeerIdentityMismatch(
                reason=f'source {source_host!r} is not the host '
                       f'its TPM identity is certified for '
                       f'({sess.peer_host!r})')

    @staticmethod
    def now() -> int:
        """Seconds since the epoch (receipt times)."""
        return int(time.time())

    def check_free(self, mid: str, instance: str) -> None:
        """Refuse a used migration id or an instance whose key is here."""
        ctx = self.ctx
        if ctx.journal.is_seen(mid):
            raise errors.MigrationIdReused(migration_id=mid)
        key_state = ctx.keystore.state(instance)
        if key_state not in (None, states.KeyState.DESTROYED):
            raise errors.InstanceBusy(
                instance_uuid=instance,
                reason=f'this host holds its key ({key_state.value})')

    def reserve(self, sess: session_mod.Session, mid: str, instance: str,
                source_nonce: bytes, dest_nonce: bytes,
                key: evidence.CertifiedKey, migration_hash: bytes,
                **extra: ty.Any) -> None:
        """Journal a RESERVED migration (under the state lock, after
        :meth:`check_free`)."""
        ctx = self.ctx
        with ctx.journal.transaction():
            ctx.journal.mark_seen(mid)
            ctx.journal.create_migration(
                mid, _ROLE, _D.RESERVED.value, instance,
                sess.peer_host, context={
                    **extra,
                    'peer_ak_name': sess.peer_ak_name.hex(),
                    'source_host': sess.peer_host,
                    'dest_host': ctx.channel.local.host,
                    'peer_pcrs': [[i, v.hex()]
                                  for i, v in sess.peer_pcr_values],
                    'version': sess.version,
                    'source_nonce': source_nonce.hex(),
                    'dest_nonce': dest_nonce.hex(),
                    'migration_hash': migration_hash.hex(),
                    'binding_key': [key.public.hex(),
                                    key.certify_attest.hex(),
                                    key.certify_signature.hex()],
                })
            # The source's evidence, for the complete record at commit.
            ctx.journal.put_record(mid, 'source_evidence', wire.encode(
                receipts.signer_evidence(sess.peer_identity,
                                         sess.peer_signing_key),
                receipts.SIGNER))

    def context_of(self, row: journal_mod.MigrationRow,
                   sess: session_mod.Session) -> transfer.MigrationContext:
        """What both sides agreed on for the migration of ``row``."""
        c = row.context
        public, attest, signature = (bytes.fromhex(x)
                                     for x in c['binding_key'])
        return transfer.MigrationContext(
            migration_id=row.migration_id,
            instance_uuid=row.instance_uuid, version=c['version'],
            source_host=c['source_host'], dest_host=c['dest_host'],
            source_ak_name=row.peer_ak_name,
            dest_ak_name=sess.local_ak_name,
            source_nonce=bytes.fromhex(c['source_nonce']),
            dest_nonce=bytes.fromhex(c['dest_nonce']),
            binding_key=evidence.CertifiedKey(
                public=public, certify_attest=attest,
                certify_signature=signature),
            migration_hash=bytes.fromhex(c['migration_hash']))

    # -- transfer: verify, unwrap in the TPM, install PENDING --------------

    def _on_transfer(self, sess: session_mod.Session,
                     msg: messages.Message) -> bytes:
        ctx = self.ctx
        body = msg.body
        mid = body['migration_id']
        row = self.reserved(mid, sess)
        mig = self.context_of(row, sess)
        try:
            transfer.check_manifest(mig, body)
            secret, blobs = transfer.open_transfer(ctx.tpm, mig, body)
            # Sealed under the binding key's PCR policy, which the
            # unwrap just proved current (no PCR_Read).
            sealed = ctx.keystore.seal(row.instance_uuid, secret,
                                       bound_like=mig.binding_key.public)
        except (errors.ProtocolError, tpm_errors.TpmError):
            # A transfer that does not verify or unwrap (e.g.
            # the PCRs changed since the binding key was certified) ends
            # the migration here; the source learns it from the error.
            with ctx.state_lock:
                self.abort_reserved(mid, sess)
            raise
        manifest_hash = self.install(sess, mid, secret, sealed,
                                     body['manifest'], blobs)
        del secret
        receipt = transfer.build_receipt(mig, 'installed', manifest_hash,
                                         int(time.time()))
        return messages.encode('transfer_reply', {
            'migration_id': mid, 'receipt': receipt})

    def abort_reserved(self, mid: str, sess: session_mod.Session) -> None:
        """End a RESERVED migration whose transfer failed (under the state
        lock; nothing was installed)."""
        if self.reserved(mid, sess, check=False) is not None:
            self._set(mid, _D.ABORTED)

    def install(self, sess: session_mod.Session, mid: str, secret: bytes,
                sealed: bytes, manifest: dict[str, ty.Any],
                blobs: dict[str, bytes]) -> bytes:
        """RESERVED -> INSTALLED with the sealed secret PENDING (under the
        state lock); the secret is kept for the local consumer.

        :returns: the manifest hash.
        :raises StateError: no longer RESERVED.
        """
        ctx = self.ctx
        manifest_hash = receipts.manifest_hash(manifest)
        with ctx.state_lock:
            row = self.reserved(mid, sess)
            with ctx.journal.transaction():
                ctx.keystore.install_pending_sealed(row.instance_uuid, mid,
                                                    sealed)
                self._set(mid, _D.INSTALLED,
                          manifest_hash=manifest_hash.hex())
                ctx.journal.put_record(mid, 'manifest', wire.encode(
                    manifest, messages.MANIFEST))
            # Handed straight to the local consumer: it is not
            # unsealed again while the migration is in flight.
            self._received[mid] = secret
            if blobs:
                self._blobs[mid] = blobs
        LOG.info('Migration %s: key of instance %s installed (PENDING)',
                 mid, row.instance_uuid)
        return manifest_hash

    def reserved(self, mid: str, sess: session_mod.Session,
                 check: bool = True) -> ty.Any:
        """The migration's row if it is RESERVED; else raise (or return
        ``None`` when not ``check``)."""
        row = self._row(mid, sess)
        if row.state != _D.RESERVED.value:
            if not check:
                return None
            raise errors.StateError(role=_ROLE.value, migration_id=mid,
                                    old=row.state, new=_D.INSTALLED.value)
        return row

    # -- commit / abort ----------------------------------------------------

    def _on_commit(self, sess: session_mod.Session,
                   msg: messages.Message) -> bytes:
        body = msg.body
        mid = body['migration_id']
        done = batch.commit_items(self, sess, [(mid, body['manifest_hash'])],
                                  body['manifest_batch'],
                                  body['manifest_signature'])
        signed = done[mid]
        return messages.encode('commit_reply', {
            'migration_id': mid, 'receipt': signed['receipt'],
            'receipt_batch': signed['batch'],
            'receipt_signature': signed['signature']})

    def committable(self, mid: str, sess: session_mod.Session,
                     manifest_hash: bytes) -> journal_mod.MigrationRow:
        row = self._row(mid, sess)
        if manifest_hash.hex() != row.context.get('manifest_hash'):
            raise errors.AuthenticationFailed(
                reason='commit names another manifest')
        if row.state not in (_D.INSTALLED.value, _D.COMMITTED.value):
            raise errors.StateError(
                role=_ROLE.value, migration_id=mid, old=row.state,
                new=_D.COMMITTED.value)
        return row

    def journalled(self, mid: str, kind: str) -> bytes:
        data = self.ctx.journal.get_record(mid, kind)
        if data is None:
            raise errors.JournalError(reason=f'{kind} of {mid} missing')
        return data

    def record(self, mid: str, manifest: dict[str, ty.Any],
                manifest_batch: list[bytes], manifest_signature: bytes,
                receipt: dict[str, ty.Any], receipt_batch: list[bytes],
                signature: bytes) -> bytes:
        """The complete audit record kept by the destination: the
        source-signed manifest, this host's committed receipt and both
        signers' evidence."""
        source = wire.decode(self.journalled(mid, 'source_evidence'),
                             receipts.SIGNER)
        local = self.ctx.channel.local
        return receipts.build_record(
            manifest, manifest_signature, receipt, signature, source,
            receipts.signer_evidence(local.identity, local.signing_key),
            manifest_batch=manifest_batch, receipt_batch=receipt_batch)

    def request_rollback(self, migration_id: str, reason: str) -> None:
        """Ask the source of an incoming migration to abort it.

        The request travels on this host's own attested session with the
        source, sealed (MAC, sequence number), and only to the source TPM
        the migration is bound to; the source decides (see
        :meth:`.source.SourceRole.on_rollback`) and, when it aborts, tells
        this host to drop what arrived (``abort``). A key that arrived is
        never dropped on this host's own say: if the source refuses or
        cannot be reached it stays PENDING until the outcome is known
        (settling asks the source), so the key is never lost. A slot that
        holds no key yet is simply released.

        :raises ProtocolError: the source refused or cannot be reached.
        """
        ctx = self.ctx
        row = ctx.journal.get(migration_id, _ROLE)
        if row is None or row.state in (_D.ABORTED.value,
                                        _D.COMMITTED.value):
            return
        if row.state == _D.RESERVED.value:
            with ctx.state_lock:
                current = ctx.journal.get(migration_id, _ROLE)
                if current is not None and \
                        current.state == _D.RESERVED.value:
                    self.abort_local(current)
            return
        ctx.channel.call(row.peer, 'rollback', {
            'migration_id': migration_id,
            'reason': ''.join(c for c in reason
                              if c.isprintable())[:256]},
            expect_ak=row.peer_ak_name)

    def commit_local(self, row: journal_mod.MigrationRow) -> None:
        """``INSTALLED -> COMMITTED``: the received key becomes ACTIVE."""
        ctx = self.ctx
        with ctx.journal.transaction():
            ctx.keystore.activate(row.instance_uuid, row.migration_id)
            self._set(row.migration_id, _D.COMMITTED)
        self._received.pop(row.migration_id, None)
        LOG.info('Migration %s committed; key of instance %s is ACTIVE on '
                 'this host', row.migration_id, row.instance_uuid)

    def _on_abort(self, sess: session_mod.Session,
                  msg: messages.Message) -> bytes:
        with self.ctx.state_lock:
            return self._abort_locked(sess, msg)

    def _abort_locked(self, sess: session_mod.Session,
                      msg: messages.Message) -> bytes:
        ctx = self.ctx
        mid = msg.body['migration_id']
        row = ctx.journal.get(mid, _ROLE)
        if row is None:
            # Tombstone, so a delayed prepare of this migration
            # id is refused later.
            with ctx.journal.transaction():
                if not ctx.journal.is_seen(mid):
                    ctx.journal.mark_seen(mid)
                ctx.journal.create_migration(
                    mid, _ROLE, _D.ABORTED.value, '', 'unknown',
                    context={'peer_ak_name': sess.peer_ak_name.hex()})
        else:
            row = self._row(mid, sess)
            if row.state == _D.COMMITTED.value:
                raise errors.StateError(role=_ROLE.value, migration_id=mid,
                                        old=row.state,
                                        new=_D.ABORTED.value)
            if row.state != _D.ABORTED.value:
                self.abort_local(row)
        return messages.encode('abort_reply', {'migration_id': mid,
                                               'state': _D.ABORTED.value})

    def abort_local(self, row: journal_mod.MigrationRow) -> None:
        """``RESERVED|INSTALLED -> ABORTED``: destroy what was received."""
        ctx = self.ctx
        with ctx.journal.transaction():
            if (ctx.keystore.migration_of(row.instance_uuid)
                    == row.migration_id and ctx.keystore.state(
                        row.instance_uuid) is states.KeyState.PENDING):
                ctx.keystore.destroy(row.instance_uuid)
            self._set(row.migration_id, _D.ABORTED)
        ctx.keystore.wipe_orphans()
        self._blobs.pop(row.migration_id, None)
        self._received.pop(row.migration_id, None)
        LOG.info('Migration %s aborted; nothing of instance %s kept on '
                 'this host', row.migration_id, row.instance_uuid)

    def _on_status(self, sess: session_mod.Session,
                   msg: messages.Message) -> bytes:
        mid = msg.body['migration_id']
        ctx = self.ctx
        src = ctx.journal.get(mid, states.Role.SOURCE)
        if src is not None:
            if src.peer_ak_name and src.peer_ak_name != sess.peer_ak_name:
                raise errors.PeerIdentityMismatch(
                    reason=f'migration {mid} has another destination')
            state, decision = self._source_decision(mid)
        else:
            dst = ctx.journal.get(mid, _ROLE)
            if dst is None:
                state, decision = 'UNKNOWN', 'abort'
            else:
                self._row(mid, sess)
                state = dst.state
                decision = {_D.COMMITTED.value: 'commit',
                            _D.ABORTED.value: 'abort'}.get(state,
                                                           'pending')
        return messages.encode('status_reply', {
            'migration_id': mid, 'state': state[:16],
            'decision': decision})

    # -- the local consumer ------------------------------------------------

    def take_pending_key(self, instance_uuid: str,
                         migration_id: str) -> bytes:
        """Return the secret received with ``migration_id`` (PENDING, or
        ACTIVE once committed) to the in-process caller.

        :raises KeyNotFound: no such key for that migration here.
        """
        row = self.ctx.journal.get(migration_id, _ROLE)
        if row is None or row.instance_uuid != instance_uuid:
            raise errors.KeyNotFound(instance_uuid=instance_uuid)
        if row.state == _D.INSTALLED.value:
            received = self._received.get(migration_id)
            if received is not None and self.ctx.keystore.migration_of(
                    instance_uuid) == migration_id:
                return received
            return self.ctx.keystore.read(
                instance_uuid, allowed=(states.KeyState.PENDING,),
                migration_id=migration_id)
        if row.state == _D.COMMITTED.value:
            return self.ctx.keystore.read(instance_uuid)
        raise errors.KeyNotFound(instance_uuid=instance_uuid)

    def take_state_blobs(self, instance_uuid: str,
                         migration_id: str) -> dict[str, bytes]:
        """The state blobs received with ``migration_id`` (kept in memory
        only; lost on restart)."""
        row = self.ctx.journal.get(migration_id, _ROLE)
        if row is None or row.instance_uuid != instance_uuid:
            raise errors.UnknownMigration(migration_id=migration_id)
        return dict(self._blobs.get(migration_id, {}))

    # -- recovery ------------------------------------------------------------

    def recover(self) -> dict[str, str]:
        """Abort RESERVED migrations; ask the source about INSTALLED ones.
        """
        return self._resolve(settle_age=None)

    def settle(self, min_age: float) -> dict[str, str]:
        """Ask the source about INSTALLED migrations unchanged for
        *min_age* seconds (while running: RESERVED ones may be in flight
        and are left alone)."""
        return self._resolve(settle_age=min_age)

    def _resolve(self, settle_age: float | None) -> dict[str, str]:
        ctx = self.ctx
        result: dict[str, str] = {}
        now = time.time()
        for row in ctx.journal.list_migrations(
                _ROLE, (_D.RESERVED.value, _D.INSTALLED.value)):
            if settle_age is not None and (
                    row.state != _D.INSTALLED.value
                    or now - row.updated_at < settle_age):
                continue
            mid = row.migration_id
            try:
                if row.state == _D.RESERVED.value:
                    with ctx.state_lock:
                        self.abort_local(row)
                else:
                    reply, _raw, _sess = ctx.channel.call(
                        row.peer, 'status', {'migration_id': mid},
                        expect_ak=row.peer_ak_name)
                    decision = reply.body['decision']
                    LOG.info('Recovery: migration %s INSTALLED, source '
                             'says %s', mid, decision)
                    with ctx.state_lock:
                        current = ctx.journal.get(mid, _ROLE)
                        if current is None or \
                                current.state != _D.INSTALLED.value:
                            pass
                        elif decision == 'commit':
                            self.commit_local(current)
                        elif decision == 'abort':
                            self.abort_local(current)
            except exception.VtpmMigrationException as exc:
                LOG.warning('Recovery of migration %s incomplete: %s', mid,
                            exc)
            row_now = ctx.journal.get(mid, _ROLE)
            result[mid] = row_now.state if row_now else 'UNKNOWN'
        return result

