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


"""Errors of the migration protocol.

Never pass key material or plaintext secrets as a format
argument; exception text ends up in logs and in error replies to the peer.
"""

from nova_vtpm_migration import exception
from nova_vtpm_migration.i18n import _


class ProtocolError(exception.VtpmMigrationException):
    """Base class of every protocol error."""

    msg_fmt = _('vTPM migration protocol error: %(reason)s')
    #: Stable machine-readable code sent to the peer in an error reply.
    code = 'protocol_error'


class MalformedMessage(ProtocolError):
    """A message does not follow the wire format."""

    msg_fmt = _('Malformed message: %(reason)s')
    code = 'malformed'


class MessageTooLarge(MalformedMessage):
    """The message or a field exceeds its size limit."""

    msg_fmt = _('Message of %(size)d bytes exceeds the limit of %(limit)d')
    code = 'too_large'


class InvalidEncoding(MalformedMessage):
    """Not ASCII JSON: truncated, corrupt or nested too deeply."""

    msg_fmt = _('Message is not valid canonical JSON (truncated or '
                'corrupt): %(reason)s')
    code = 'invalid_encoding'


class NonCanonicalEncoding(MalformedMessage):
    """Valid JSON, but not the one canonical encoding of its value."""

    msg_fmt = _('Message is not in canonical encoding')
    code = 'non_canonical'


class UnknownMessageType(MalformedMessage):
    """The ``type`` of the envelope has no schema."""

    msg_fmt = _('Unknown message type %(type)s')
    code = 'unknown_type'


class UnknownField(MalformedMessage):
    """A field the schema does not define."""

    msg_fmt = _('Unknown field %(field)s')
    code = 'unknown_field'


class MissingField(MalformedMessage):
    """A field the schema requires is absent."""

    msg_fmt = _('Missing field %(field)s')
    code = 'missing_field'


class DuplicateField(MalformedMessage):
    """An object repeats a key."""

    msg_fmt = _('Duplicate field %(field)s')
    code = 'duplicate_field'


class WrongFieldType(MalformedMessage):
    """A field has the wrong JSON type (e.g. a float or a bool for an int)."""

    msg_fmt = _('Field %(field)s must be of type %(expected)s')
    code = 'wrong_type'


class FieldOutOfRange(MalformedMessage):
    """A field value or length is outside its bounds or allowed values."""

    msg_fmt = _('Field %(field)s is out of range: %(reason)s')
    code = 'out_of_range'


class InvalidEvidence(MalformedMessage):
    """TPM evidence that the verifier could not even parse."""

    msg_fmt = _('Malformed TPM evidence (%(what)s): %(reason)s')
    code = 'invalid_evidence'


class UnsupportedVersion(ProtocolError):
    """A protocol version this code does not speak (or a downgrade)."""

    msg_fmt = _('Unsupported protocol version %(version)s (supported: '
                '%(supported)s)')
    code = 'unsupported_version'


class UnsupportedSuite(ProtocolError):
    """A cipher suite this code does not accept."""

    msg_fmt = _('Unsupported cipher suite %(suite)s (supported: '
                '%(supported)s)')
    code = 'unsupported_suite'


class UnexpectedMessage(ProtocolError):
    """A valid message that is not acceptable in this place."""

    msg_fmt = _('Unexpected message %(type)s: %(reason)s')
    code = 'unexpected'


class AuthenticationFailed(ProtocolError):
    """A MAC, proof or key confirmation did not verify."""

    msg_fmt = _('Authentication failed: %(reason)s')
    code = 'auth_failed'


class DecryptionFailed(AuthenticationFailed):
    """AES-GCM refused the ciphertext (key, nonce, AAD or data altered)."""

    msg_fmt = _('Authenticated decryption failed: %(reason)s')
    code = 'decrypt_failed'


class PeerIdentityMismatch(AuthenticationFailed):
    """The peer is not the TPM identity the migration is bound to."""

    msg_fmt = _('Peer identity changed: %(reason)s')
    code = 'identity_mismatch'


class AbortRefused(ProtocolError):
    """A destination's rollback request was refused by the source."""

    msg_fmt = _('Abort of migration %(migration_id)s refused: %(reason)s')
    code = 'abort_refused'


class ReplayDetected(ProtocolError):
    """A message or sequence number was seen before."""

    msg_fmt = _('Replay detected: %(reason)s')
    code = 'replay'


class MigrationIdReused(ReplayDetected):
    """A migration id that this host has already used or accepted."""

    msg_fmt = _('Migration id %(migration_id)s was already used')
    code = 'id_reused'


class HandshakeRateExceeded(ProtocolError):
    """More incoming handshakes than ``max_handshake_rate`` allows."""

    msg_fmt = _('Too many handshakes (more than %(rate)s per second); '
                'try again later')
    code = 'busy'


class SessionError(ProtocolError):
    """Unknown, expired or not yet established session."""

    msg_fmt = _('Session error: %(reason)s')
    code = 'session'


class StateError(ProtocolError):
    """An illegal state transition or an operation in the wrong state."""

    msg_fmt = _('Illegal %(role)s transition of migration %(migration_id)s '
                'from %(old)s to %(new)s')
    code = 'state'


class UnknownMigration(ProtocolError):
    """No journalled migration with this id in this role."""

    msg_fmt = _('Unknown migration %(migration_id)s')
    code = 'unknown_migration'


class InstanceBusy(ProtocolError):
    """The instance cannot be exported or received now."""

    msg_fmt = _('Instance %(instance_uuid)s cannot be migrated: %(reason)s')
    code = 'instance_busy'


class PeerRefused(ProtocolError):
    """The peer answered with an error reply."""

    msg_fmt = _('Peer %(peer)s refused %(request)s: [%(peer_code)s] '
                '%(peer_message)s')
    code = 'peer_refused'


class TransportError(ProtocolError):
    """The peer could not be reached or did not answer."""

    msg_fmt = _('Transport to peer %(peer)s failed: %(reason)s')
    code = 'transport'


class ReceiptInvalid(ProtocolError):
    """A manifest, receipt or audit record does not verify."""

    msg_fmt = _('Receipt or manifest does not verify: %(reason)s')
    code = 'receipt_invalid'


class KeyStoreError(ProtocolError):
    """Base class of per-instance key custody errors."""

    msg_fmt = _('Key store error for instance %(instance_uuid)s: '
                '%(reason)s')
    code = 'keystore'


class KeyNotFound(KeyStoreError):
    """No key in a usable state for the instance on this host."""

    msg_fmt = _('No usable key for instance %(instance_uuid)s')
    code = 'key_not_found'


class KeyStateError(KeyStoreError):
    """An illegal key custody transition."""

    msg_fmt = _('Key of instance %(instance_uuid)s is %(state)s; '
                'expected %(expected)s')
    code = 'key_state'


class JournalError(ProtocolError):
    """The journal database failed or lacks an expected record."""

    msg_fmt = _('Migration journal error: %(reason)s')
    code = 'journal'
