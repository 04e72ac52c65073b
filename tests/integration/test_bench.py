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

"""``make bench`` runs in a short mode and writes its report and plots."""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_short_run(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, '-m', 'tools.bench', '--runs',
         '2', '--levels', '1,2', '--skip-rss', '--output', str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / 'report.json').read_text())
    for phase in ('phase1', 'phase2', 'commit', 'phase1+2'):
        row = report['protocol'][phase]
        assert row['wall_ms']['n'] == 2
        # The TPM floor is part of the wall time, never more than it.
        assert 0 < row['tpm_ms']['median'] <= row['wall_ms']['median']
    # Every command of one migration, both hosts, counted at the TCTI.
    cmds = report['tpm_commands']
    for kind in ('cached', 'fresh', 'commit'):
        assert cmds[kind]['total'] == sum(
            c['count'] for c in cmds[kind]['commands'].values()) > 0
    assert cmds['fresh']['total'] == cmds['cached']['total'] + sum(
        cmds['phases']['phase1'][side]['total']
        for side in ('source', 'destination'))
    # One quote per fresh handshake: the initiator's. The responder's
    # quote covers its epoch and is made once for many handshakes.
    assert cmds['fresh']['commands']['Quote']['count'] == 1
    assert 'Quote' not in cmds['phases']['phase1']['destination'][
        'commands']
    assert cmds['phases']['phase2']['destination']['commands'][
        'ECDH_ZGen']['count'] == 1
    proj = report['projection']
    for profile in ('dtpm_slow', 'ftpm'):
        assert 0 < proj[profile]['cached_ms'] < proj[profile]['fresh_ms']
        assert proj[profile]['sources']
    assert proj['ftpm']['fresh_ms'] < proj['dtpm_slow']['fresh_ms']
    assert report['qemu']['secured']['downtime_ms']['n'] == 2
    assert set(report['table1']) == {'1', '2'}
    assert all(col[m]['failed'] == 0 for col in report['table1'].values()
               for m in ('plain', 'secured'))
    rest = report['secret_at_rest']
    assert rest['open']['n'] == 2
    assert 0 < rest['open_tpm_ms']['median'] <= rest['open']['median']
    md = (tmp_path / 'report.md').read_text()
    assert '## vTPM secret sealed at rest' in md
    assert '## TPM commands of one migration' in md
    assert '| dtpm_slow: ' in md and '**wolftpm**' in md
    assert "## The paper's Table I" in md and '| S / P |' in md
    for png in ('phases.png', 'table1.png'):
        assert (tmp_path / png).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
