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

The model is ``tests/model/commit.pml``. Safety runs
with two crashes, one lost and one duplicated message and one unavailable
oracle answer; liveness (weak fairness) with one crash by default, two when
``VTPM_SPIN_FULL=1`` (one to three minutes, 600 MB). Every mutant, a
deliberately broken protocol selected by a ``-D`` macro of the same file,
must make the checker report an error: this proves the checks can fail.
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
MODEL = ROOT / 'tests' / 'model' / 'commit.pml'
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
    pan_args = ['-m100000', '-w25' if FULL else '-w24']
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


def _mtype_names() -> dict[int, str]:
    """Map spin's mtype numbers to names (numbered last-declared = 1)."""
    block = re.search(r'^mtype = \{(.*?)\};', MODEL.read_text(), re.S | re.M)
    assert block
    text = re.sub(r'/\*.*?\*/', '', block.group(1), flags=re.S)
    names = [n.strip() for n in text.split(',') if n.strip()]
    return {len(names) - i: name for i, name in enumerate(names)}


def _violation(out: str) -> str:
    """The first error pan reported, with mtype names instead of numbers."""
    found = re.search(r'pan:1: (.*)', out)
    if not found:
        return '?'
    names = _mtype_names()
    return re.sub(r'(==|!=)(\d+)',
                  lambda m: m.group(1) + names.get(int(m.group(2)),
                                                   m.group(2)),
                  found.group(1))


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


NEVER_ZERO = 'assertion violated  !(((s_key==NONE)&&(d_key==NONE)))'
KEY_FOLLOWS_GUEST = ('assertion violated (((d_key!=ACTIVE)||switched)&&'
                     '((s_key!=ACTIVE)|| !(switched)))')


@pytest.mark.parametrize(('mutant', 'expected'), [
    # the source destroys its key before the commit is journaled: an abort
    # then leaves no key anywhere
    ('MUTANT_EARLY_DESTROY', NEVER_ZERO),
    # the destination activates on restart in INSTALLED without asking S:
    # a usable key where the guest does not run (and two after S aborts)
    ('MUTANT_D_PRESUME_COMMIT', KEY_FOLLOWS_GUEST),
    # presumed abort while the guest may already run on D
    ('MUTANT_PRESUMED_ABORT', KEY_FOLLOWS_GUEST),
    # not a protocol change but an environment one: a hand-over that can
    # complete while S recovers makes the oracle's answer stale, so the
    # model's fencing assumption is necessary
    ('ENV_ASYNC_HANDOVER', KEY_FOLLOWS_GUEST),
], ids=['MUTANT_EARLY_DESTROY', 'MUTANT_D_PRESUME_COMMIT',
        'MUTANT_PRESUMED_ABORT', 'ENV_ASYNC_HANDOVER'])
def test_safety_mutant_is_caught(tmp_path: pathlib.Path,
                                 capsys: pytest.CaptureFixture[str],
                                 mutant: str, expected: str) -> None:
    result = check(tmp_path, capsys, liveness=False, defines=(mutant,))
    assert result.errors >= 1, result.output
    assert _violation(result.output).startswith(expected), result.output


def test_liveness_mutant_is_caught(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the source sends commit/abort only once: one lost message leaves the
    # migration unresolved for ever
    result = check(tmp_path, capsys, liveness=True,
                   defines=('MUTANT_NO_RESEND', 'MAX_CRASH=1'))
    assert result.errors >= 1, result.output
    assert 'acceptance cycle' in result.output
