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

"""Model-check the commit/abort/recovery protocol with spin.

The model is ``nova_vtpm_migration/protocol/model/commit.pml``. Safety runs
with two crashes, one lost and one duplicated message and one unavailable
oracle answer; liveness (weak fairness) with one crash by default, two when
``VTPM_SPIN_FULL=1`` (about 40 s and 1 GiB). Every mutant, a deliberately
broken protocol selected by a ``-D`` macro of the same file, must make the
checker report an error: this proves the checks can fail.
"""

from collections.abc import Callable
import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / 'nova_vtpm_migration' / 'protocol' / 'model' / 'commit.pml'
FULL = os.environ.get('VTPM_SPIN_FULL') == '1'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which('spin') is None
                       or shutil.which('gcc') is None,
                       reason='spin and gcc are required (Debian: spin, gcc)'),
]


@dataclasses.dataclass
class PanResult:
    """What one pan run printed, parsed."""

    errors: int
    states: int
    depth: int
    seconds: float
    output: str


def _run(cmd: list[str], cwd: pathlib.Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0 and cmd[0] != './pan':
        raise AssertionError(f'{cmd} failed ({proc.returncode}):\n'
                             f'{proc.stdout}\n{proc.stderr}')
    return proc.stdout + proc.stderr


def check(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], *,
          liveness: bool, defines: tuple[str, ...] = ()) -> PanResult:
    """Generate, compile and run pan; return its parsed result.

    :param tmp_path: an empty working directory.
    :param capsys: pytest's capture, bypassed to print the figures.
    :param liveness: check the LTL property ``resolves`` for acceptance
        cycles under weak fairness instead of the safety assertions.
    :param defines: ``NAME`` or ``NAME=VALUE`` macros for the model.
    """
    shutil.copy(MODEL, tmp_path / 'commit.pml')
    spin_defs = [f'-D{d}' for d in defines]
    _run(['spin', *spin_defs, '-a', 'commit.pml'], tmp_path)
    cflags = ['-O2', '-DCOLLAPSE']
    if not liveness:
        cflags += ['-DSAFETY', '-DNOCLAIM']
    _run(['gcc', *cflags, '-o', 'pan', 'pan.c'], tmp_path)
    pan_args = ['-m100000', '-w24']
    if liveness:
        pan_args = ['-a', '-f', *pan_args]
    start = time.monotonic()
    out = _run(['./pan', *pan_args], tmp_path)
    seconds = time.monotonic() - start
    errors = re.search(r'errors: (\d+)', out)
    states = re.search(r'(\d+) states, stored', out)
    depth = re.search(r'depth reached (\d+)', out)
    assert errors and states and depth, out
    assert 'max search depth too small' not in out, out
    result = PanResult(int(errors.group(1)), int(states.group(1)),
                       int(depth.group(1)), seconds, out)
    kind = 'liveness' if liveness else 'safety'
    violation = f' [{_violation(out)}]' if result.errors else ''
    with capsys.disabled():
        print(f'\nspin {kind} {" ".join(defines) or "(protocol)"}: '
              f'errors={result.errors} states={result.states} '
              f'depth={result.depth} time={result.seconds:.1f}s'
              f'{violation}')
    return result


def _violation(out: str) -> str:
    found = re.search(r'pan:1: (.*)', out)
    return found.group(1) if found else '?'


def test_safety(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                record_property: Callable[[str, object], None]) -> None:
    result = check(tmp_path, capsys, liveness=False)
    record_property('spin_safety_states', result.states)
    assert result.errors == 0, result.output
    # the bounded faults make the state space non-trivial
    assert result.states > 100_000


def test_liveness(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                  record_property: Callable[[str, object], None]) -> None:
    defines = () if FULL else ('MAX_CRASH=1',)
    result = check(tmp_path, capsys, liveness=True, defines=defines)
    record_property('spin_liveness_states', result.states)
    assert 'acceptance   cycles \t+ (fairness enabled)' in result.output
    assert result.errors == 0, result.output


@pytest.mark.parametrize(('mutant', 'expected'), [
    # the source destroys its key before the commit is journaled: an abort
    # then leaves no key anywhere
    ('MUTANT_EARLY_DESTROY', 'assertion violated'),
    # the destination activates on restart in INSTALLED without asking S
    ('MUTANT_D_PRESUME_COMMIT', 'assertion violated'),
    # presumed abort while the guest may already run on D
    ('MUTANT_PRESUMED_ABORT', 'assertion violated'),
])
def test_safety_mutant_is_caught(tmp_path: pathlib.Path,
                                 capsys: pytest.CaptureFixture[str],
                                 mutant: str, expected: str) -> None:
    result = check(tmp_path, capsys, liveness=False, defines=(mutant,))
    assert result.errors >= 1, result.output
    assert expected in result.output


def test_liveness_mutant_is_caught(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the source sends commit/abort only once: one lost message leaves the
    # migration unresolved for ever
    result = check(tmp_path, capsys, liveness=True,
                   defines=('MUTANT_NO_RESEND', 'MAX_CRASH=1'))
    assert result.errors >= 1, result.output
    assert 'acceptance cycle' in result.output
