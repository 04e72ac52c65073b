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

"""Trust policy parsing, schema errors and rule violations (no TPM)."""

import datetime
import hashlib
import json
import pathlib
import typing as ty

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import oid
import pytest

from nova_vtpm_migration import exception
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import policy as policy_mod

ZERO = bytes(32)
ONE = b'\x01' * 32


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, 'test')])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope='module')
def ca_pem() -> str:
    return _ca_pem()


def _doc(ca_pem: str, **over: ty.Any) -> dict[str, ty.Any]:
    doc = policy_mod.TrustPolicy.document(
        [ca_pem], [('fw1', {0: ZERO, 7: ZERO}), ('fw2', {0: ONE, 7: ZERO})],
        attestation_ca_pems=[ca_pem])
    doc.update(over)
    return doc


def test_valid_document(ca_pem: str) -> None:
    pol = policy_mod.TrustPolicy.from_dict(_doc(ca_pem))
    assert pol.pcr_selection == (0, 7)
    assert len(pol.golden_sets) == 2 and pol.ek_fingerprints is None
    assert len(pol.ek_ca_certificates) == 1
    pol.check_pcr_values({0: ZERO, 7: ZERO})
    pol.check_pcr_values({0: ONE, 7: ZERO})
    pol.check_ek_fingerprint('ab' * 32)
    pol.check_evidence_age(10)


def test_load_file_with_relative_bundle(ca_pem: str,
                                        tmp_path: pathlib.Path) -> None:
    (tmp_path / 'cas.pem').write_text(ca_pem)
    path = tmp_path / 'policy.json'
    path.write_text(json.dumps(_doc(ca_pem, ek_ca_bundle='cas.pem',
                                    ek_fingerprints=['AB' * 32],
                                    max_evidence_age=5)))
    pol = policy_mod.TrustPolicy.load(path)
    assert pol.ek_fingerprints == frozenset({'ab' * 32})
    assert pol.max_evidence_age == 5


@pytest.mark.parametrize('change, match', [
    ({'version': 3}, 'version'),
    ({'attestation_ca_bundle': ['not a pem']}, 'attestation_ca_bundle'),
    ({'crls': ['not a crl']}, 'crls'),
    ({'min_firmware_version': -1}, 'min_firmware_version'),
    ({'pcr_bank': 'sha1'}, 'pcr_bank'),
    ({'surprise': 1}, 'surprise'),
    ({'pcr_selection': [0, 24]}, 'pcr_selection/1'),
    ({'pcr_selection': []}, 'pcr_selection'),
    ({'golden_sets': []}, 'golden_sets'),
    ({'golden_sets': [{'name': 'x', 'pcrs': {'0': 'zz'}}]}, 'golden_sets'),
    ({'golden_sets': [{'name': 'x', 'pcrs': {'0': ZERO.hex()}}]},
     'covers PCRs'),
    ({'ek_fingerprints': ['abc']}, 'ek_fingerprints'),
    ({'ek_fingerprints': []}, 'ek_fingerprints'),
    ({'ek_ca_bundle': ['not a pem']}, 'ek_ca_bundle'),
    ({'ek_ca_bundle': '/nonexistent/cas.pem'}, 'cannot read'),
    ({'max_evidence_age': 0}, 'max_evidence_age'),
])
def test_invalid_documents(ca_pem: str, change: dict[str, ty.Any],
                           match: str) -> None:
    with pytest.raises(exception.PolicyFileError, match=match):
        policy_mod.TrustPolicy.from_dict(_doc(ca_pem, **change))


@pytest.mark.parametrize('key', ['golden_sets', 'attestation_ca_bundle'])
def test_missing_required_key(ca_pem: str, key: str) -> None:
    doc = _doc(ca_pem)
    del doc[key]
    with pytest.raises(exception.PolicyFileError, match=key):
        policy_mod.TrustPolicy.from_dict(doc)


def test_version_1_is_refused_with_the_upgrade_command(ca_pem: str) -> None:
    old = _doc(ca_pem, version=1)
    del old['attestation_ca_bundle']
    with pytest.raises(exception.PolicyFileError,
                       match='nova-vtpm-migration policy upgrade'):
        policy_mod.TrustPolicy.from_dict(old)
    new = policy_mod.upgrade(old, [ca_pem])
    pol = policy_mod.TrustPolicy.from_dict(new)
    assert pol.version == 2 and len(pol.attestation_ca_certificates) == 1
    assert [g.name for g in pol.golden_sets] == ['fw1', 'fw2']
    with pytest.raises(exception.PolicyFileError, match='version 1'):
        policy_mod.upgrade(new, [ca_pem])
    with pytest.raises(exception.PolicyFileError, match='no attestation'):
        policy_mod.upgrade(old, [])


def test_minimum_firmware_version(ca_pem: str) -> None:
    pol = policy_mod.TrustPolicy.from_dict(_doc(
        ca_pem, min_firmware_version=0x20191023))
    pol.check_firmware_version(0x20191023)
    with pytest.raises(errors.PolicyViolation) as exc:
        pol.check_firmware_version(0x20191022)
    assert exc.value.rule == 'min_firmware_version'
    policy_mod.TrustPolicy.from_dict(_doc(ca_pem)).check_firmware_version(0)


def test_unreadable_or_not_json(tmp_path: pathlib.Path) -> None:
    with pytest.raises(exception.PolicyFileError, match='missing.json'):
        policy_mod.TrustPolicy.load(tmp_path / 'missing.json')
    bad = tmp_path / 'bad.json'
    bad.write_text('{nope')
    with pytest.raises(exception.PolicyFileError, match='not JSON'):
        policy_mod.TrustPolicy.load(bad)


def test_each_violation_names_rule_expected_actual(ca_pem: str) -> None:
    pol = policy_mod.TrustPolicy.from_dict(_doc(ca_pem))
    bad = {0: b'\x02' * 32, 7: b'\x03' * 32}
    violations = pol.pcr_violations(bad)
    assert [v.rule for v in violations] == ['pcr[0]', 'pcr[7]']
    assert (b'\x03' * 32).hex() in str(violations[1])
    assert ZERO.hex() in str(violations[1])
    with pytest.raises(errors.PolicyViolation) as exc:
        pol.check_pcr_values(bad)
    assert exc.value.rule == 'pcr[0]'
    # Mixing two golden sets is not allowed either.
    with pytest.raises(errors.PolicyViolation):
        pol.check_pcr_values({0: ONE, 7: ONE})
    with pytest.raises(errors.PolicyViolation) as exc:
        pol.check_pcr_values({0: ZERO})
    assert exc.value.rule == 'pcr_selection'


def test_fingerprint_and_age_rules(ca_pem: str) -> None:
    pol = policy_mod.TrustPolicy.from_dict(_doc(
        ca_pem, ek_fingerprints=['aa' * 32], max_evidence_age=30))
    pol.check_ek_fingerprint('AA' * 32)
    with pytest.raises(errors.PolicyViolation) as exc:
        pol.check_ek_fingerprint('bb' * 32)
    assert exc.value.rule == 'ek_fingerprints' and 'bb' * 32 in str(
        exc.value)
    with pytest.raises(errors.PolicyViolation) as exc:
        pol.check_evidence_age(31)
    assert exc.value.rule == 'max_evidence_age'
    assert '30' in str(exc.value) and '31' in str(exc.value)


def test_pcr_policy_digest_layout() -> None:
    values = {7: ONE, 0: ZERO}
    sel = policy_mod.pcr_selection_bytes([0, 7])
    assert sel == bytes.fromhex('00000001' '000b' '03' '810000')
    composite = hashlib.sha256(ZERO + ONE).digest()
    assert policy_mod.pcr_composite_digest(values) == composite
    assert policy_mod.pcr_policy_digest(values) == hashlib.sha256(
        ZERO + bytes.fromhex('0000017f') + sel + composite).digest()
    with pytest.raises(ValueError):
        policy_mod.pcr_selection_bytes([24])
