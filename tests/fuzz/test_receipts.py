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



"""Fuzzing of the offline receipt verifier (``protocol.receipts``) with a
valid audit record signed by a real swtpm.

Properties: a mutated record (bytes, structure, or any single field
replaced by another well-formed value) is refused with a documented
error; a record is only accepted if it is the original one.
"""

import collections.abc
import dataclasses
import json
import os
import time
import typing as ty
import uuid

import hypothesis
from hypothesis import strategies as st
import pytest

from nova_vtpm_migration.protocol import crypto
from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import names
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.functional import swtpm_fixtures
from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
from tests.fuzz import fuzzlib
from tests.support import attestation
from tests.support import swtpm

os.environ.setdefault('TSS2_LOG', 'all+NONE')


@pytest.fixture(scope='module')
def signed(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
           ) -> collections.abc.Iterator[tuple[bytes,
                                               policy_mod.TrustPolicy]]:
    """A valid committed-receipt audit record (one TPM signs both)."""
    sim = swtpm_fixtures.attach(swtpm.SwtpmHostTpm(swtpm_ca, 'fuzzrcpt',
                                                   clone=True))
    try:
        tpm = sim.tpm
        policy = attestation.golden_policy(swtpm_ca.bundle_pem(),
                                           tpm.pcr_values())
        identity = dataclasses.replace(
            tpm.identity(), ak_certificate=attestation.default_ca().enroll(
                tpm, 'fuzzrcpt', swtpm_ca.bundle_pem()))
        signer = receipts.signer_evidence(
            identity,
            tpm.certified_signing_key(crypto.SIGNING_KEY_QUALIFIER))
        ak = names.object_name(identity.ak_public)
        common = {'version': 2, 'migration_id': str(uuid.uuid4()),
                  'instance_uuid': str(uuid.uuid4()),
                  'source_host': 'fuzzrcpt', 'dest_host': 'fuzzrcpt',
                  'source_ak_name': ak, 'dest_ak_name': ak,
                  'source_nonce': b'\x01' * 32, 'dest_nonce': b'\x02' * 32,
                  'created_at': int(time.time())}
        manifest = dict(common, binding_key_name=ak,
                        wrapped_key_hash=b'\x03' * 32,
                        ciphertext_hash=b'\x04' * 32, blob_names=['permall'])
        receipt = dict(common, status='committed',
                       manifest_hash=receipts.manifest_hash(manifest))
        record = receipts.build_record(
            manifest, receipts.sign_manifest(tpm, manifest), receipt,
            receipts.sign_receipt(tpm, receipt), signer, signer)
    finally:
        sim.stop()
    receipts.verify_record(record, policy)
    yield record, policy


def _verify(data: bytes, policy: policy_mod.TrustPolicy) -> None:
    receipts.verify_record(data, policy)


def _accepted(mutated: bytes, record: bytes) -> None:
    """An accepted record must be the original (a signer's altered EK
    public area must not verify)."""
    assert mutated == record, 'an altered record was accepted'


def _set(value: dict[str, ty.Any], path: tuple[str, ...],
         new: ty.Any) -> dict[str, ty.Any]:
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return value


def _leaf_fields(schema: wire.Schema, prefix: tuple[str, ...] = ()
                 ) -> list[tuple[tuple[str, ...], wire.Field]]:
    out = []
    for name, field in schema.items():
        if field.kind == wire.OBJ:
            assert field.schema is not None
            out.extend(_leaf_fields(field.schema, prefix + (name,)))
        else:
            out.append((prefix + (name,), field))
    return out


LEAVES = _leaf_fields(receipts.RECORD)


@fuzzlib.budget(5)
@hypothesis.given(st.data())
def test_byte_mutations(signed: tuple[bytes, policy_mod.TrustPolicy],
                        data: st.DataObject) -> None:
    record, policy = signed
    mutated = data.draw(fuzzlib.mutated_bytes(record))
    ok, _ = fuzzlib.refused_or_ok('receipts.byte_mutation', _verify,
                                  mutated, policy)
    if ok:
        _accepted(mutated, record)


@fuzzlib.budget(5)
@hypothesis.given(st.data())
def test_structural_mutations(signed: tuple[bytes,
                                            policy_mod.TrustPolicy],
                              data: st.DataObject) -> None:
    record, policy = signed
    mutated = fuzzlib.dumps_any(data.draw(
        fuzzlib.mutated_json(json.loads(record))))
    ok, _ = fuzzlib.refused_or_ok('receipts.structural', _verify, mutated,
                                  policy)
    if ok:
        _accepted(mutated, record)


@fuzzlib.budget(6)
@hypothesis.given(st.sampled_from(LEAVES), st.data())
def test_field_forgery(signed: tuple[bytes, policy_mod.TrustPolicy],
                       leaf: tuple[tuple[str, ...], wire.Field],
                       data: st.DataObject) -> None:
    """Any single field replaced by another well-formed value (the
    parser accepts it; the verifier must not)."""
    record, policy = signed
    path, field = leaf
    decoded = wire.decode(record, receipts.RECORD)
    new = data.draw(fuzzlib.field_values(field, path[-1], cap=600))
    forged = wire.encode(_set(decoded, path, new), receipts.RECORD)
    ok, exc = fuzzlib.refused_or_ok('receipts.forgery', _verify, forged,
                                    policy)
    if ok:
        _accepted(forged, record)
    else:
        assert isinstance(exc, (errors.ReceiptInvalid,
                                errors.MalformedMessage)), repr(exc)


@fuzzlib.budget(2)
@hypothesis.given(st.sampled_from(('installed', 'committed')), st.data())
def test_status_and_random(signed: tuple[bytes, policy_mod.TrustPolicy],
                           status: str, data: st.DataObject) -> None:
    record, policy = signed
    ok, _ = fuzzlib.refused_or_ok('receipts.status', receipts.verify_record,
                                  record, policy, status)
    assert ok == (status == 'committed')
    junk = data.draw(st.binary(max_size=300))
    ok, _ = fuzzlib.refused_or_ok('receipts.random', _verify, junk, policy)
    assert not ok


def test_record_with_bad_certificate_version_is_refused(
        signed: tuple[bytes, policy_mod.TrustPolicy]) -> None:
    record, policy = signed
    decoded = wire.decode(record, receipts.RECORD)
    cert = decoded['dest']['identity']['ek_certificate']
    decoded['dest']['identity']['ek_certificate'] = cert.replace(
        b'\xa0\x03\x02\x01\x02', b'\xa0\x03\x02\x01\x0a', 1)
    with pytest.raises(errors.ReceiptInvalid):
        receipts.verify_record(wire.encode(decoded, receipts.RECORD),
                               policy)


def test_record_with_altered_ek_attributes_is_refused(
        signed: tuple[bytes, policy_mod.TrustPolicy]) -> None:
    record, policy = signed
    decoded = wire.decode(record, receipts.RECORD)
    ek = bytearray(decoded['dest']['identity']['ek_public'])
    ek[9] ^= 0x40  # objectAttributes.userWithAuth
    decoded['dest']['identity']['ek_public'] = bytes(ek)
    with pytest.raises(errors.ReceiptInvalid):
        receipts.verify_record(wire.encode(decoded, receipts.RECORD),
                               policy)
