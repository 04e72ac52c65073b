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

"""EK certificates in the low and high NV ranges (real swtpm).

``swtpm_setup --create-ek-cert`` writes an RSA-2048 EK certificate at
0x01C00002 (low range, L-1) and an ECC P-384 one at 0x01C00016 (high range,
H-3), and persists both EKs (0x81010001, 0x81010016).
"""

import pathlib

import pytest
import tpm2_pytss
from tpm2_pytss import constants

from nova_vtpm_migration.tpm import ek as ek_mod
from nova_vtpm_migration.tpm import errors
from nova_vtpm_migration.tpm import host as host_mod
from nova_vtpm_migration.tpm import objects
from nova_vtpm_migration.tpm import verify
from tests.functional.swtpm_fixtures import PCRS
from tests.functional.swtpm_fixtures import SimHost
from tests.support import attestation

_RSA_CERT = 0x01C00002


def _ek_curve(ident_ek_public: bytes) -> str:
    pub = objects.unmarshal_public(ident_ek_public).publicArea
    if pub.type == constants.TPM2_ALG.RSA:
        return f'RSA-{int(pub.parameters.rsaDetail.keyBits)}'
    return str(constants.TPM2_ECC(pub.parameters.eccDetail.curveID))


def _undefine(sim: SimHost, index: int) -> None:
    """Remove an NV index the platform created (as a TPM whose vendor
    provisioned only some EK certificates)."""
    sim.ctx.close()
    with tpm2_pytss.ESAPI(sim.swtpm.tcti) as e:
        e.nv_undefine_space(e.tr_from_tpmpublic(index),
                            constants.ESYS_TR.PLATFORM)


def test_config_order_decides_when_both_exist(
        swtpm_factory: object, tmp_path: pathlib.Path) -> None:
    make = swtpm_factory  # type: ignore[assignment]
    ecc_first = host_mod.HostTpm(
        make('ecc').ctx, tmp_path / 'a', pcr_selection=PCRS,  # type: ignore
        ek_types=('EK-ECC256', 'EK-HIGH-ECC384', 'EK-RSA2048'))
    rsa_first = host_mod.HostTpm(
        make('rsa').ctx, tmp_path / 'b', pcr_selection=PCRS,  # type: ignore
        ek_types=('EK-RSA2048', 'H-3'))
    assert _ek_curve(ecc_first.identity().ek_public) == 'nist_p384'
    assert _ek_curve(rsa_first.identity().ek_public) == 'RSA-2048'
    # The default prefers ECC, low range (swtpm has no L-2 certificate).
    assert host_mod.DEFAULT_EK_TYPES == ('EK-ECC256', 'EK-RSA2048')


def test_only_a_high_range_ecc_certificate(
        swtpm_factory: object, tmp_path: pathlib.Path) -> None:
    sim: SimHost = swtpm_factory('high')  # type: ignore[operator]
    _undefine(sim, _RSA_CERT)
    low_only = host_mod.HostTpm(sim.ctx, tmp_path / 'low',
                                pcr_selection=PCRS)
    with pytest.raises(errors.EkCertificateError,
                       match='EK-ECC256, EK-RSA2048'):
        low_only.identity()
    tpm = host_mod.HostTpm(
        sim.ctx, tmp_path / 'state', pcr_selection=PCRS,
        ek_types=('EK-ECC256', 'EK-RSA2048', 'EK-HIGH-ECC384'))
    ident = tpm.identity()
    assert _ek_curve(ident.ek_public) == 'nist_p384'
    ek_mod.check_matches_certificate(
        ident.ek_certificate, objects.unmarshal_public(ident.ek_public))
    # A peer (or the attestation CA) accepts the high-range EK: its public
    # area is the TCG H-3 template.
    verify.verify_ek_identity(ident, attestation.golden_policy(
        sim.swtpm.ca.bundle_pem(), tpm.pcr_values()))
    # The AK was created under the P-384 EK (password session: the
    # high-range template sets userWithAuth) and quotes.
    assert tpm.quote(b'n').attest
    # ActivateCredential uses the EK swtpm_setup persisted at 0x81010016
    # (no CreatePrimary).
    with sim.ctx.meter.window() as w:
        secret = tpm.activate_credential(
            verify.make_credential(ident, b's' * 32))
    assert secret == b's' * 32
    print('activate with the H-3 EK:', w.result.class_counts)
    assert 'CreatePrimary' not in w.result.counts
    assert w.result.class_counts['ActivateCredential/ECC'] == 1
    assert 'PolicySecret' not in w.result.counts


def test_ek_types_are_validated(tmp_path: pathlib.Path,
                                host_pair: tuple[SimHost, SimHost]) -> None:
    a, _ = host_pair
    assert ek_mod.canonical_type('H-3') == 'EK-HIGH-ECC384'
    assert ek_mod.canonical_type('l-1') == 'EK-RSA2048'
    with pytest.raises(ValueError, match='unsupported EK type'):
        host_mod.HostTpm(a.ctx, tmp_path, ek_types=('EK-DSA1024',))
    with pytest.raises(ValueError, match='unsupported EK type'):
        ek_mod.canonical_type('EK-HIGH-ECCSM2P256')
