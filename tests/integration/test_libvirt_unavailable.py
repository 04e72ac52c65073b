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

"""Without mount-namespace rights the real-libvirt tiers skip, saying why.

Each tier runs in a child process without ``CAP_SYS_ADMIN`` in its
bounding set (``setpriv``), so that ``unshare --mount`` is refused as on a
machine without those rights; its tests must be skipped with that reason,
not fail. (``test_demo.py`` checks ``make demo``'s fallback the same way.)
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
REASON = 'cannot create a private mount namespace for libvirtd'


def _without_sys_admin(*argv: str) -> subprocess.CompletedProcess[str]:
    if shutil.which('setpriv') is None:
        pytest.skip('setpriv (util-linux) is not installed')
    return subprocess.run(  # noqa: S603 - fixed argv
        ['setpriv', '--bounding-set', '-sys_admin', '--inh-caps',
         '-sys_admin', '--', sys.executable, *argv],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
        env=dict(os.environ, PYTHONWARNINGS='ignore'))


def test_pytest_tier_skips_with_the_reason() -> None:
    proc = _without_sys_admin(
        '-m', 'pytest', '-p', 'no:cacheprovider', '-q', '-rs',
        'tests/reallibvirt/test_support.py::'
        'test_daemons_are_isolated_and_leave_nothing')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert '1 skipped' in proc.stdout, proc.stdout[-3000:]
    assert REASON in proc.stdout, proc.stdout[-3000:]


def test_nova_tier_skips_with_the_reason() -> None:
    proc = _without_sys_admin(
        '-m', 'unittest', '-v',
        'tests.nova.real_libvirt.test_upstream_driver')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"skipped '{REASON}" in proc.stderr, proc.stderr[-3000:]
    assert 'OK (skipped=1)' in proc.stderr, proc.stderr[-3000:]
