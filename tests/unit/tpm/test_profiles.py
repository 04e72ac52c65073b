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

"""Hardware TPM latency profiles and projections (no TPM)."""

import pytest

from nova_vtpm_migration.tpm import profiles


@pytest.mark.parametrize('profile', list(profiles.PROFILES.values()),
                         ids=list(profiles.PROFILES))
def test_every_figure_names_a_known_source(
        profile: profiles.Profile) -> None:
    for cls, fig in [*profile.figures.items(), ('default', profile.default)]:
        assert fig.source in profiles.SOURCES, cls
        assert fig.ms > 0, cls
        assert fig.note, cls
    assert set(profile.sources()) <= set(profiles.SOURCES)


def test_published_figures() -> None:
    slow = profiles.DTPM_SLOW
    # wolfTPM's SLB9670 row, go-tpm-tools' fixed cost.
    assert slow.figure('Sign').ms == 69
    assert slow.figure('ECDH_ZGen').ms == 232
    assert slow.figure('CreatePrimary/RSA/2048').ms == 2196
    assert slow.figure('CreatePrimary/ECC/NIST_P256').ms == 231
    assert slow.figure('GetCapability').ms == 3


def test_most_specific_figure_wins() -> None:
    slow = profiles.DTPM_SLOW
    assert slow.figure('CreatePrimary/ECC/NIST_P384').ms == 520
    assert slow.figure('CreatePrimary/ECC/NIST_P521') == \
        slow.figure('CreatePrimary/ECC')
    assert slow.figure('StartAuthSession/salted').ms > \
        slow.figure('StartAuthSession/unsalted').ms
    assert slow.figure('NoSuchCommand') == slow.default
    assert slow.figure('Create/SYMCIPHER') == slow.default


def test_firmware_tpm_is_faster_everywhere() -> None:
    for cls, fig in profiles.DTPM_SLOW.figures.items():
        fast = profiles.FTPM.figure(cls).ms
        assert fast < fig.ms, cls
        assert fast >= 0.5, cls


def test_projection_sums_figures() -> None:
    histogram = {'Quote': 2, 'GetCapability': 8, 'ECDH_ZGen': 1,
                 'Unlisted': 1, 'Sign': 0}
    proj = profiles.project('dtpm_slow', histogram)
    assert proj.ms == pytest.approx(2 * 75 + 8 * 3 + 232 + 10)
    assert [r.command_class for r in proj.rows][:2] == ['ECDH_ZGen',
                                                        'Quote']
    assert 'Sign' not in proj.as_dict()['commands']
    assert proj.as_dict()['commands']['Unlisted']['source'] == 'assumption'
    assert profiles.project(profiles.FTPM, histogram).ms < proj.ms
    assert profiles.project('ftpm', {}).ms == 0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match='known: dtpm_slow, ftpm'):
        profiles.get('tpm9')
    with pytest.raises(ValueError, match='negative'):
        profiles.project('ftpm', {'Quote': -1})
