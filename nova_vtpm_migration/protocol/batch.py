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


"""Batches: migrations between the same two hosts that share one phase-2
exchange and one commit (an evacuation, or concurrent live migrations).

::

    S -> D  prepare_batch        seq=1, source_host, nS2,
                                 [(migration_id, instance_uuid)...]
    D -> S  prepare_batch_reply  nD2, the session's certified binding key,
                                 [(migration_id, '' | refusal code)...]
    S -> D  transfer_batch       seq=2, WrappedKey(data key -> binding key,
                                 info = H('wrap-batch', B)),
                                 [(migration_id, AEAD(HKDF(data key, Mi),
                                   secret + blobs, AAD_i), manifest_i)...]
    D -> S  transfer_batch_reply receipts('installed'), refusals
    ... the VMs migrate ...
    S -> D  commit_batch         seq=3, [(migration_id, manifest hash)...],
                                 manifest batch + S's one TPM signature
    D -> S  commit_batch_reply   [(receipt('committed'), receipt batch,
                                   D's one TPM signature)...]

    B = H('migration-batch', prepare_batch, prepare_batch_reply)
    Mi = H('migration', B, migration_id)

One ``TPM2_ECDH_ZGen`` on the destination and one ``TPM2_Sign`` per side
serve the whole batch. Everything else stays per instance: each migration
has its own id, journal rows and states on both hosts, its own payload
key, AAD and manifest, its own sealed custody (one unseal on the source,
one seal on the destination) and its own audit record, which verifies
alone (its hash is in the signed batch). An instance refused or failing
on one side is aborted alone; the others go on. A batch commit is a set
of per-instance commits that share their signatures: recovery re-sends a
COMMITTING migration's ``commit`` on its own, with the batch it was
signed in.
"""

import time
import typing as ty

from oslo_log import log as logging

from nova_vtpm_migration import exception
from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import session as session_mod
from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.protocol import transfer
from nova_vtpm_migration.protocol import wire

LOG = logging.getLogger(__name__)

#: The handlers take the :class:`~.destination.DestinationRole` as
#: ``role`` (typed ``Any``: the role module imports this one).

MAX_BATCH = messages.MAX_BATCH


def batch_hash(prepare_raw: bytes, reply_raw: bytes) -> bytes:
    """Hash of a batch's transcript (``prepare_batch`` and its reply)."""
    return crypto.transcript_hash('migration-batch', prepare_raw, reply_raw)


def item_hash(batch: bytes, migration_id: str) -> bytes:
    """The migration hash of one migration of a batch."""
    return crypto.transcript_hash('migration', batch,
                                  migration_id.encode('ascii'))


def wrap_info(batch: bytes) -> bytes:
    """The ``info`` of the batch's one wrapped data key."""
    return crypto.transcript_hash('wrap-batch', batch)


def check_ids(ids: list[str]) -> None:
    """A batch names 1..MAX_BATCH distinct migrations (or instances).

    :raises MalformedMessage: empty or repeated.
    """
    if not ids or len(set(ids)) != len(ids):
        raise errors.MalformedMessage(
            reason='a batch names one or more distinct migrations and '
                   'instances')


def _code(exc: Exception) -> str:
    return str(getattr(exc, 'code', type(exc).__name__))[:64]


# -- destination ------------------------------------------------------------

def on_prepare_batch(role: ty.Any,
                     sess: session_mod.Session,
                     msg: messages.Message) -> bytes:
    """Reserve a slot for every migration of the batch that this host can
    take and present the session's binding key (one ``PCR_Read``)."""
    ctx = role.ctx
    body = msg.body
    items = body['items']
    check_ids([i['migration_id'] for i in items])
    check_ids([i['instance_uuid'] for i in items])
    role.check_session(sess, body['source_host'])
    codes: dict[str, str] = {}
    for item in items:
        try:
            role.check_free(item['migration_id'], item['instance_uuid'])
        except errors.ProtocolError as exc:
            codes[item['migration_id']] = _code(exc)
    key = ctx.tpm.certified_binding_key(sess.binding_qualifier(),
                                        reuse=sess.binding_key)
    sess.binding_key = key
    dest_nonce = crypto.random_bytes(crypto.NONCE_SIZE)
    reply = messages.encode('prepare_batch_reply', {
        'nonce': dest_nonce,
        'binding_key': messages.certified_to_wire(key),
        'items': [{'migration_id': i['migration_id'],
                   'code': codes.get(i['migration_id'], '')}
                  for i in items]})
    batch = batch_hash(msg.raw, reply)
    with ctx.state_lock:
        for item in items:
            mid = item['migration_id']
            if mid in codes:
                continue
            try:
                role.check_free(mid, item['instance_uuid'])
            except errors.ProtocolError as exc:
                # Taken meanwhile: its transfer will be refused.
                LOG.warning('Migration %s of the batch not reserved: %s',
                            mid, exc)
                continue
            role.reserve(sess, mid, item['instance_uuid'], body['nonce'],
                         dest_nonce, key, item_hash(batch, mid),
                         batch_hash=batch.hex())
    LOG.info('Reserved %d of the %d migrations of a batch from %s',
             len(items) - len(codes), len(items), sess.peer_host)
    return reply


def on_transfer_batch(role: ty.Any,
                      sess: session_mod.Session,
                      msg: messages.Message) -> bytes:
    """Unwrap the batch's data key once (``TPM2_ECDH_ZGen``), then per
    migration: check the manifest, decrypt, seal (``TPM2_Create``) and
    install PENDING; a migration that fails is aborted alone."""
    ctx = role.ctx
    body = msg.body
    items = body['items']
    check_ids([i['migration_id'] for i in items])
    refused: list[dict[str, str]] = []
    rows = {}
    for item in items:
        try:
            rows[item['migration_id']] = role.reserved(item['migration_id'],
                                                       sess)
        except errors.ProtocolError as exc:
            refused.append({'migration_id': item['migration_id'],
                            'code': _code(exc)})
    batches = {row.context.get('batch_hash') for row in rows.values()}
    try:
        if len(batches) > 1 or None in batches:
            raise errors.AuthenticationFailed(
                reason='the migrations were not prepared as one batch')
        data_key = transfer.unwrap_data_key(
            ctx.tpm, body['wrapped_key'],
            wrap_info(bytes.fromhex(batches.pop()))) if rows else b''
    except (errors.ProtocolError, exception.VtpmMigrationException):
        with ctx.state_lock:
            for mid in rows:
                role.abort_reserved(mid, sess)
        raise
    receipts_ = []
    for item in items:
        mid = item['migration_id']
        if mid not in rows:
            continue
        mig = role.context_of(rows[mid], sess)
        try:
            transfer.check_manifest(mig, dict(
                item, wrapped_key=body['wrapped_key']))
            secret, blobs = transfer.open_item(mig, data_key, item)
            sealed = ctx.keystore.seal(mig.instance_uuid, secret,
                                       bound_like=mig.binding_key.public)
            manifest_hash = role.install(sess, mid, secret, sealed,
                                         item['manifest'], blobs)
        except exception.VtpmMigrationException as exc:
            LOG.warning('Migration %s of the batch refused: %s', mid, exc)
            with ctx.state_lock:
                role.abort_reserved(mid, sess)
            refused.append({'migration_id': mid, 'code': _code(exc)})
            continue
        receipts_.append(transfer.build_receipt(
            mig, 'installed', manifest_hash, role.now()))
    return messages.encode('transfer_batch_reply', {
        'receipts': receipts_, 'refused': refused})


def commit_items(role: ty.Any,
                 sess: session_mod.Session, items: list[tuple[str, bytes]],
                 manifest_batch: list[bytes], manifest_signature: bytes
                 ) -> dict[str, dict[str, ty.Any]]:
    """Commit migrations the source committed together: verify its
    one signature over their manifests' batch, sign one batch of
    ``committed`` receipts (one ``TPM2_Sign``, outside the state
    lock), then per migration, under the lock: journal the receipt and
    the audit record and make the key ACTIVE. A repeated commit gets
    the receipts kept the first time.

    :param items: (migration id, manifest hash) pairs.
    :returns: migration id -> :data:`~.receipts.SIGNED_RECEIPT_IN_BATCH`
        body.
    :raises ProtocolError: an item names another manifest, is in
        another state, or the source did not sign the batch.
    """
    ctx = role.ctx
    pending = []
    for mid, manifest_hash in items:
        row = role.committable(mid, sess, manifest_hash)
        if ctx.journal.get_record(mid, 'receipt_committed') is None:
            pending.append(row)
    fresh: dict[str, tuple[dict[str, ty.Any], dict[str, ty.Any]]] = {}
    if pending:
        for row in pending:
            manifest = wire.decode(
                role.journalled(row.migration_id, 'manifest'),
                messages.MANIFEST)
            source = messages.certified_from_wire(wire.decode(
                role.journalled(row.migration_id, 'source_evidence'),
                receipts.SIGNER)['signing_key'])
            # Non-repudiation: a key is activated only against the
            # source's TPM signature of its manifest.
            transfer.check_manifest_signature(
                manifest, manifest_signature, source, manifest_batch)
            fresh[row.migration_id] = (manifest, transfer.build_receipt(
                role.context_of(row, sess), 'committed',
                bytes.fromhex(row.context['manifest_hash']),
                int(time.time())))
        receipt_batch, signature = receipts.sign_receipts(
            ctx.tpm, [r for _, r in fresh.values()])
    done: dict[str, dict[str, ty.Any]] = {}
    for mid, manifest_hash in items:
        with ctx.state_lock:
            row = role.committable(mid, sess, manifest_hash)
            stored = ctx.journal.get_record(mid, 'receipt_committed')
            if stored is None:
                manifest, receipt = fresh[mid]
                stored = wire.encode(
                    {'receipt': receipt, 'batch': receipt_batch,
                     'signature': signature},
                    receipts.SIGNED_RECEIPT_IN_BATCH)
                with ctx.journal.transaction():
                    ctx.journal.put_record(mid, 'receipt_committed',
                                           stored)
                    ctx.journal.put_record(mid, 'record', role.record(
                        mid, manifest, manifest_batch,
                        manifest_signature, receipt, receipt_batch,
                        signature))
                    if row.state == states.DestState.INSTALLED.value:
                        role.commit_local(row)
            elif row.state == states.DestState.INSTALLED.value:
                role.commit_local(row)
        done[mid] = wire.decode(stored, receipts.SIGNED_RECEIPT_IN_BATCH)
    return done


def on_commit_batch(role: ty.Any,
                    sess: session_mod.Session,
                    msg: messages.Message) -> bytes:
    """Commit the migrations of a batch (see
    :meth:`~.destination.DestinationRole.commit_items`)."""
    body = msg.body
    items = [(i['migration_id'], i['manifest_hash']) for i in body['items']]
    check_ids([mid for mid, _ in items])
    done = commit_items(role, sess, items, body['manifest_batch'],
                        body['manifest_signature'])
    return messages.encode('commit_batch_reply', {
        'items': [done[mid] for mid, _ in items]})
