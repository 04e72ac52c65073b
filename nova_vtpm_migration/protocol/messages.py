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


"""Message types, their schemas and the message envelope.

A message is the canonical encoding of ``{"v": <version>, "type": <type>,
"body": {...}}``. In phase 1 only nonces, ephemeral public keys, the
session id and a cookie travel in the clear; each side's TPM evidence
(identity, AK certificate, quotes with their PCR values) travels encrypted
under a handshake key from the ECDH exchange (:data:`RESPONDER_EVIDENCE`,
:data:`INITIATOR_EVIDENCE`, see :mod:`.handshake`). Every later message is
the ``payload`` of a ``sealed`` envelope MACed under the session key of
its direction (see :mod:`.session`).
"""

import collections.abc
import dataclasses
import typing as ty
import uuid

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import evidence

#: The protocol version this code speaks (2: host-bound identities, phase-1
#: evidence encrypted, no online credential round trip; 3: the binding key
#: certified per session, no signature before the commit, signatures over
#: batches, batch messages). A version 2 peer is refused in phase 1.
VERSION = 3
SUPPORTED_VERSIONS = (3,)
#: The only cipher suite: ECDH P-256 + HKDF-SHA256 + HMAC-SHA256 +
#: AES-256-GCM, TPM ECDSA P-256/SHA-256 quotes and signatures.
SUITE = 'p256-hkdf-sha256-aes256gcm-ecdsa'
SUPPORTED_SUITES = (SUITE,)

_B = wire.Bytes
_S = wire.Str
_I = wire.Int
_O = wire.Obj
_L = wire.List

NONCE = _B(exact=32)
MAC = _B(exact=32)
SESSION_ID = _B(exact=16)
POINT = _B(exact=65)
NAME = _B(min=34, max=66)
UUID = _S(min=36, max=36)
HASH = _B(exact=32)
STATE = _S(max=16)
SEQ = _I(min=1, max=2 ** 48)

IDENTITY: wire.Schema = {
    'ek_certificate': _B(1, 4096),
    'ek_public': _B(1, 1024),
    'ak_public': _B(1, 1024),
    'ak_certificate': _B(1, 4096),
}
CERTIFIED_KEY: wire.Schema = {
    'public': _B(1, 1024),
    'certify_attest': _B(1, 1024),
    'certify_signature': _B(1, 512),
}
QUOTE: wire.Schema = {
    'attest': _B(1, 2048),
    'signature': _B(1, 512),
    'pcr_values': _L(_O({'index': _I(0, 23), 'value': _B(exact=32)}),
                     max=24),
}
CREDENTIAL: wire.Schema = {
    'credential_blob': _B(1, 1024),
    'encrypted_secret': _B(1, 1024),
}
WRAPPED_KEY: wire.Schema = {
    'ephemeral_point': POINT,
    'nonce': _B(exact=12),
    'ciphertext': _B(1, 1024),
}

HOST = _S(min=1, max=255)
#: The responder's phase-1 evidence (encrypted in ``hello_reply``): its
#: identity and signing key, and the quote of its current epoch, whose
#: qualifying data binds the epoch's ECDH key.
RESPONDER_EVIDENCE: wire.Schema = {
    'identity': _O(IDENTITY),
    'signing_key': _O(CERTIFIED_KEY),
    'epoch_nonce': NONCE,
    'quote': _O(QUOTE),
}
#: The initiator's phase-1 evidence (encrypted in ``attest``); its quote
#: covers the transcript so far.
INITIATOR_EVIDENCE: wire.Schema = {
    'identity': _O(IDENTITY),
    'signing_key': _O(CERTIFIED_KEY),
    'quote': _O(QUOTE),
}
#: What the responder keeps of a handshake, encrypted under its own key
#: and echoed by the initiator in ``attest`` (the responder holds no
#: per-handshake state).
COOKIE: wire.Schema = {
    'session_id': SESSION_ID,
    'epoch_id': _B(exact=16),
    'created': _I(min=0),
    'ephemeral': POINT,
    'hello_hash': HASH,
    'core_hash': HASH,
    'evidence_hash': HASH,
    'version': _I(1, 255),
}

#: The manifest the source signs with its TPM signing key.
MANIFEST: wire.Schema = {
    'version': _I(1, 255),
    'migration_id': UUID,
    'instance_uuid': UUID,
    'source_host': HOST,
    'dest_host': HOST,
    'source_ak_name': NAME,
    'dest_ak_name': NAME,
    'source_nonce': NONCE,
    'dest_nonce': NONCE,
    'binding_key_name': NAME,
    'wrapped_key_hash': HASH,
    'ciphertext_hash': HASH,
    'blob_names': _L(_S(max=64), max=8),
    'created_at': _I(),
}
RECEIPT_STATUSES = ('installed', 'committed')
#: The receipt the destination signs with its TPM signing key.
RECEIPT: wire.Schema = {
    'version': _I(1, 255),
    'status': _S(choices=RECEIPT_STATUSES),
    'migration_id': UUID,
    'instance_uuid': UUID,
    'source_host': HOST,
    'dest_host': HOST,
    'source_ak_name': NAME,
    'dest_ak_name': NAME,
    'source_nonce': NONCE,
    'dest_nonce': NONCE,
    'manifest_hash': HASH,
    'created_at': _I(),
}
#: At most this many migrations share one phase-2 exchange and one
#: signature per side (see :mod:`.batch`).
MAX_BATCH = 32
#: The payload of one migration of a batch, at most (secret and small
#: state blobs; a bigger payload goes in a migration of its own).
MAX_BATCH_CIPHERTEXT = 64 * 1024
#: Plaintext of the transfer AEAD.
MAX_BLOB_SIZE = 1024 * 1024
PAYLOAD: wire.Schema = {
    'secret': _B(1, 128),
    'blobs': _L(_O({'name': _S(max=64), 'data': _B(0, MAX_BLOB_SIZE)}),
                max=8),
}
#: Associated data of the transfer AEAD.
AAD: wire.Schema = {
    'version': _I(1, 255),
    'migration_id': UUID,
    'instance_uuid': UUID,
    'source_ak_name': NAME,
    'dest_ak_name': NAME,
    'seq': _I(1, 16),
}

DECISIONS = ('commit', 'abort', 'pending', 'unknown')

#: Body schema of every message type.
SCHEMAS: dict[str, wire.Schema] = {
    # Phase 1: evidence encrypted under the handshake keys.
    'hello': {
        'versions': _L(_I(1, 255), max=8),
        'suites': _L(_S(max=64), max=8),
        'nonce': NONCE,
        'ephemeral': POINT,
    },
    'hello_reply': {
        'versions': _L(_I(1, 255), max=8),
        'suites': _L(_S(max=64), max=8),
        'version': _I(1, 255),
        'suite': _S(max=64),
        'session_id': SESSION_ID,
        'nonce': NONCE,
        'ephemeral': POINT,
        'evidence': _B(1, 16384),
        'cookie': _B(1, 1024),
    },
    'attest': {
        'session_id': SESSION_ID,
        'evidence': _B(1, 16384),
        'cookie': _B(1, 1024),
    },
    'attest_reply': {
        'session_id': SESSION_ID,
        'confirm': MAC,
    },
    # The authenticated envelope of every later message.
    'sealed': {
        'session_id': SESSION_ID,
        'seq': SEQ,
        'request_hash': _B(0, 32),
        'payload': _B(1, 3 * 1024 * 1024),
        'mac': MAC,
    },
    # Phase 2 and outcome (always inside 'sealed').
    'prepare': {
        'seq': _I(1, 1),
        'migration_id': UUID,
        'instance_uuid': UUID,
        'source_host': _S(max=255),
        'nonce': NONCE,
    },
    'prepare_reply': {
        'migration_id': UUID,
        'nonce': NONCE,
        'binding_key': _O(CERTIFIED_KEY),
    },
    'transfer': {
        'seq': _I(2, 2),
        'migration_id': UUID,
        'wrapped_key': _O(WRAPPED_KEY),
        'payload_nonce': _B(exact=12),
        'ciphertext': _B(1, 2 * 1024 * 1024),
        'manifest': _O(MANIFEST),
    },
    # Unsigned: authenticated by the session; signatures come at commit.
    'transfer_reply': {
        'migration_id': UUID,
        'receipt': _O(RECEIPT),
    },
    # The manifest hashes one source signature covers (its batch).
    'commit': {
        'seq': _I(3, 3),
        'migration_id': UUID,
        'manifest_hash': HASH,
        'manifest_batch': _L(HASH, max=MAX_BATCH),
        'manifest_signature': _B(1, 512),
    },
    'commit_reply': {
        'migration_id': UUID,
        'receipt': _O(RECEIPT),
        'receipt_batch': _L(HASH, max=MAX_BATCH),
        'receipt_signature': _B(1, 512),
    },
    # Phase 2 and the commit of a batch of migrations between the same
    # two hosts (one exchange, one unwrap, one signature per side).
    'prepare_batch': {
        'seq': _I(1, 1),
        'source_host': _S(max=255),
        'nonce': NONCE,
        'items': _L(_O({'migration_id': UUID, 'instance_uuid': UUID}),
                    max=MAX_BATCH),
    },
    'prepare_batch_reply': {
        'nonce': NONCE,
        'binding_key': _O(CERTIFIED_KEY),
        # code '' = reserved, else the refusal's error code.
        'items': _L(_O({'migration_id': UUID, 'code': _S(min=0, max=64)}),
                    max=MAX_BATCH),
    },
    'transfer_batch': {
        'seq': _I(2, 2),
        'wrapped_key': _O(WRAPPED_KEY),
        'items': _L(_O({'migration_id': UUID,
                        'payload_nonce': _B(exact=12),
                        'ciphertext': _B(1, MAX_BATCH_CIPHERTEXT),
                        'manifest': _O(MANIFEST)}), max=MAX_BATCH),
    },
    'transfer_batch_reply': {
        'receipts': _L(_O(RECEIPT), max=MAX_BATCH),
        'refused': _L(_O({'migration_id': UUID, 'code': _S(max=64)}),
                      max=MAX_BATCH),
    },
    'commit_batch': {
        'seq': _I(3, 3),
        'items': _L(_O({'migration_id': UUID, 'manifest_hash': HASH}),
                    max=MAX_BATCH),
        'manifest_batch': _L(HASH, max=MAX_BATCH),
        'manifest_signature': _B(1, 512),
    },
    'commit_batch_reply': {
        'items': _L(_O({'receipt': _O(RECEIPT),
                        'batch': _L(HASH, max=MAX_BATCH),
                        'signature': _B(1, 512)}), max=MAX_BATCH),
    },
    'abort': {
        'seq': _I(3, 3),
        'migration_id': UUID,
        'reason': _S(min=0, max=256),
    },
    'abort_reply': {
        'migration_id': UUID,
        'state': STATE,
    },
    # The destination asks the source (its coordinator) to abort, from
    # its own attested session with the source.
    'rollback': {
        'migration_id': UUID,
        'reason': _S(min=0, max=256),
    },
    'rollback_reply': {
        'migration_id': UUID,
        'state': STATE,
    },
    'status': {
        'migration_id': UUID,
    },
    'status_reply': {
        'migration_id': UUID,
        'state': STATE,
        'decision': _S(choices=DECISIONS),
    },
    # Refusal (clear text in phase 1, sealed afterwards when possible).
    'error': {
        'code': _S(max=64),
        'message': _S(min=0, max=1024),
    },
}

#: Which reply type answers which request type.
REPLIES = {
    'hello': 'hello_reply',
    'attest': 'attest_reply',
    'prepare': 'prepare_reply',
    'transfer': 'transfer_reply',
    'commit': 'commit_reply',
    'prepare_batch': 'prepare_batch_reply',
    'transfer_batch': 'transfer_batch_reply',
    'commit_batch': 'commit_batch_reply',
    'abort': 'abort_reply',
    'rollback': 'rollback_reply',
    'status': 'status_reply',
}
PHASE1_TYPES = frozenset({'hello', 'hello_reply', 'attest',
                          'attest_reply'})
SEALED_TYPES = frozenset({'prepare', 'prepare_reply', 'transfer',
                          'transfer_reply', 'commit', 'commit_reply',
                          'prepare_batch', 'prepare_batch_reply',
                          'transfer_batch', 'transfer_batch_reply',
                          'commit_batch', 'commit_batch_reply',
                          'abort', 'abort_reply', 'rollback',
                          'rollback_reply', 'status', 'status_reply',
                          'error'})

_ENVELOPE_KEYS = frozenset({'v', 'type', 'body'})


@dataclasses.dataclass(frozen=True)
class Message:
    """A decoded message.

    :ivar type: the message type.
    :ivar body: validated body (bytes fields as ``bytes``).
    :ivar raw: the exact canonical bytes it was decoded from.
    """

    type: str
    body: dict[str, ty.Any]
    raw: bytes


def encode(msg_type: str, body: collections.abc.Mapping[str, ty.Any],
           version: int = VERSION) -> bytes:
    """Encode a message canonically after checking it against its schema.

    :raises UnknownMessageType: ``msg_type`` has no schema.
    :raises MalformedMessage: ``body`` does not match the schema.
    """
    schema = SCHEMAS.get(msg_type)
    if schema is None:
        raise errors.UnknownMessageType(type=msg_type[:32])
    data = wire.dumps({'v': version, 'type': msg_type,
                       'body': wire.to_wire(body, schema, 'body')})
    if len(data) > wire.MAX_MESSAGE_SIZE:
        raise errors.MessageTooLarge(size=len(data),
                                     limit=wire.MAX_MESSAGE_SIZE)
    return data


def decode(data: bytes,
           allowed: collections.abc.Collection[str] | None = None
           ) -> Message:
    """Decode and validate one message.

    :param data: the received bytes.
    :param allowed: message types acceptable here (others are refused).
    :raises MalformedMessage: any syntax or schema violation (subclass).
    :raises UnsupportedVersion: a version this code does not speak.
    :raises UnexpectedMessage: a valid type not in ``allowed``.
    """
    value = wire.loads(data)
    if not isinstance(value, dict):
        raise errors.WrongFieldType(field='.', expected='object')
    keys = set(value)
    for name in sorted(keys - _ENVELOPE_KEYS):
        raise errors.UnknownField(field=str(name)[:64])
    for name in sorted(_ENVELOPE_KEYS - keys):
        raise errors.MissingField(field=name)
    version = value['v']
    if not isinstance(version, int) or isinstance(version, bool):
        raise errors.WrongFieldType(field='v', expected='int')
    if version not in SUPPORTED_VERSIONS:
        raise errors.UnsupportedVersion(
            version=version, supported=SUPPORTED_VERSIONS)
    msg_type = value['type']
    if not isinstance(msg_type, str):
        raise errors.WrongFieldType(field='type', expected='str')
    schema = SCHEMAS.get(msg_type)
    if schema is None:
        raise errors.UnknownMessageType(type=msg_type[:32])
    if allowed is not None and msg_type not in allowed:
        raise errors.UnexpectedMessage(type=msg_type,
                                       reason='not acceptable here')
    body = wire.from_wire(value['body'], schema, 'body')
    _check_uuids(body)
    return Message(type=msg_type, body=body, raw=bytes(data))


def _check_uuids(body: collections.abc.Mapping[str, ty.Any]) -> None:
    for name in ('migration_id', 'instance_uuid'):
        if name in body:
            check_uuid(body[name], name)


def check_uuid(value: str, field: str) -> str:
    """Require the canonical lower-case hyphenated UUID form.

    :raises FieldOutOfRange: anything else (also path-like strings).
    """
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        raise errors.FieldOutOfRange(field=field,
                                     reason='not a UUID') from None
    if canonical != value:
        raise errors.FieldOutOfRange(field=field,
                                     reason='not a canonical UUID')
    return value


# Conversions between evidence dataclasses and wire dictionaries.

_T = ty.TypeVar('_T')


def _plain_to_wire(obj: ty.Any) -> dict[str, bytes]:
    """Wire form of an evidence dataclass whose fields are all bytes."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _plain_from_wire(cls: type[_T],
                     d: collections.abc.Mapping[str, ty.Any]) -> _T:
    """An evidence dataclass from its (schema-checked) wire form."""
    fields = dataclasses.fields(ty.cast(ty.Any, cls))
    return cls(**{f.name: d[f.name] for f in fields})


def identity_to_wire(ident: evidence.HostIdentity) -> dict[str, bytes]:
    """Wire form of a :class:`~evidence.HostIdentity`."""
    return _plain_to_wire(ident)


def identity_from_wire(d: collections.abc.Mapping[str, ty.Any]
                       ) -> evidence.HostIdentity:
    """A :class:`~evidence.HostIdentity` from its wire form."""
    return _plain_from_wire(evidence.HostIdentity, d)


def certified_to_wire(key: evidence.CertifiedKey) -> dict[str, bytes]:
    """Wire form of a :class:`~evidence.CertifiedKey`."""
    return _plain_to_wire(key)


def certified_from_wire(d: collections.abc.Mapping[str, ty.Any]
                        ) -> evidence.CertifiedKey:
    """A :class:`~evidence.CertifiedKey` from its wire form."""
    return _plain_from_wire(evidence.CertifiedKey, d)


def quote_to_wire(q: evidence.Quote) -> dict[str, ty.Any]:
    """Wire form of a :class:`~evidence.Quote`."""
    return {'attest': q.attest, 'signature': q.signature,
            'pcr_values': [{'index': i, 'value': v}
                           for i, v in q.pcr_values]}


def quote_from_wire(d: collections.abc.Mapping[str, ty.Any]
                    ) -> evidence.Quote:
    """A :class:`~evidence.Quote` from its wire form.

    :raises DuplicateField: a PCR index appears twice.
    """
    pcrs = tuple((p['index'], p['value']) for p in d['pcr_values'])
    if len({i for i, _ in pcrs}) != len(pcrs):
        raise errors.DuplicateField(field='quote.pcr_values.index')
    return evidence.Quote(attest=d['attest'], signature=d['signature'],
                          pcr_values=pcrs)


def credential_to_wire(c: evidence.CredentialChallenge
                       ) -> dict[str, bytes]:
    """Wire form of a :class:`~evidence.CredentialChallenge`."""
    return _plain_to_wire(c)


def credential_from_wire(d: collections.abc.Mapping[str, ty.Any]
                         ) -> evidence.CredentialChallenge:
    """A :class:`~evidence.CredentialChallenge` from its wire form."""
    return _plain_from_wire(evidence.CredentialChallenge, d)


def wrapped_to_wire(w: evidence.WrappedKey) -> dict[str, bytes]:
    """Wire form of a :class:`~evidence.WrappedKey`."""
    return _plain_to_wire(w)


def wrapped_from_wire(d: collections.abc.Mapping[str, ty.Any]
                      ) -> evidence.WrappedKey:
    """A :class:`~evidence.WrappedKey` from its wire form."""
    return _plain_from_wire(evidence.WrappedKey, d)
