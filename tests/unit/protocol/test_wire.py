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


"""Strict parsing of the canonical wire format and the message schemas."""

import json

import hypothesis
from hypothesis import strategies as st
import pytest

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import wire

V = messages.VERSION
MID = '12345678-1234-4234-8234-123456789abc'
SCHEMA: wire.Schema = {
    'n': wire.Int(0, 10),
    'b': wire.Bytes(1, 4),
    's': wire.Str(max=5, choices=('a', 'bb')),
    'l': wire.List(wire.Int(), max=2),
    'o': wire.Obj({'x': wire.Bytes(exact=2)}),
}
GOOD = {'n': 3, 'b': b'\x00\xff', 's': 'bb', 'l': [1, 2],
        'o': {'x': b'ab'}}


def _raw(value: object) -> bytes:
    return json.dumps(value, sort_keys=True,
                      separators=(',', ':')).encode()


def test_roundtrip_is_canonical() -> None:
    data = wire.encode(GOOD, SCHEMA)
    assert data == (b'{"b":"AP8","l":[1,2],"n":3,"o":{"x":"YWI"},'
                    b'"s":"bb"}')
    assert wire.decode(data, SCHEMA) == GOOD


@pytest.mark.parametrize('data,error', [
    (b'{"b":"AP8", "l":[1,2],"n":3,"o":{"x":"YWI"},"s":"bb"}',
     errors.NonCanonicalEncoding),
    (b'{"l":[1,2],"b":"AP8","n":3,"o":{"x":"YWI"},"s":"bb"}',
     errors.NonCanonicalEncoding),
    (b'{"b":"AP8","b":"AP8","l":[1,2],"n":3,"o":{"x":"YWI"},"s":"bb"}',
     errors.DuplicateField),
    (b'{"b":"AP8","l":[1,2],"n":3.0,"o":{"x":"YWI"},"s":"bb"}',
     errors.WrongFieldType),
    (b'{"b":"AP8","l":[1,2],"n":NaN,"o":{"x":"YWI"},"s":"bb"}',
     errors.InvalidEncoding),
    (b'{"b":"AP8","l":[1,2],"n":3,"o":{"x":"YWI"},"s":"bb","z":1}',
     errors.UnknownField),
    (b'{"b":"AP8","l":[1,2],"n":3,"o":{"x":"YWI"}}', errors.MissingField),
    (b'{"b":"AP8","l":[1,2],"n":true,"o":{"x":"YWI"},"s":"bb"}',
     errors.WrongFieldType),
    (b'{"b":"AP8","l":[1,2],"n":"3","o":{"x":"YWI"},"s":"bb"}',
     errors.WrongFieldType),
    (b'{"b":"AP8","l":[1,2],"n":11,"o":{"x":"YWI"},"s":"bb"}',
     errors.FieldOutOfRange),
    (b'{"b":"AP8=","l":[1,2],"n":3,"o":{"x":"YWI"},"s":"bb"}',
     errors.NonCanonicalEncoding),
    (b'{"b":"AP9","l":[1,2],"n":3,"o":{"x":"YWI"},"s":"bb"}',
     errors.NonCanonicalEncoding),
    (b'{"b":"A+8","l":[1,2],"n":3,"o":{"x":"YWI"},"s":"bb"}',
     errors.MalformedMessage),
    (b'{"b":"A*8","l":[1,2],"n":3,"o":{"x":"YWI"},"s":"bb"}',
     errors.WrongFieldType),
    (b'{"b":"AP8","l":[1,2,3],"n":3,"o":{"x":"YWI"},"s":"bb"}',
     errors.FieldOutOfRange),
    (b'{"b":"AP8","l":[1,2],"n":3,"o":{"x":"YWJj"},"s":"bb"}',
     errors.FieldOutOfRange),
    (b'{"b":"AP8","l":[1,2],"n":3,"o":{"x":"YWI"},"s":"c"}',
     errors.FieldOutOfRange),
    (b'{"b":"AP8","l":[1,2],"n":3,"o":[],"s":"bb"}', errors.WrongFieldType),
    (b'{"b":"AP8","l":[1,2],"n":3,"o":{"x":"YWI"},"s":"b\\u00e9"}',
     errors.FieldOutOfRange),
    (b'{"b":"AP8","l":[1,2],"n":3,"o":{"x":"YWI"},"s":"\xc3\xa9"}',
     errors.InvalidEncoding),
    (b'[' * 100000 + b']' * 100000, errors.MalformedMessage),
])
def test_refused(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        wire.decode(data, SCHEMA)


def test_every_truncation_is_refused() -> None:
    data = wire.encode(GOOD, SCHEMA)
    for end in range(len(data)):
        with pytest.raises(errors.MalformedMessage):
            wire.decode(data[:end], SCHEMA)


def test_size_limit() -> None:
    with pytest.raises(errors.MessageTooLarge):
        wire.loads(b' ' * (wire.MAX_MESSAGE_SIZE + 1))
    big = wire.Bytes(0, 10 ** 8)
    with pytest.raises(errors.MessageTooLarge):
        wire.encode({'x': b'\0' * wire.MAX_MESSAGE_SIZE}, {'x': big})


def test_encode_validates() -> None:
    with pytest.raises(errors.WrongFieldType):
        wire.encode(dict(GOOD, n=True), SCHEMA)
    with pytest.raises(errors.MissingField):
        wire.encode({'n': 1}, SCHEMA)
    with pytest.raises(errors.UnknownField):
        wire.encode(dict(GOOD, extra=1), SCHEMA)


def _status(version: int = messages.VERSION) -> bytes:
    return _raw({'v': version, 'type': 'status',
                 'body': {'migration_id': MID}})


def test_message_envelope() -> None:
    msg = messages.decode(_status())
    assert msg.type == 'status' and msg.body == {'migration_id': MID}
    assert messages.encode('status', {'migration_id': MID}) == _status()


def test_unknown_version() -> None:
    with pytest.raises(errors.UnsupportedVersion):
        messages.decode(_status(messages.VERSION + 1))
    with pytest.raises(errors.UnsupportedVersion):
        messages.decode(_status(1))   # the version before host binding
    with pytest.raises(errors.UnsupportedVersion):
        messages.decode(_raw({'v': 0, 'type': 'nonsense', 'body': 1}))


@pytest.mark.parametrize('value,error', [
    ({'v': V, 'type': 'nope', 'body': {}}, errors.UnknownMessageType),
    ({'v': V, 'type': 'status'}, errors.MissingField),
    ({'v': V, 'type': 'status', 'body': {'migration_id': MID}, 'x': 1},
     errors.UnknownField),
    ({'v': '1', 'type': 'status', 'body': {'migration_id': MID}},
     errors.WrongFieldType),
    ({'v': V, 'type': 'status', 'body': {'migration_id': MID.upper()}},
     errors.FieldOutOfRange),
    ({'v': V, 'type': 'status',
      'body': {'migration_id': '../../../../etc/passwd-xxxxxxxxxxxxx'}},
     errors.FieldOutOfRange),
    ([1], errors.WrongFieldType),
])
def test_message_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        messages.decode(_raw(value))


def test_unexpected_type() -> None:
    with pytest.raises(errors.UnexpectedMessage):
        messages.decode(_status(), allowed=('hello',))


def test_every_message_type_has_a_schema_and_reply() -> None:
    for request, reply in messages.REPLIES.items():
        assert request in messages.SCHEMAS and reply in messages.SCHEMAS
    assert messages.PHASE1_TYPES | messages.SEALED_TYPES | {'sealed'} \
        == set(messages.SCHEMAS)


_DOCUMENTED = (errors.MalformedMessage, errors.UnsupportedVersion,
               errors.UnexpectedMessage)


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        messages.decode(data)
    except _DOCUMENTED:
        pass


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(['v', 'type', 'body', 'seq', 'nonce',
                                       'migration_id', 'x']),
                      children, max_size=4),
    max_leaves=12)


@hypothesis.settings(max_examples=500, deadline=None)
@hypothesis.given(_json, st.sampled_from(sorted(messages.SCHEMAS)))
def test_fuzz_structured(body: object, msg_type: str) -> None:
    try:
        messages.decode(_raw({'v': V, 'type': msg_type, 'body': body}))
    except _DOCUMENTED:
        pass
