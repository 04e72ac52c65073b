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

"""The TPM micro-benchmark command runs and reports every operation."""

import json

import pytest

from tools.bench import tpm as tpm_bench

OPERATIONS = {'quote', 'verify_quote', 'certify', 'verify_binding_key',
              'wrap', 'unwrap', 'sign', 'verify_signature', 'seal',
              'unseal', 'verify_identity', 'make_credential',
              'activate_credential'}


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert tpm_bench.main(['--runs', '3', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['runs'] == 3
    assert report['leaked_handles'] == 0
    assert set(report['results']) == OPERATIONS
    for name, r in report['results'].items():
        assert r['runs'] == 3, name
        assert r['side'] in ('tpm', 'software')
        assert 0 < r['min_ms'] <= r['median_ms'] <= r['p95_ms'] \
            <= r['max_ms'], name
    # Every command counted at the TCTI: set-up, warm-up, 3 runs, window.
    assert report['tpm_commands']['commands']['Quote']['count'] >= 6
    quote = report['results']['quote']
    assert quote['commands'] == {'Quote': 1, 'PCR_Read': 1}
    # Resident signing key, binding key and policy session.
    assert report['results']['sign']['commands'] == {'Sign': 1}
    assert report['results']['unwrap']['commands'] == {'PolicyPCR': 1,
                                                       'ECDH_ZGen': 1}
    assert 0 < quote['projected_ms']['ftpm'] < \
        quote['projected_ms']['dtpm_slow']
    assert 'commands' not in report['results']['wrap']


def test_table() -> None:
    table = tpm_bench.format_table({
        'tpm': 'x', 'runs': 1, 'leaked_handles': 0,
        'results': {'quote': {'side': 'tpm', 'median_ms': 1.0,
                              'p95_ms': 2.0, 'min_ms': 0.5,
                              'max_ms': 2.0, 'commands': {'Quote': 1},
                              'projected_ms': {'dtpm_slow': 75.0,
                                               'ftpm': 10.7}}}})
    assert 'quote' in table and '1.000' in table
    assert 'dtpm_slow ms' in table and '75' in table


def test_rejects_zero_runs() -> None:
    with pytest.raises(SystemExit):
        tpm_bench.main(['--runs', '0'])
