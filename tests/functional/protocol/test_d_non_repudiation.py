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


"""Requirement D: source non-repudiation (signed manifests and receipts,
verifiable offline from public evidence and the policy alone)."""

import dataclasses
import datetime
import typing as ty
import uuid

import pytest

from nova_vtpm_migration.protocol import errors
from nova_vtpm_migration.protocol import handshake
from nova_vtpm_migration.protocol import messages
from nova_vtpm_migration.protocol import names
from nova_vtpm_migration.protocol import receipts
from nova_vtpm_migration.protocol import wire
from nova_vtpm_migration.tpm import akcert
from nova_vtpm_migration.tpm import policy as policy_mod
from tests.functional import swtpm_fixtures
from tests.functional.protocol import conftest
from tests.support import attestation
from tests.support import swtpm


@pytest.fixture
def committed(cluster: conftest.Cluster) -> dict[str, ty.Any]:
    src = cluster.nodes['src']
    inst, _ = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst')
    src.engine.commit(handle.migration_id)
    record = src.engine.record(handle.migration_id)
    assert record is not None
    return wire.decode(record, receipts.RECORD)


def _encode(record: dict[str, ty.Any]) -> bytes:
    return wire.encode(record, receipts.RECORD)


def test_d_record_verifies_offline(committed: dict[str, ty.Any],
                                   trust_policy: policy_mod.TrustPolicy
                                   ) -> None:
    # Only the record bytes and the policy: no engine, journal or TPM.
    decoded = receipts.verify_record(_encode(committed), trust_policy)
    assert decoded['receipt']['status'] == 'committed'
    assert decoded['manifest']['migration_id'] == \
        decoded['receipt']['migration_id']


@pytest.mark.parametrize('part,field', [
    ('manifest', 'migration_id'), ('manifest', 'instance_uuid'),
    ('manifest', 'dest_nonce'), ('manifest', 'ciphertext_hash'),
    ('manifest', 'created_at'), ('receipt', 'status'),
    ('receipt', 'source_nonce'), ('receipt', 'manifest_hash'),
    ('receipt', 'instance_uuid'), ('manifest_signature', None),
    ('receipt_signature', None)])
def test_d_altered_record_refused(committed: dict[str, ty.Any],
                                  trust_policy: policy_mod.TrustPolicy,
                                  part: str, field: str | None) -> None:
    record = dict(committed)
    if field is None:
        sig = bytearray(record[part])
        sig[-1] ^= 1
        record[part] = bytes(sig)
    else:
        body = dict(record[part])
        value = body[field]
        if isinstance(value, bytes):
            body[field] = bytes([value[0] ^ 1]) + value[1:]
        elif isinstance(value, int):
            body[field] = value + 1
        elif field == 'status':
            body[field] = 'installed'
        else:
            body[field] = str(uuid.uuid4())
        record[part] = body
    with pytest.raises(errors.ReceiptInvalid):
        receipts.verify_record(_encode(record), trust_policy)


def _local(hosts: dict[str, swtpm_fixtures.SimHost],
           name: str) -> handshake.LocalEvidence:
    """A host's evidence, with its AK certificate for its name."""
    sim = hosts[name]
    return handshake.local_evidence(sim.tpm, attestation.default_ca().enroll(
        sim.tpm, name, sim.swtpm.ca.bundle_pem()), name)


def test_d_signer_evidence_swapped_refused(
        committed: dict[str, ty.Any], trust_policy: policy_mod.TrustPolicy,
        hosts: dict[str, swtpm_fixtures.SimHost]) -> None:
    other = _local(hosts, 'other')
    for side in ('source', 'dest'):
        record = dict(committed, **{side: receipts.signer_evidence(
            other.identity, other.signing_key)})
        with pytest.raises(errors.ReceiptInvalid):
            receipts.verify_record(_encode(record), trust_policy)


def test_d_untrusted_policy_refuses(committed: dict[str, ty.Any],
                                    untrusted_ca: swtpm.SwtpmCA,  # noqa: F811
                                    trust_policy: policy_mod.TrustPolicy
                                    ) -> None:
    foreign = dataclasses.replace(trust_policy, ek_ca_certificates=tuple(
        attestation.golden_policy(
            untrusted_ca.bundle_pem(), {i: b'\0' * 32 for i in
                                        trust_policy.pcr_selection}
        ).ek_ca_certificates))
    with pytest.raises(errors.ReceiptInvalid):
        receipts.verify_record(_encode(committed), foreign)


def test_d_forged_manifest_refused(committed: dict[str, ty.Any],
                                   trust_policy: policy_mod.TrustPolicy,
                                   hosts: dict[str, swtpm_fixtures.SimHost]
                                   ) -> None:
    # Another trusted host signs a manifest in the source's name.
    other = hosts['other'].tpm
    manifest = committed['manifest']
    forged_sig = receipts.sign_manifest(other, manifest)
    ev = _local(hosts, 'other')
    # Its TPM is certified for another host than the manifest's source.
    with pytest.raises(errors.ReceiptInvalid, match='HostBindingError'):
        receipts.verify_manifest(manifest, forged_sig,
                                 receipts.signer_evidence(ev.identity,
                                                          ev.signing_key),
                                 trust_policy)
    with pytest.raises(errors.ReceiptInvalid, match='SignatureInvalid'):
        receipts.verify_manifest(manifest, forged_sig, committed['source'],
                                 trust_policy)


def test_d_source_cannot_claim_a_migration_it_did_not_start(
        committed: dict[str, ty.Any], trust_policy: policy_mod.TrustPolicy,
        hosts: dict[str, swtpm_fixtures.SimHost]) -> None:
    # The source signs (with its real TPM key) a manifest of a migration
    # that never happened and pairs it with a genuine receipt: refused,
    # the destination never acknowledged it.
    src = hosts['src'].tpm
    fake = dict(committed['manifest'], migration_id=str(uuid.uuid4()),
                instance_uuid=str(uuid.uuid4()))
    record = dict(committed, manifest=fake,
                  manifest_signature=receipts.sign_manifest(src, fake))
    receipts.verify_manifest(fake, record['manifest_signature'],
                             committed['source'], trust_policy)
    with pytest.raises(errors.ReceiptInvalid, match='differ|acknowledge'):
        receipts.verify_record(_encode(record), trust_policy)
    # Nor can it re-attribute the genuine migration to another host.
    assert committed['manifest']['source_ak_name'] == names.object_name(
        committed['source']['identity']['ak_public'])


def test_d_ak_not_bound_to_the_ek_in_a_record_is_refused(
        committed: dict[str, ty.Any], trust_policy: policy_mod.TrustPolicy,
        hosts: dict[str, swtpm_fixtures.SimHost]) -> None:
    """A record whose signer's AK (and signatures) stay but whose EK is
    another genuine TPM's: offline, the AK certificate ties the AK to its
    own EK, so the record does not verify (the source cannot deny a
    genuine record by claiming such a forgery is as good)."""
    other = hosts['other'].tpm.identity()
    for side in ('source', 'dest'):
        signer = dict(committed[side])
        signer['identity'] = dict(signer['identity'],
                                  ek_certificate=other.ek_certificate,
                                  ek_public=other.ek_public)
        with pytest.raises(errors.ReceiptInvalid,
                           match='another AK or EK certificate'):
            receipts.verify_record(_encode(dict(committed,
                                                **{side: signer})),
                                   trust_policy)


def test_d_ak_certificate_from_another_ca_is_refused(
        committed: dict[str, ty.Any],
        trust_policy: policy_mod.TrustPolicy) -> None:
    """A (software) AK certified by a CA the policy does not trust."""
    rogue_key, rogue_cert = akcert.make_ca('test attestation CA')
    signer = dict(committed['source'])
    identity = messages.identity_from_wire(signer['identity'])
    forged = akcert.issue(rogue_key, rogue_cert, identity, 'src')
    signer['identity'] = dict(signer['identity'], ak_certificate=forged)
    with pytest.raises(errors.ReceiptInvalid, match='attestation CA'):
        receipts.verify_record(_encode(dict(committed, source=signer)),
                               trust_policy)


def test_d_record_is_judged_at_the_time_it_was_made(
        committed: dict[str, ty.Any],
        trust_policy: policy_mod.TrustPolicy) -> None:
    """Years later its certificates have expired: judged now it fails,
    judged at the time it was made (the default) it verifies."""
    later = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(errors.ReceiptInvalid, match='chain'):
        receipts.verify_record(_encode(committed), trust_policy, at=later)
    receipts.verify_record(_encode(committed), trust_policy)
    made = receipts.record_time(committed)
    assert abs((made - datetime.datetime.now(datetime.UTC)).total_seconds()
               ) < 600


def test_d_destination_keeps_a_complete_record(
        cluster: conftest.Cluster,
        trust_policy: policy_mod.TrustPolicy) -> None:
    """The destination keeps what the source signed and the source's
    evidence: its own record verifies offline too."""
    src, dst = cluster.nodes['src'], cluster.nodes['dst']
    inst, _ = conftest.new_instance(src)
    handle = src.engine.migrate_key(inst, 'dst')
    src.engine.commit(handle.migration_id)
    record = dst.engine.record(handle.migration_id)
    assert record is not None
    decoded = receipts.verify_record(record, trust_policy)
    assert decoded['manifest']['source_host'] == 'src'
    assert decoded['receipt']['dest_host'] == 'dst'
    assert record == src.engine.record(handle.migration_id)
