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


"""Canonical, strictly parsed wire encoding.

Every protocol message and every structure that is signed, MACed or hashed
is canonical JSON: an object with sorted keys, no insignificant whitespace,
ASCII only, integers only (no floats, no NaN), byte strings as unpadded
base64url text. Decoding re-encodes the parsed value and refuses input that
differs, so one value has exactly one byte encoding and a hash or MAC over
the bytes is a hash or MAC over the value.

Each structure has an explicit :class:`Field` schema: every field is
required, unknown or duplicate fields are refused, types and lengths are
checked. Failures raise the specific
:class:`~nova_vtpm_migration.protocol.errors.MalformedMessage` subclass.
"""

import base64
import binascii
import collections.abc
import dataclasses
import json
import typing as ty

from nova_vtpm_migration.protocol import errors

#: Largest encoded message or structure accepted (bytes).
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: Default upper bound of a byte or text field.
DEFAULT_MAX_LEN = 8192
#: Largest integer representable in every JSON implementation we accept.
MAX_INT = 2 ** 63 - 1

BYTES = 'bytes'
STR = 'str'
INT = 'int'
OBJ = 'object'
LIST = 'list'

Value = ty.Any
Schema = collections.abc.Mapping[str, 'Field']


@dataclasses.dataclass(frozen=True)
class Field:
    """The type and limits of one field.

    :ivar kind: one of ``bytes``, ``str``, ``int``, ``object``, ``list``.
    :ivar min: minimum length (bytes, str, list) or value (int).
    :ivar max: maximum length (bytes, str, list) or value (int).
    :ivar schema: the field schema of an ``object``.
    :ivar item: the field type of the items of a ``list``.
    :ivar choices: allowed values of a ``str`` field.
    """

    kind: str
    min: int = 0
    max: int = DEFAULT_MAX_LEN
    schema: Schema | None = None
    item: 'Field | None' = None
    choices: frozenset[str] | None = None


def Bytes(min: int = 0, max: int = DEFAULT_MAX_LEN,  # noqa: N802
          exact: int | None = None) -> Field:
    """A byte string field of the given length bounds."""
    if exact is not None:
        return Field(BYTES, exact, exact)
    return Field(BYTES, min, max)


def Str(min: int = 1, max: int = 256,  # noqa: N802
        choices: collections.abc.Iterable[str] | None = None) -> Field:
    """A text field, optionally restricted to ``choices``."""
    return Field(STR, min, max,
                 choices=frozenset(choices) if choices is not None else None)


def Int(min: int = 0, max: int = MAX_INT) -> Field:  # noqa: N802
    """An integer field within ``[min, max]``."""
    return Field(INT, min, max)


def Obj(schema: Schema) -> Field:  # noqa: N802
    """A nested object with its own schema."""
    return Field(OBJ, schema=schema)


def List(item: Field, max: int = 64) -> Field:  # noqa: N802
    """A list of at most ``max`` items of type ``item``."""
    return Field(LIST, 0, max, item=item)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


def _b64decode(text: str, path: str) -> bytes:
    if not text.isascii():
        raise errors.WrongFieldType(field=path, expected='base64url')
    padded = text + '=' * (-len(text) % 4)
    try:
        data = base64.b64decode(padded.encode('ascii'), altchars=b'-_',
                                validate=True)
    except (binascii.Error, ValueError):
        raise errors.WrongFieldType(field=path, expected='base64url') from None
    if _b64encode(data) != text:
        raise errors.NonCanonicalEncoding()
    return data


def dumps(value: Value) -> bytes:
    """Serialise a JSON value (already in wire form) canonically."""
    return json.dumps(value, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=True, allow_nan=False).encode('ascii')


def _scalar(value: Value, field: Field, path: str) -> Value:
    """Check a string or integer field (the same on the wire and off)."""
    if field.kind == STR:
        if not isinstance(value, str):
            raise errors.WrongFieldType(field=path, expected='str')
        _check_str(value, field, path)
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.WrongFieldType(field=path, expected='int')
    _check_int(value, field, path)
    return value


def _to_wire(value: Value, field: Field, path: str) -> Value:
    if field.kind == BYTES:
        if not isinstance(value, bytes):
            raise errors.WrongFieldType(field=path, expected='bytes')
        _check_len(len(value), field, path)
        return _b64encode(value)
    if field.kind in (STR, INT):
        return _scalar(value, field, path)
    if field.kind == LIST:
        if not isinstance(value, (list, tuple)):
            raise errors.WrongFieldType(field=path, expected='list')
        _check_len(len(value), field, path)
        assert field.item is not None
        return [_to_wire(v, field.item, f'{path}[{i}]')
                for i, v in enumerate(value)]
    assert field.schema is not None
    return to_wire(value, field.schema, path)


def to_wire(value: collections.abc.Mapping[str, Value], schema: Schema,
            path: str = '') -> dict[str, Value]:
    """Validate a Python structure against ``schema`` and convert it to
    its JSON wire form (bytes to base64url)."""
    if not isinstance(value, collections.abc.Mapping):
        raise errors.WrongFieldType(field=path or '.', expected='object')
    _check_keys(value.keys(), schema, path)
    return {name: _to_wire(value[name], field, _join(path, name))
            for name, field in schema.items()}


def _from_wire(value: Value, field: Field, path: str) -> Value:
    if field.kind == BYTES:
        if not isinstance(value, str):
            raise errors.WrongFieldType(field=path, expected='bytes')
        if len(value) > (field.max * 4) // 3 + 4:
            raise errors.FieldOutOfRange(field=path, reason='too long')
        data = _b64decode(value, path)
        _check_len(len(data), field, path)
        return data
    if field.kind in (STR, INT):
        return _scalar(value, field, path)
    if field.kind == LIST:
        if not isinstance(value, list):
            raise errors.WrongFieldType(field=path, expected='list')
        _check_len(len(value), field, path)
        assert field.item is not None
        return [_from_wire(v, field.item, f'{path}[{i}]')
                for i, v in enumerate(value)]
    assert field.schema is not None
    return from_wire(value, field.schema, path)


def from_wire(value: Value, schema: Schema, path: str = ''
              ) -> dict[str, Value]:
    """Validate a parsed JSON value against ``schema`` and convert it to
    Python values (base64url to bytes)."""
    if not isinstance(value, dict):
        raise errors.WrongFieldType(field=path or '.', expected='object')
    _check_keys(value.keys(), schema, path)
    return {name: _from_wire(value[name], field, _join(path, name))
            for name, field in schema.items()}


def _join(path: str, name: str) -> str:
    return f'{path}.{name}' if path else name


def _check_keys(keys: collections.abc.Iterable[str], schema: Schema,
                path: str) -> None:
    present = set(keys)
    for name in sorted(present - set(schema)):
        raise errors.UnknownField(field=_join(path, str(name)[:64]))
    for name in schema:
        if name not in present:
            raise errors.MissingField(field=_join(path, name))


def _check_len(length: int, field: Field, path: str) -> None:
    if length < field.min or length > field.max:
        raise errors.FieldOutOfRange(
            field=path, reason=f'length {length} not in '
                               f'[{field.min}, {field.max}]')


def _check_int(value: int, field: Field, path: str) -> None:
    if value < field.min or value > field.max:
        raise errors.FieldOutOfRange(
            field=path, reason=f'value not in [{field.min}, {field.max}]')


def _check_str(value: str, field: Field, path: str) -> None:
    _check_len(len(value), field, path)
    if not value.isprintable():
        raise errors.FieldOutOfRange(field=path,
                                     reason='non-printable character')
    if field.choices is not None and value not in field.choices:
        raise errors.FieldOutOfRange(field=path, reason='value not allowed')


def _no_duplicates(pairs: list[tuple[str, Value]]) -> dict[str, Value]:
    result: dict[str, Value] = {}
    for key, val in pairs:
        if key in result:
            raise errors.DuplicateField(field=key[:64])
        result[key] = val
    return result


def _no_float(text: str) -> ty.NoReturn:
    raise errors.WrongFieldType(field='(number)', expected='int')


def _no_constant(text: str) -> ty.NoReturn:
    raise errors.InvalidEncoding(reason='non-finite number')


def loads(data: bytes, limit: int = MAX_MESSAGE_SIZE) -> Value:
    """Parse canonical JSON strictly.

    :param data: the encoded bytes.
    :param limit: maximum accepted size.
    :returns: the parsed JSON value (bytes still base64url text).
    :raises MessageTooLarge: ``data`` is longer than ``limit``.
    :raises InvalidEncoding: not UTF-8 JSON (for example truncated).
    :raises DuplicateField: an object repeats a key.
    :raises NonCanonicalEncoding: valid JSON but not the canonical form.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise errors.WrongFieldType(field='.', expected='bytes')
    if len(data) > limit:
        raise errors.MessageTooLarge(size=len(data), limit=limit)
    try:
        text = bytes(data).decode('ascii')
    except UnicodeDecodeError:
        raise errors.InvalidEncoding(reason='not ASCII') from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates,
                           parse_float=_no_float,
                           parse_constant=_no_constant)
    except errors.MalformedMessage:
        raise
    except RecursionError:
        raise errors.InvalidEncoding(reason='nested too deeply') from None
    except ValueError as exc:
        raise errors.InvalidEncoding(reason=type(exc).__name__) from None
    if dumps(value) != bytes(data):
        raise errors.NonCanonicalEncoding()
    return value


def encode(value: collections.abc.Mapping[str, Value],
           schema: Schema) -> bytes:
    """Encode a structure canonically after validating it.

    :raises MalformedMessage: ``value`` does not match ``schema``.
    """
    data = dumps(to_wire(value, schema))
    if len(data) > MAX_MESSAGE_SIZE:
        raise errors.MessageTooLarge(size=len(data), limit=MAX_MESSAGE_SIZE)
    return data


def decode(data: bytes, schema: Schema) -> dict[str, Value]:
    """Decode and validate canonical bytes against ``schema``."""
    return from_wire(loads(data), schema)
