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


"""Phase 2: the vTPM secret transfer (message building and checking).

::

    S -> D  prepare        seq=1, migration_id, instance_uuid, nS2
    D -> S  prepare_reply  nD2, binding key certified by D's AK with
                           qualifying data H('binding-key', T3)
    S -> D  transfer       seq=2, WrappedKey(data key -> binding key,
                           info = H('wrap', M)),
                           AES-256-GCM(HKDF(data key, M), secret + blobs,
                           AAD = v, migration id, instance, AK names, seq),
                           manifest
    D -> S  transfer_reply receipt('installed')

    M = H('migration', prepare, prepare_reply)
    T3 = the phase-1 transcript of the session (see :mod:`.handshake`)

The binding key must be certified by the AK attested in phase 1 and its
PCR policy must be the one of the PCR values that AK quoted (no
bait-and-switch between the phases); only ``TPM2_ECDH_ZGen`` under that
PCR policy in D's TPM recovers the data key. D certifies its binding key
once per session (in phase 1) and presents that certification for every
migration on the session; it reads its PCRs at each ``prepare`` and
presents a new key, certified afresh, when they changed (the source then
refuses: the new key's policy is not over the quoted PCRs) -- so a PCR
change after attestation stops the migration before the key leaves.

Phase 2 sends no signature: ``transfer`` and its reply are authenticated
by the attested session (MAC, sequence number, request hash), and the
manifest and receipt are bound to each other by hashes. The TPM
signatures that make a migration non-repudiable are made at commit (see
:mod:`.receipts`): S signs the manifest and sends the signature with
``commit``; D verifies it before it activates the key and signs the
``committed`` receipt.
"""

import dataclasses
import typing as ty

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import names
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import evidence
from nova_vtpm_migration.tpm import verify

TRANSFER_SEQ = 2


@dataclasses.dataclass(frozen=True)
class MigrationContext:
    """What both sides agreed on for one migration after ``prepare``."""

    migration_id: str
    instance_uuid: str
    version: int
    source_host: str
    dest_host: str
    source_ak_name: bytes
    dest_ak_name: bytes
    source_nonce: bytes
    dest_nonce: bytes
    binding_key: evidence.CertifiedKey = dataclasses.field(repr=False)
    migration_hash: bytes

    def to_json(self) -> dict[str, ty.Any]:
        """Public, JSON-serialisable form (for the journal context)."""
        return {'source_host': self.source_host,
                'dest_host': self.dest_host,
                'source_ak_name': self.source_ak_name.hex(),
                'dest_ak_name': self.dest_ak_name.hex(),
                'source_nonce': self.source_nonce.hex(),
                'dest_nonce': self.dest_nonce.hex(),
                'migration_hash': self.migration_hash.hex()}


def migration_hash(prepare_raw: bytes, prepare_reply_raw: bytes) -> bytes:
    """Hash of the migration's transcript (prepare and its reply)."""
    return crypto.transcript_hash('migration', prepare_raw,
                                  prepare_reply_raw)


def _wrap_info(ctx: MigrationContext) -> bytes:
    return crypto.transcript_hash('wrap', ctx.migration_hash)


def _aad(ctx: MigrationContext) -> bytes:
    return wire.encode({'version': ctx.version,
                        'migration_id': ctx.migration_id,
                        'instance_uuid': ctx.instance_uuid,
                        'source_ak_name': ctx.source_ak_name,
                        'dest_ak_name': ctx.dest_ak_name,
                        'seq': TRANSFER_SEQ}, messages.AAD)


def verify_binding_key(key: evidence.CertifiedKey,
                       peer_identity: evidence.HostIdentity,
                       peer_pcr_values: tuple[tuple[int, bytes], ...],
                       qualifier: bytes, policy: ty.Any,
                       peer_clock: evidence.ClockInfo | None = None) -> None:
    """Check the destination's binding key against phase-1 evidence.

    :param qualifier: the session's binding key qualifier
        (:meth:`~.session.Session.binding_qualifier`).
    :param peer_clock: the TPM clock of the destination's phase-1 quote;
        the certification (a fresh TPM statement) must come from the same
        boot and within the policy's ``max_evidence_age`` of it, which
        bounds the age of the evidence the key is released on.
    :raises VerificationError: not certified by the attested AK for this
        migration, not fixedTPM/PCR-bound, bound to other PCR values, or
        the phase-1 evidence is too old.
    """
    with names.checked('binding key'):
        verify.verify_binding_key(key, peer_identity.ak_public,
                                  qualifier, policy, peer_pcr_values,
                                  evidence_clock=peer_clock)


def build_transfer(ctx: MigrationContext, secret: bytes,
                   blobs: dict[str, bytes], created_at: int
                   ) -> tuple[dict[str, ty.Any], dict[str, ty.Any]]:
    """Encrypt the secret (and state blobs) and build the manifest (signed
    at commit, see :func:`~.receipts.sign_manifest`).

    :returns: the ``transfer`` body and the manifest.
    """
    data_key = crypto.random_bytes(crypto.KEY_SIZE)
    wrapped_wire = wrap_data_key(ctx.binding_key, data_key, _wrap_info(ctx))
    item = seal_item(ctx, data_key, wrapped_wire, secret, blobs,
                     created_at)
    body = dict(item, seq=TRANSFER_SEQ, wrapped_key=wrapped_wire)
    return body, item['manifest']


def wrap_data_key(binding_key: evidence.CertifiedKey, data_key: bytes,
                  info: bytes) -> dict[str, ty.Any]:
    """The data key wrapped to the binding key (one ECDH in software),
    in wire form."""
    with names.checked('binding key'):
        wrapped = verify.wrap(binding_key.public, data_key, info)
    return messages.wrapped_to_wire(wrapped)


def seal_item(ctx: MigrationContext, data_key: bytes,
              wrapped_wire: dict[str, ty.Any], secret: bytes,
              blobs: dict[str, bytes], created_at: int
              ) -> dict[str, ty.Any]:
    """One migration's encrypted payload and manifest under a data key
    (shared by the migrations of a batch; each has its own payload key,
    AAD and manifest).

    :returns: ``migration_id``, ``payload_nonce``, ``ciphertext`` and
        ``manifest``.
    """
    payload = wire.encode({'secret': secret,
                           'blobs': [{'name': n, 'data': d}
                                     for n, d in sorted(blobs.items())]},
                          messages.PAYLOAD)
    nonce = crypto.random_bytes(crypto.GCM_NONCE_SIZE)
    ciphertext = crypto.aead_encrypt(
        crypto.payload_key(data_key, ctx.migration_hash), nonce, payload,
        _aad(ctx))
    manifest = {
        'version': ctx.version,
        'migration_id': ctx.migration_id,
        'instance_uuid': ctx.instance_uuid,
        'source_host': ctx.source_host,
        'dest_host': ctx.dest_host,
        'source_ak_name': ctx.source_ak_name,
        'dest_ak_name': ctx.dest_ak_name,
        'source_nonce': ctx.source_nonce,
        'dest_nonce': ctx.dest_nonce,
        'binding_key_name': names.object_name(ctx.binding_key.public),
        'wrapped_key_hash': crypto.sha256(
            wire.encode(wrapped_wire, messages.WRAPPED_KEY)),
        'ciphertext_hash': crypto.sha256(nonce + ciphertext),
        'blob_names': sorted(blobs),
        'created_at': created_at,
    }
    return {'migration_id': ctx.migration_id, 'payload_nonce': nonce,
            'ciphertext': ciphertext, 'manifest': manifest}


def check_manifest(ctx: MigrationContext, body: dict[str, ty.Any]) -> None:
    """Check the manifest against the agreed context (the session
    authenticated its sender; its signature comes with ``commit``).

    :raises AuthenticationFailed: a bound field or hash differs.
    """
    manifest = body['manifest']
    expected = {
        'version': ctx.version, 'migration_id': ctx.migration_id,
        'instance_uuid': ctx.instance_uuid,
        'source_host': ctx.source_host, 'dest_host': ctx.dest_host,
        'source_ak_name': ctx.source_ak_name,
        'dest_ak_name': ctx.dest_ak_name,
        'source_nonce': ctx.source_nonce, 'dest_nonce': ctx.dest_nonce,
        'binding_key_name': names.object_name(ctx.binding_key.public),
        'wrapped_key_hash': crypto.sha256(
            wire.encode(body['wrapped_key'], messages.WRAPPED_KEY)),
        'ciphertext_hash': crypto.sha256(body['payload_nonce']
                                         + body['ciphertext']),
    }
    for name, value in expected.items():
        if manifest[name] != value:
            raise errors.AuthenticationFailed(
                reason=f'manifest field {name} does not match the '
                       f'migration')


def check_manifest_signature(manifest: dict[str, ty.Any],
                             signature: bytes,
                             source_signing_key: evidence.CertifiedKey,
                             batch: list[bytes]) -> None:
    """Check the source's signature of a batch of manifests that names
    this one (sent with ``commit``).

    :raises AuthenticationFailed: the batch does not name the manifest.
    :raises SignatureInvalid: the source did not sign this batch.
    """
    if receipts.manifest_hash(manifest) not in batch:
        raise errors.AuthenticationFailed(
            reason='the signed batch does not name this manifest')
    with names.checked('manifest signature'):
        verify.verify_signature(source_signing_key.public,
                                receipts.batch_statement('manifests', batch),
                                signature)


def open_transfer(tpm: ty.Any, ctx: MigrationContext,
                  body: dict[str, ty.Any]
                  ) -> tuple[bytes, dict[str, bytes]]:
    """Unwrap the data key in the TPM and decrypt the payload.

    Call :func:`check_manifest` first.

    :returns: the secret and the state blobs.
    :raises TpmPolicyCheckFailed: the PCRs changed since the binding key
        was certified (unwrap refused by the TPM).
    :raises DecryptionFailed: wrong key, AAD or altered ciphertext.
    """
    return open_item(ctx, unwrap_data_key(tpm, body['wrapped_key'],
                                          _wrap_info(ctx)), body)


def unwrap_data_key(tpm: ty.Any, wrapped_wire: dict[str, ty.Any],
                    info: bytes) -> bytes:
    """Unwrap a data key with the host TPM (``TPM2_ECDH_ZGen``)."""
    with names.checked('wrapped key'):
        data_key: bytes = tpm.unwrap(messages.wrapped_from_wire(wrapped_wire),
                                     info)
    return data_key


def open_item(ctx: MigrationContext, data_key: bytes,
              item: dict[str, ty.Any]) -> tuple[bytes, dict[str, bytes]]:
    """Decrypt one migration's payload (see :func:`seal_item`).

    :returns: the secret and the state blobs.
    :raises DecryptionFailed: wrong key, AAD or altered ciphertext.
    :raises AuthenticationFailed: the blobs differ from the manifest.
    """
    plaintext = crypto.aead_decrypt(
        crypto.payload_key(data_key, ctx.migration_hash),
        item['payload_nonce'], item['ciphertext'], _aad(ctx))
    payload = wire.decode(plaintext, messages.PAYLOAD)
    blobs = {b['name']: b['data'] for b in payload['blobs']}
    if sorted(blobs) != item['manifest']['blob_names'] or \
            len(blobs) != len(payload['blobs']):
        raise errors.AuthenticationFailed(
            reason='state blobs differ from the manifest')
    return payload['secret'], blobs


def build_receipt(ctx: MigrationContext, status: str,
                  manifest_hash: bytes, created_at: int
                  ) -> dict[str, ty.Any]:
    """The receipt body the destination signs."""
    return {
        'version': ctx.version, 'status': status,
        'migration_id': ctx.migration_id,
        'instance_uuid': ctx.instance_uuid,
        'source_host': ctx.source_host, 'dest_host': ctx.dest_host,
        'source_ak_name': ctx.source_ak_name,
        'dest_ak_name': ctx.dest_ak_name,
        'source_nonce': ctx.source_nonce, 'dest_nonce': ctx.dest_nonce,
        'manifest_hash': manifest_hash, 'created_at': created_at,
    }
