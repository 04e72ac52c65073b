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

"""``make demo`` where libvirt daemons cannot run: it says why and runs the
data-plane demo (in-process transport), which passes.

The launcher runs without ``CAP_SYS_ADMIN`` in its bounding set
(``setpriv``), so that ``unshare --mount`` is refused as on a machine
without mount-namespace rights. ``tests/nova/real_libvirt/
test_demo_scenario.py`` runs the real-libvirt demo itself.
"""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_falls_back_to_the_data_plane_and_passes() -> None:
    if shutil.which('setpriv') is None:
        pytest.skip('setpriv (util-linux) is not installed')
    proc = subprocess.run(  # noqa: S603 - fixed argv
        ['setpriv', '--bounding-set', '-sys_admin', '--inh-caps',
         '-sys_admin', '--', sys.executable, '-m', 'tools.demo_launcher'],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    first = out.splitlines()[:2]
    assert first[0].startswith(
        'make demo: real libvirt daemons cannot run on this machine: '
        'cannot create a private mount namespace'), first
    assert first[1].startswith('make demo: running the data-plane demo'), \
        first
    assert 'ALL CHECKS PASSED' in out
    for claim in ('migration A -> B committed',
                  'vTPM secret never on the wire',
                  'record verifies offline',
                  'NV data, persistent key and PCRs equal',
                  'migration to C refused',
                  'guest keeps running on host B'):
        assert f'[PASS] {claim}' in out
    assert '[FAIL]' not in out
    assert 'Traceback' not in proc.stderr
