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

"""``make demo`` runs end to end (in-process transport) and passes."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_passes() -> None:
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, '-m', 'tools.demo'],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
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
