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


"""Prints (and with ``NVM_FUZZ_REPORT=<file>`` writes as JSON) how many
inputs each fuzz target executed."""

import json
import os
import time
import typing as ty

import hypothesis

from tests.fuzz import fuzzlib

_STARTED = time.monotonic()


def pytest_collection_modifyitems(items: list[ty.Any]) -> None:
    """Every fuzz test draws from the run's seed, if it has one."""
    if fuzzlib.SEED is None:
        return
    for item in items:
        function = getattr(item, 'function', None)
        if getattr(function, 'is_hypothesis_test', False):
            hypothesis.seed(fuzzlib.SEED)(function)


def pytest_terminal_summary(terminalreporter: ty.Any) -> None:
    if not fuzzlib.COUNTS:
        return
    total = sum(fuzzlib.COUNTS.values())
    elapsed = time.monotonic() - _STARTED
    terminalreporter.write_sep('-', 'fuzzing')
    for name, count in sorted(fuzzlib.COUNTS.items()):
        terminalreporter.write_line(f'{name:40s} {count:8d}')
    terminalreporter.write_line(
        f'{"total inputs":40s} {total:8d}  ({elapsed:.0f} s, budget '
        f'{fuzzlib.BASE}/unit)')
    if fuzzlib.SEED is None:
        terminalreporter.write_line('seed: none (the same inputs every run)')
    else:
        terminalreporter.write_line(
            f'seed: {fuzzlib.SEED} (replay: NVM_FUZZ_SEED={fuzzlib.SEED} '
            f'NVM_FUZZ_EXAMPLES={fuzzlib.BASE} pytest tests/fuzz)')
    for finding, count in sorted(fuzzlib.FINDINGS.items()):
        terminalreporter.write_line(f'known finding hit {count} times: '
                                    f'{finding}')
    report = os.environ.get('NVM_FUZZ_REPORT')
    if report:
        with open(report, 'w') as f:
            json.dump({'total': total, 'seconds': round(elapsed, 1),
                       'seed': fuzzlib.SEED,
                       'per_target': dict(fuzzlib.COUNTS),
                       'findings': dict(fuzzlib.FINDINGS)}, f, indent=1)
