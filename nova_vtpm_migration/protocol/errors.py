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

NOTE(vtpm): never pass key material or plaintext secrets as a format
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
    msg_fmt = _('Message of %(size)d bytes exceeds the limit of %(limit)d')
    code = 'too_large'


class InvalidEncoding(MalformedMessage):
    msg_fmt = _('Message is not valid canonical JSON (truncated or '
                'corrupt): %(reason)s')
    code = 'invalid_encoding'


class NonCanonicalEncoding(MalformedMessage):
    msg_fmt = _('Message is not in canonical encoding')
    code = 'non_canonical'


class UnknownMessageType(MalformedMessage):
    msg_fmt = _('Unknown message type %(type)s')
    code = 'unknown_type'


class UnknownField(MalformedMessage):
    msg_fmt = _('Unknown field %(field)s')
    code = 'unknown_field'


class MissingField(MalformedMessage):
    msg_fmt = _('Missing field %(field)s')
    code = 'missing_field'


class DuplicateField(MalformedMessage):
    msg_fmt = _('Duplicate field %(field)s')
    code = 'duplicate_field'


class WrongFieldType(MalformedMessage):
    msg_fmt = _('Field %(field)s must be of type %(expected)s')
    code = 'wrong_type'


class FieldOutOfRange(MalformedMessage):
    msg_fmt = _('Field %(field)s is out of range: %(reason)s')
    code = 'out_of_range'


class InvalidEvidence(MalformedMessage):
    """TPM evidence that the verifier could not even parse."""

    msg_fmt = _('Malformed TPM evidence (%(what)s): %(reason)s')
    code = 'invalid_evidence'


class UnsupportedVersion(ProtocolError):
    msg_fmt = _('Unsupported protocol version %(version)s (supported: '
                '%(supported)s)')
    code = 'unsupported_version'


class UnsupportedSuite(ProtocolError):
    msg_fmt = _('Unsupported cipher suite %(suite)s (supported: '
                '%(supported)s)')
    code = 'unsupported_suite'


class UnexpectedMessage(ProtocolError):
    msg_fmt = _('Unexpected message %(type)s: %(reason)s')
    code = 'unexpected'


class AuthenticationFailed(ProtocolError):
    """A MAC, proof or key confirmation did not verify."""

    msg_fmt = _('Authentication failed: %(reason)s')
    code = 'auth_failed'


class DecryptionFailed(AuthenticationFailed):
    msg_fmt = _('Authenticated decryption failed: %(reason)s')
    code = 'decrypt_failed'


class PeerIdentityMismatch(AuthenticationFailed):
    msg_fmt = _('Peer identity changed: %(reason)s')
    code = 'identity_mismatch'


class ReplayDetected(ProtocolError):
    msg_fmt = _('Replay detected: %(reason)s')
    code = 'replay'


class MigrationIdReused(ReplayDetected):
    msg_fmt = _('Migration id %(migration_id)s was already used')
    code = 'id_reused'


class SessionError(ProtocolError):
    msg_fmt = _('Session error: %(reason)s')
    code = 'session'


class StateError(ProtocolError):
    """An illegal state transition or an operation in the wrong state."""

    msg_fmt = _('Illegal %(role)s transition of migration %(migration_id)s '
                'from %(old)s to %(new)s')
    code = 'state'


class UnknownMigration(ProtocolError):
    msg_fmt = _('Unknown migration %(migration_id)s')
    code = 'unknown_migration'


class InstanceBusy(ProtocolError):
    msg_fmt = _('Instance %(instance_uuid)s cannot be migrated: %(reason)s')
    code = 'instance_busy'


class PeerRefused(ProtocolError):
    """The peer answered with an error reply."""

    msg_fmt = _('Peer %(peer)s refused %(request)s: [%(peer_code)s] '
                '%(peer_message)s')
    code = 'peer_refused'


class TransportError(ProtocolError):
    msg_fmt = _('Transport to peer %(peer)s failed: %(reason)s')
    code = 'transport'


class ReceiptInvalid(ProtocolError):
    msg_fmt = _('Receipt or manifest does not verify: %(reason)s')
    code = 'receipt_invalid'


class KeyStoreError(ProtocolError):
    msg_fmt = _('Key store error for instance %(instance_uuid)s: '
                '%(reason)s')
    code = 'keystore'


class KeyNotFound(KeyStoreError):
    msg_fmt = _('No usable key for instance %(instance_uuid)s')
    code = 'key_not_found'


class KeyStateError(KeyStoreError):
    msg_fmt = _('Key of instance %(instance_uuid)s is %(state)s; '
                'expected %(expected)s')
    code = 'key_state'


class JournalError(ProtocolError):
    msg_fmt = _('Migration journal error: %(reason)s')
    code = 'journal'
