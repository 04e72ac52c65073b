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


"""A strict serializer for the migration RPC API.

The API carries exactly one kind of value: an opaque protocol message
(bytes), sent as ``{"vtpm_message": "<base64>"}``. Anything else in an
argument or a result is refused instead of being passed through, and the
size is bounded before decoding. The protocol layer then parses the bytes
strictly (:mod:`nova_vtpm_migration.protocol.messages`).
"""

import base64
import binascii
import typing as ty

import oslo_messaging as messaging

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import wire

_KEY = 'vtpm_message'
_MAX_TEXT = (wire.MAX_MESSAGE_SIZE * 4) // 3 + 4


class MessageSerializer(messaging.Serializer):  # type: ignore[misc]
    """Serialises protocol messages (bytes) and nothing else."""

    def serialize_entity(self, ctxt: ty.Any, entity: ty.Any) -> ty.Any:
        """Encode one protocol message (bytes only)."""
        if not isinstance(entity, bytes):
            raise errors.WrongFieldType(field='rpc argument',
                                        expected='bytes')
        if len(entity) > wire.MAX_MESSAGE_SIZE:
            raise errors.MessageTooLarge(size=len(entity),
                                         limit=wire.MAX_MESSAGE_SIZE)
        return {_KEY: base64.b64encode(entity).decode('ascii')}

    def deserialize_entity(self, ctxt: ty.Any, entity: ty.Any) -> bytes:
        """Decode one protocol message; refuse anything else."""
        if (not isinstance(entity, dict) or set(entity) != {_KEY}
                or not isinstance(entity[_KEY], str)):
            raise errors.WrongFieldType(field='rpc argument',
                                        expected='protocol message')
        text = entity[_KEY]
        if len(text) > _MAX_TEXT:
            raise errors.MessageTooLarge(size=len(text), limit=_MAX_TEXT)
        try:
            return base64.b64decode(text.encode('ascii'), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise errors.WrongFieldType(field='rpc argument',
                                        expected='base64') from None

    def serialize_context(self, ctxt: ty.Any) -> dict[str, ty.Any]:
        # NOTE(vtpm): the protocol authenticates its peers itself; no
        # request context travels with the messages.
        """No request context is sent."""
        return {}

    def deserialize_context(self, ctxt: ty.Any) -> dict[str, ty.Any]:
        """No request context is accepted."""
        return {}
