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

"""The report section of ``make bench`` part 2 (live migration, secured
vs plain): its shape, its ratios and how it is rendered."""

import json

import pytest

from tools.bench import live_migration as lm
from tools.bench import report as report_mod
from tools.bench import targets


def _samples(runs: int) -> lm.Samples:
    plain = [{'end_to_end_ms': 3000.0 + i, 'migration_ms': 2500.0 + i,
              'downtime_ms': 40.0 + i} for i in range(runs)]
    secured = [{'end_to_end_ms': 3400.0 + i, 'migration_ms': 2600.0 + i,
                'downtime_ms': 44.0 + i, 'phase1_ms': 150.0 + 10 * i,
                'phase2_ms': 100.0, 'commit_ms': 40.0}
               for i in range(runs)]
    return {'plain': plain, 'secured': secured}


def _order(runs: int) -> list[list[str]]:
    return [list(lm.rotation(i)) for i in range(runs)]


def test_rotation_alternates_which_mode_goes_first() -> None:
    orders = [lm.rotation(i) for i in range(4)]
    assert orders == [('plain', 'secured'), ('secured', 'plain')] * 2


def test_section_shape() -> None:
    section = lm.build(_samples(5), _order(5), lm.SOURCE_LIBVIRT)
    assert section['source'] == 'libvirt'
    assert section['unavailable_reason'] is None
    assert section['runs'] == 5
    assert section['order'] == _order(5)
    assert set(section['plain']) == set(lm.COMMON_METRICS)
    assert set(section['secured']) == (set(lm.COMMON_METRICS)
                                       | set(lm.SECURED_METRICS))
    for mode in lm.MODES:
        for name, summary in section[mode].items():
            assert set(summary) == {'n', 'median', 'p95', 'minimum',
                                    'maximum'}, name
            assert summary['n'] == 5
    assert section['plain']['end_to_end_ms'] == {
        'n': 5, 'median': 3002.0, 'p95': 3004.0, 'minimum': 3000.0,
        'maximum': 3004.0}
    assert section['secured']['phase1_ms']['maximum'] == 190.0
    assert set(section['ratio']) == set(lm.COMMON_METRICS)
    assert section['ratio']['downtime_ms'] == pytest.approx(46.0 / 42.0)
    assert section['samples'] == _samples(5)
    # The report is JSON.
    assert json.loads(json.dumps(section)) == section


def test_dataplane_section_says_why() -> None:
    section = lm.build(_samples(2), _order(2), lm.SOURCE_DATAPLANE,
                       'cannot create a private mount namespace')
    assert section['source'] == 'dataplane'
    assert section['unavailable_reason'] == ('cannot create a private '
                                             'mount namespace')


@pytest.mark.parametrize('samples', [
    {'plain': [], 'secured': _samples(1)['secured']},
    {'plain': _samples(1)['plain']},
    {'plain': [{'end_to_end_ms': 1.0}], 'secured': _samples(1)['secured']},
    {'plain': _samples(2)['plain'],
     'secured': [_samples(1)['secured'][0], _samples(1)['plain'][0]]},
])
def test_incomplete_samples_are_refused(samples: lm.Samples) -> None:
    with pytest.raises(ValueError):
        lm.build(samples, [], lm.SOURCE_LIBVIRT)


def _report(section: dict) -> dict:
    return {'libvirt_migration': section, 'latency_profile': None}


def test_markdown_on_libvirt() -> None:
    lines = report_mod._live_migration(_report(
        lm.build(_samples(3), _order(3), lm.SOURCE_LIBVIRT)))
    text = '\n'.join(lines)
    assert '## Live migration through Nova on real libvirt' in text
    assert '| end-to-end ms | 3001.0 [3000.0-3002.0] | 3401.0 ' \
           '[3400.0-3402.0] | 1.13 |' in text
    assert '| libvirt downtime ms (domjobinfo) |' in text
    assert '| phase 1 ms (attestation) | - | 160.0 [150.0-170.0] | - |' \
        in text
    assert "cannot run" not in text


def test_markdown_on_the_dataplane() -> None:
    lines = report_mod._live_migration(_report(lm.build(
        _samples(2), _order(2), lm.SOURCE_DATAPLANE, 'no unshare')))
    text = '\n'.join(lines)
    assert 'Real libvirt daemons cannot run on this machine: no unshare.' \
        in text
    assert '| QEMU downtime ms |' in text


def test_downtime_target_reads_the_section() -> None:
    section = lm.build(_samples(3), _order(3), lm.SOURCE_LIBVIRT)
    rows = targets.evaluate({
        'libvirt_migration': section,
        'protocol': {'phase1+2': {'ratio_to_tpm': 1.0,
                                  'wall_ms': {'median': 1.0}}}})
    row = next(r for r in rows
               if r['key'] == 'libvirt_migration.ratio.downtime_ms')
    assert row['measured'] == pytest.approx(section['ratio']['downtime_ms'])
    assert 'libvirt' in row['name']
