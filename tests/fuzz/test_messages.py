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



"""Fuzzing of every message parser: random bytes, valid messages mutated
byte-wise and structurally, truncations, oversize input, type confusion,
non-canonical encodings, and the authenticated envelope.

Property: a parser either accepts (and then re-encodes to the same bytes)
or raises a documented ``VtpmMigrationException`` subclass; nothing else
escapes.
"""

import json
import typing as ty

import hypothesis
from hypothesis import strategies as st

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import names
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import session as session_mod
from nova_vtpm_migration.protocol import wire
from tests.fuzz import fuzzlib

#: Every standalone structure decoded with ``wire.decode``.
STRUCTURES: dict[str, wire.Schema] = {
    'manifest': messages.MANIFEST, 'receipt': messages.RECEIPT,
    'payload': messages.PAYLOAD, 'aad': messages.AAD,
    'signed_manifest': receipts.SIGNED_MANIFEST,
    'signed_receipt': receipts.SIGNED_RECEIPT,
    'record': receipts.RECORD, 'signer': receipts.SIGNER,
}
TYPES = sorted(messages.SCHEMAS)


@st.composite
def valid_messages(draw: st.DrawFn) -> tuple[str, dict[str, ty.Any]]:
    msg_type = draw(st.sampled_from(TYPES))
    return msg_type, draw(fuzzlib.schema_values(messages.SCHEMAS[msg_type]))


def _decode_all(data: bytes) -> None:
    """Decode like an endpoint: envelope, then evidence conversions."""
    msg = messages.decode(data)
    body = msg.body
    for name, conv in (('identity', messages.identity_from_wire),
                       ('signing_key', messages.certified_from_wire),
                       ('binding_key', messages.certified_from_wire),
                       ('quote', messages.quote_from_wire),
                       ('credential', messages.credential_from_wire),
                       ('wrapped_key', messages.wrapped_from_wire)):
        if name in body:
            conv(body[name])
    assert messages.encode(msg.type, body) == data


@fuzzlib.budget(4)
@hypothesis.given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    ok, _ = fuzzlib.refused_or_ok('messages.random_bytes', _decode_all, data)
    assert not ok


@fuzzlib.budget(3)
@hypothesis.given(st.text(max_size=200).map(lambda t: t.encode('utf-8')))
def test_random_text(data: bytes) -> None:
    fuzzlib.refused_or_ok('messages.random_text', _decode_all, data)


@fuzzlib.budget(3)
@hypothesis.given(fuzzlib.JUNK)
def test_random_json(value: ty.Any) -> None:
    fuzzlib.refused_or_ok('messages.random_json', _decode_all,
                          fuzzlib.dumps_any(value))


@fuzzlib.budget(3)
@hypothesis.given(valid_messages())
def test_valid_roundtrip(msg: tuple[str, dict[str, ty.Any]]) -> None:
    msg_type, body = msg
    ok, data = fuzzlib.refused_or_ok('messages.valid', messages.encode,
                                     msg_type, body)
    if not ok:
        # only a duplicate PCR index may be refused later, never here
        raise AssertionError(f'valid {msg_type} refused: {data}')
    fuzzlib.refused_or_ok('messages.valid', _decode_all, data)


@fuzzlib.budget(6)
@hypothesis.given(valid_messages(), st.data())
def test_byte_mutations(msg: tuple[str, dict[str, ty.Any]],
                        data: st.DataObject) -> None:
    raw = messages.encode(*msg)
    mutated = data.draw(fuzzlib.mutated_bytes(raw))
    ok, _ = fuzzlib.refused_or_ok('messages.byte_mutation', _decode_all,
                                  mutated)
    if ok:
        # accepted only if still the canonical encoding of a valid value
        assert messages.decode(mutated).raw == mutated


@fuzzlib.budget(6)
@hypothesis.given(valid_messages(), st.data(), st.booleans())
def test_structural_mutations(msg: tuple[str, dict[str, ty.Any]],
                              data: st.DataObject, canonical: bool) -> None:
    value = json.loads(messages.encode(*msg))
    mutated = data.draw(fuzzlib.mutated_json(value))
    fuzzlib.refused_or_ok('messages.structural', _decode_all,
                          fuzzlib.dumps_any(mutated, canonical))


@fuzzlib.budget(2)
@hypothesis.given(valid_messages(), st.data())
def test_truncations(msg: tuple[str, dict[str, ty.Any]],
                     data: st.DataObject) -> None:
    raw = messages.encode(*msg)
    cut = data.draw(st.integers(0, len(raw) - 1))
    ok, exc = fuzzlib.refused_or_ok('messages.truncation', _decode_all,
                                    raw[:cut])
    assert not ok and isinstance(exc, errors.MalformedMessage)


@fuzzlib.budget(2)
@hypothesis.given(valid_messages())
def test_non_canonical(msg: tuple[str, dict[str, ty.Any]]) -> None:
    raw = messages.encode(*msg)
    pretty = json.dumps(json.loads(raw), indent=1).encode('ascii')
    ok, exc = fuzzlib.refused_or_ok('messages.non_canonical', _decode_all,
                                    pretty)
    assert not ok and isinstance(exc, errors.MalformedMessage)


@fuzzlib.budget(2)
@hypothesis.given(valid_messages(), st.integers(1, 255).filter(
    lambda v: v not in messages.SUPPORTED_VERSIONS))
def test_other_versions(msg: tuple[str, dict[str, ty.Any]],
                        version: int) -> None:
    raw = messages.encode(*msg, version=version)
    ok, exc = fuzzlib.refused_or_ok('messages.version', _decode_all, raw)
    assert not ok and isinstance(exc, errors.UnsupportedVersion)


@fuzzlib.budget(2)
@hypothesis.given(valid_messages(), st.sampled_from(TYPES))
def test_type_confusion(msg: tuple[str, dict[str, ty.Any]],
                        other: str) -> None:
    """A body of one type under another type's name."""
    value = json.loads(messages.encode(*msg))
    value['type'] = other
    ok, _ = fuzzlib.refused_or_ok('messages.type_confusion', _decode_all,
                                  fuzzlib.dumps_any(value))
    hypothesis.assume(other != msg[0])
    if ok:
        # only when both schemas have exactly the same fields and types
        assert (messages.SCHEMAS[other].keys()
                == messages.SCHEMAS[msg[0]].keys())


def test_oversize() -> None:
    fuzzlib.tick('messages.oversize')
    big = b'{"body":{"x":"' + b'A' * wire.MAX_MESSAGE_SIZE + b'"}}'
    try:
        messages.decode(big)
    except errors.MessageTooLarge:
        pass
    else:
        raise AssertionError('oversize message accepted')


def test_deep_nesting() -> None:
    fuzzlib.tick('messages.nesting')
    for depth in (100, 10000, 200000):
        data = b'[' * depth + b']' * depth
        if len(data) > wire.MAX_MESSAGE_SIZE:
            data = data[:wire.MAX_MESSAGE_SIZE]
        ok, _ = fuzzlib.refused_or_ok('messages.nesting', messages.decode,
                                      data)
        assert not ok


@fuzzlib.budget(2)
@hypothesis.given(st.sampled_from(sorted(STRUCTURES)), st.data())
def test_structures(name: str, data: st.DataObject) -> None:
    schema = STRUCTURES[name]
    value = data.draw(fuzzlib.schema_values(schema))
    raw = wire.encode(value, schema)
    assert wire.decode(raw, schema) == value
    how = data.draw(st.sampled_from(('bytes', 'json', 'random')))
    if how == 'bytes':
        mutated = data.draw(fuzzlib.mutated_bytes(raw))
    elif how == 'json':
        mutated = fuzzlib.dumps_any(data.draw(
            fuzzlib.mutated_json(json.loads(raw))))
    else:
        mutated = data.draw(st.binary(max_size=256))
    fuzzlib.refused_or_ok(f'wire.{name}', wire.decode, mutated, schema)


@fuzzlib.budget(2)
@hypothesis.given(st.binary(max_size=300))
def test_object_names(data: bytes) -> None:
    fuzzlib.refused_or_ok('names.object_name', names.object_name, data)


def _pair() -> tuple[session_mod.Session, session_mod.Session]:
    keys = crypto.derive_session_keys(b'\x01' * 32, b'\x04' * 32)
    common: dict[str, ty.Any] = dict(
        session_id=b'\x05' * 16, keys=keys, version=1, suite=messages.SUITE,
        local_ak_name=b'\x00\x0b' + b'\x06' * 32,
        peer_ak_name=b'\x00\x0b' + b'\x07' * 32, peer_identity=None,
        peer_signing_key=None, peer_pcr_values=())
    return (session_mod.Session(peer='r', initiator=True, **common),
            session_mod.Session(peer='i', initiator=False, **common))


@fuzzlib.budget(4)
@hypothesis.given(valid_messages(), st.data())
def test_sealed_envelope(msg: tuple[str, dict[str, ty.Any]],
                         data: st.DataObject) -> None:
    """Mutated envelopes, and mutated inner messages under a valid MAC
    (a peer that authenticated but sends garbage)."""
    initiator, responder = _pair()
    inner = messages.encode(*msg)
    if data.draw(st.booleans()):
        inner = fuzzlib.dumps_any(data.draw(
            fuzzlib.mutated_json(json.loads(inner))))
        hypothesis.assume(0 < len(inner) <= 3 * 1024 * 1024)
    envelope = initiator.seal(inner)
    if data.draw(st.booleans()):
        envelope = data.draw(fuzzlib.mutated_bytes(envelope))

    def receive(raw: bytes) -> messages.Message:
        return responder.open(messages.decode(raw, allowed=('sealed',)))

    ok, _ = fuzzlib.refused_or_ok('session.open', receive, envelope)
    if ok:
        # a replay of an accepted envelope is always refused
        ok2, exc = fuzzlib.refused_or_ok('session.open', receive, envelope)
        assert not ok2 and isinstance(exc, errors.ReplayDetected)
