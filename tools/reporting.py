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

"""Step-by-step console reporting for the demo.

A :class:`Reporter` prints each step as it starts and ends (with its
duration), collects named checks, and prints a one-screen summary. The demo
exits non-zero if any check failed.
"""

import contextlib
import dataclasses
import sys
import time
import typing as ty

from nova_vtpm_migration.cmd import output


@dataclasses.dataclass
class Check:
    """One verified claim of the demo."""

    name: str
    passed: bool
    detail: str = ''


class Reporter:
    """Prints progress and collects checks.

    :param stream: where to write (default stdout).
    """

    def __init__(self, stream: ty.TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.checks: list[Check] = []
        self.timings: list[dict[str, ty.Any]] = []
        self._t0 = time.monotonic()

    def _write(self, text: str) -> None:
        self.stream.write(text + '\n')
        self.stream.flush()

    def heading(self, text: str) -> None:
        """Print a section heading."""
        self._write('')
        self._write(f'== {text}')

    def info(self, text: str) -> None:
        """Print an indented line of information."""
        self._write(f'   {text}')

    @contextlib.contextmanager
    def step(self, title: str, phase: str = '') -> ty.Iterator[None]:
        """Time and print one step; record its duration under *phase*."""
        start = time.monotonic()
        self._write(f'[{start - self._t0:7.2f}s] {title} ...')
        try:
            yield
        except Exception as exc:
            ms = (time.monotonic() - start) * 1000
            self._write(f'           failed after {ms:.1f} ms: {exc}')
            raise
        ms = (time.monotonic() - start) * 1000
        self.timings.append({'phase': phase or title, 'step': title,
                             'ms': round(ms, 2)})
        self._write(f'           done in {ms:.1f} ms')

    def check(self, name: str, passed: bool, detail: str = '') -> bool:
        """Record and print a check; return *passed*."""
        self.checks.append(Check(name, passed, detail))
        mark = 'PASS' if passed else 'FAIL'
        suffix = f' ({detail})' if detail else ''
        self._write(f'   [{mark}] {name}{suffix}')
        return passed

    def table(self, rows: ty.Sequence[ty.Mapping[str, ty.Any]],
              columns: ty.Sequence[str]) -> None:
        """Print a table."""
        self._write(output.render_table(rows, columns))

    @property
    def ok(self) -> bool:
        """True if every recorded check passed (and there was at least one).
        """
        return bool(self.checks) and all(c.passed for c in self.checks)

    def summary(self) -> None:
        """Print the per-step timings and the checks."""
        self.heading('Summary')
        if self.timings:
            self.table(self.timings, ('phase', 'step', 'ms'))
        self.table([{'check': c.name, 'passed': c.passed,
                     'detail': c.detail[:48]} for c in self.checks],
                   ('check', 'passed', 'detail'))
        total = time.monotonic() - self._t0
        failed = sum(not c.passed for c in self.checks)
        verdict = ('ALL CHECKS PASSED' if self.ok
                   else f'{failed} CHECK(S) FAILED')
        self._write(f'{verdict} in {total:.1f} s')
