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


"""A strict serializer for the vTPM migration RPC API.

The API carries two kinds of value: an opaque protocol message (bytes),
sent as ``{"vtpm_message": "<base64>"}``, and the short, flat values of
the control calls (host names, UUIDs, a policy name, and their summaries:
``None``, booleans, integers, strings up to :data:`MAX_TEXT`, and flat
mappings of those). Anything else in an argument or a result is refused
instead of being passed through, and sizes are bounded before decoding.
The protocol layer then parses message bytes strictly
(:mod:`nova_vtpm_migration.protocol.messages`). No request context is sent
or accepted.
"""

import base64
import binascii
import typing as ty

import oslo_messaging as messaging

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import wire

_KEY = 'vtpm_message'
_MAX_B64 = (wire.MAX_MESSAGE_SIZE * 4) // 3 + 4
#: Longest string a control call may carry.
MAX_TEXT = 1024
#: Most entries a summary mapping may have.
MAX_ITEMS = 32


def _check_scalar(value: ty.Any, where: str) -> ty.Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise errors.FieldOutOfRange(field=where,
                                         reason=f'longer than {MAX_TEXT}')
        return value
    raise errors.WrongFieldType(field=where,
                                expected='null, boolean, integer or text')


def _check_flat(value: ty.Any, where: str) -> ty.Any:
    """A scalar, or a flat mapping of text keys to scalars."""
    if not isinstance(value, dict):
        return _check_scalar(value, where)
    if len(value) > MAX_ITEMS:
        raise errors.FieldOutOfRange(field=where,
                                     reason=f'more than {MAX_ITEMS} items')
    for key, item in value.items():
        if not isinstance(key, str) or len(key) > 64:
            raise errors.WrongFieldType(field=where, expected='text keys')
        _check_scalar(item, f'{where}.{key}')
    return value


class RpcSerializer(messaging.Serializer):  # type: ignore[misc]
    """Serialises protocol messages and flat control values only."""

    def serialize_entity(self, ctxt: ty.Any, entity: ty.Any) -> ty.Any:
        """Encode one argument or result."""
        if isinstance(entity, bytes):
            if len(entity) > wire.MAX_MESSAGE_SIZE:
                raise errors.MessageTooLarge(size=len(entity),
                                             limit=wire.MAX_MESSAGE_SIZE)
            return {_KEY: base64.b64encode(entity).decode('ascii')}
        if isinstance(entity, dict) and _KEY in entity:
            raise errors.WrongFieldType(field='rpc argument',
                                        expected='no reserved key')
        return _check_flat(entity, 'rpc argument')

    def deserialize_entity(self, ctxt: ty.Any, entity: ty.Any) -> ty.Any:
        """Decode one argument or result; refuse anything else."""
        if isinstance(entity, dict) and _KEY in entity:
            return _decode_message(entity)
        return _check_flat(entity, 'rpc argument')

    def serialize_context(self, ctxt: ty.Any) -> dict[str, ty.Any]:
        """No request context is sent: the protocol authenticates its
        peers itself, and the control calls' receiver uses its own."""
        return {}

    def deserialize_context(self, ctxt: ty.Any) -> dict[str, ty.Any]:
        """No request context is accepted."""
        return {}


def _decode_message(entity: dict[str, ty.Any]) -> bytes:
    if set(entity) != {_KEY} or not isinstance(entity[_KEY], str):
        raise errors.WrongFieldType(field='rpc argument',
                                    expected='protocol message')
    text = entity[_KEY]
    if len(text) > _MAX_B64:
        raise errors.MessageTooLarge(size=len(text), limit=_MAX_B64)
    try:
        return base64.b64decode(text.encode('ascii'), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise errors.WrongFieldType(field='rpc argument',
                                    expected='base64') from None
