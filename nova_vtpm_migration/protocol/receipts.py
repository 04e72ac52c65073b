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


"""Signed manifests and receipts, and their offline verification.

One TPM signature covers a *batch*: the source signs the list of the
hashes of the manifests it commits together, the destination the list of
the hashes of its receipts (a single migration is a batch of one). A
record carries its batch list, so it verifies alone: its manifest's
(receipt's) hash must be in the signed list.

The source signs a *manifest* of each transfer with its TPM signing key
(source non-repudiation); the destination signs *receipts* (``installed``
after phase 2, ``committed`` after the commit) that name the manifest's
hash and both hosts' nonces. A *record* bundles a manifest, a receipt and
both signers' public evidence (EK certificate, EK and AK public areas, the
AK certificate naming the host, the AK-certified signing key);
:func:`verify_record` checks it with nothing but the trust policy, e.g.
years later in an audit: the AK certificate proves offline that the AK
belongs to that EK and that host (a software AK next to genuine EK
certificates does not verify), and the certificates are judged at the
time the record was made, so a record outlives their expiry.
"""

import collections.abc
import datetime
import typing as ty

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import names
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import errors as tpm_errors
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import verify

SIGNER: wire.Schema = {
    'identity': wire.Obj(messages.IDENTITY),
    'signing_key': wire.Obj(messages.CERTIFIED_KEY),
}
MAX_BATCH = messages.MAX_BATCH
#: A list of manifest or receipt hashes, signed once for a batch.
BATCH: wire.Schema = {
    'kind': wire.Str(choices=('manifests', 'receipts')),
    'hashes': wire.List(messages.HASH, max=MAX_BATCH),
}
SIGNED_MANIFEST: wire.Schema = {
    'manifest': wire.Obj(messages.MANIFEST),
    'signature': wire.Bytes(1, 512),
}
SIGNED_RECEIPT: wire.Schema = {
    'receipt': wire.Obj(messages.RECEIPT),
    'signature': wire.Bytes(1, 512),
}
#: A receipt with the batch its signature covers (kept by the
#: destination for a repeated ``commit``).
SIGNED_RECEIPT_IN_BATCH: wire.Schema = {
    'receipt': wire.Obj(messages.RECEIPT),
    'batch': wire.List(messages.HASH, max=MAX_BATCH),
    'signature': wire.Bytes(1, 512),
}
#: An audit record: manifest + receipt + both signers' evidence.
RECORD: wire.Schema = {
    'manifest': wire.Obj(messages.MANIFEST),
    'manifest_batch': wire.List(messages.HASH, max=MAX_BATCH),
    'manifest_signature': wire.Bytes(1, 512),
    'receipt': wire.Obj(messages.RECEIPT),
    'receipt_batch': wire.List(messages.HASH, max=MAX_BATCH),
    'receipt_signature': wire.Bytes(1, 512),
    'source': wire.Obj(SIGNER),
    'dest': wire.Obj(SIGNER),
}

Body = collections.abc.Mapping[str, ty.Any]


def manifest_hash(manifest: Body) -> bytes:
    """SHA-256 of the canonical manifest encoding."""
    return crypto.sha256(wire.encode(manifest, messages.MANIFEST))


def receipt_hash(receipt: Body) -> bytes:
    """SHA-256 of the canonical receipt encoding."""
    return crypto.sha256(wire.encode(receipt, messages.RECEIPT))


def batch_statement(kind: str, hashes: collections.abc.Sequence[bytes]
                    ) -> bytes:
    """What one signature of a batch covers: the canonical encoding of
    ``kind`` (``manifests``/``receipts``) and the hashes."""
    return wire.encode({'kind': kind, 'hashes': list(hashes)}, BATCH)


def sign_manifests(tpm: ty.Any, manifests: collections.abc.Sequence[Body]
                   ) -> tuple[list[bytes], bytes]:
    """Sign a batch of manifests with one ``TPM2_Sign``.

    :returns: the batch (manifest hashes) and the signature.
    """
    hashes = [manifest_hash(m) for m in manifests]
    sig: bytes = tpm.sign(batch_statement('manifests', hashes))
    return hashes, sig


def sign_receipts(tpm: ty.Any, receipts: collections.abc.Sequence[Body]
                  ) -> tuple[list[bytes], bytes]:
    """Sign a batch of receipts with one ``TPM2_Sign``.

    :returns: the batch (receipt hashes) and the signature.
    """
    hashes = [receipt_hash(r) for r in receipts]
    sig: bytes = tpm.sign(batch_statement('receipts', hashes))
    return hashes, sig


def sign_manifest(tpm: ty.Any, manifest: Body) -> bytes:
    """Sign one manifest (a batch of one) with the host TPM."""
    return sign_manifests(tpm, [manifest])[1]


def sign_receipt(tpm: ty.Any, receipt: Body) -> bytes:
    """Sign one receipt (a batch of one) with the host TPM."""
    return sign_receipts(tpm, [receipt])[1]


def _statement(kind: str, own: bytes,
               batch: collections.abc.Sequence[bytes] | None,
               what: str) -> bytes:
    batch = [own] if batch is None else list(batch)
    if own not in batch:
        raise errors.ReceiptInvalid(
            reason=f'the signed batch does not name this {what}')
    return batch_statement(kind, batch)


def signer_evidence(identity: evidence.HostIdentity,
                    signing_key: evidence.CertifiedKey) -> dict[str, ty.Any]:
    """The wire form of a signer's public evidence."""
    return {'identity': messages.identity_to_wire(identity),
            'signing_key': messages.certified_to_wire(signing_key)}


def _verify_signed(data: bytes, signature: bytes, signer: Body,
                   expected_ak_name: bytes, expected_host: str,
                   policy: ty.Any, what: str,
                   at: datetime.datetime | None) -> None:
    identity = messages.identity_from_wire(signer['identity'])
    key = messages.certified_from_wire(signer['signing_key'])
    try:
        ak_name, _host = handshake.verify_peer_keys(
            identity, key, policy, host=expected_host, now=at)
        if ak_name != expected_ak_name:
            raise errors.ReceiptInvalid(
                reason=f'{what} names another AK than its signer')
        with names.checked(what):
            verify.verify_signature(key.public, data, signature)
    except (tpm_errors.VerificationError, errors.MalformedMessage) as exc:
        raise errors.ReceiptInvalid(
            reason=f'{what}: {type(exc).__name__}: {exc}') from None


def verify_manifest(manifest: Body, signature: bytes, source: Body,
                    policy: ty.Any,
                    at: datetime.datetime | None = None,
                    batch: collections.abc.Sequence[bytes] | None = None
                    ) -> None:
    """Verify a manifest's signature from the source's evidence alone:
    signed by the TPM of the host the manifest names as source.

    :param source: the source's :data:`SIGNER` evidence.
    :param at: judge certificates at this time (default: now).
    :param batch: the signed batch the manifest belongs to (default: a
        batch of one).
    :raises ReceiptInvalid: anything does not verify.
    """
    _verify_signed(_statement('manifests', manifest_hash(manifest), batch,
                              'manifest'), signature,
                   source, manifest['source_ak_name'],
                   manifest['source_host'], policy, 'manifest', at)


def verify_receipt(receipt: Body, signature: bytes, dest: Body,
                   policy: ty.Any,
                   at: datetime.datetime | None = None,
                   batch: collections.abc.Sequence[bytes] | None = None
                   ) -> None:
    """Verify a receipt's signature from the destination's evidence alone:
    signed by the TPM of the host the receipt names as destination.

    :param at: judge certificates at this time (default: now).
    :param batch: the signed batch the receipt belongs to (default: a
        batch of one).
    :raises ReceiptInvalid: anything does not verify.
    """
    _verify_signed(_statement('receipts', receipt_hash(receipt), batch,
                              'receipt'), signature,
                   dest, receipt['dest_ak_name'], receipt['dest_host'],
                   policy, 'receipt', at)


def check_receipt_matches(receipt: Body, manifest: Body,
                          status: str) -> None:
    """Check that a receipt acknowledges exactly this manifest.

    :raises ReceiptInvalid: any bound field differs.
    """
    if receipt['status'] != status:
        raise errors.ReceiptInvalid(
            reason=f"receipt status {receipt['status']}, expected {status}")
    for name in ('migration_id', 'instance_uuid', 'source_host',
                 'dest_host', 'source_ak_name', 'dest_ak_name',
                 'source_nonce', 'dest_nonce'):
        if receipt[name] != manifest[name]:
            raise errors.ReceiptInvalid(
                reason=f'receipt and manifest differ in {name}')
    if receipt['manifest_hash'] != manifest_hash(manifest):
        raise errors.ReceiptInvalid(
            reason='receipt does not acknowledge this manifest')


def build_record(manifest: Body, manifest_signature: bytes, receipt: Body,
                 receipt_signature: bytes, source: Body, dest: Body, *,
                 manifest_batch: collections.abc.Sequence[bytes] | None
                 = None,
                 receipt_batch: collections.abc.Sequence[bytes] | None
                 = None) -> bytes:
    """Encode an audit record canonically (the batches default to a
    batch of one)."""
    return wire.encode({
        'manifest': manifest,
        'manifest_batch': list(manifest_batch or [manifest_hash(manifest)]),
        'manifest_signature': manifest_signature,
        'receipt': receipt,
        'receipt_batch': list(receipt_batch or [receipt_hash(receipt)]),
        'receipt_signature': receipt_signature,
        'source': source, 'dest': dest}, RECORD)


def record_time(record: Body) -> datetime.datetime:
    """When a (decoded) record was made: its receipt's time."""
    try:
        return datetime.datetime.fromtimestamp(record['receipt']['created_at'],
                                               datetime.UTC)
    except (OverflowError, OSError, ValueError):
        raise errors.ReceiptInvalid(
            reason='the receipt time is out of range') from None


def verify_record(data: bytes, policy: ty.Any, status: str = 'committed',
                  at: datetime.datetime | None = None) -> dict[str, ty.Any]:
    """Verify an audit record offline, from the record and the trust
    anchors of ``policy`` alone.

    Checks both signers' EK chains, AK certificates (the AK of that EK,
    certified for the host the manifest names) and AK-certified signing
    keys, both signatures, that each AK name in the manifest is its
    signer's, and that the receipt acknowledges exactly this manifest
    (hash, ids, hosts, nonces) with ``status``.

    :param at: judge the certificates at this time (default: when the
        record was made, so that records outlive certificate expiry).
    :returns: the decoded record.
    :raises ReceiptInvalid: anything does not verify.
    :raises MalformedMessage: the record is not a valid encoding.
    """
    record = wire.decode(data, RECORD)
    manifest, receipt = record['manifest'], record['receipt']
    messages.check_uuid(manifest['migration_id'], 'migration_id')
    when = at or record_time(record)
    if names.object_name(record['source']['identity']['ak_public'],
                         'source.identity.ak_public') \
            != manifest['source_ak_name']:
        raise errors.ReceiptInvalid(reason='manifest signer is not its '
                                           'source')
    check_receipt_matches(receipt, manifest, status)
    verify_manifest(manifest, record['manifest_signature'],
                    record['source'], policy, when, record['manifest_batch'])
    verify_receipt(receipt, record['receipt_signature'], record['dest'],
                   policy, when, record['receipt_batch'])
    return record
