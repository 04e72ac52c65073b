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



"""Fixtures of the reliability tests: real swtpm host TPMs shared by the
session, the trust policy, and the printed fault matrix."""

import collections.abc
import json
import os
import tempfile
import typing as ty

import pytest

from nova_vtpm_migration.sim import swtpm
from tests.functional import swtpm_fixtures
from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
from tests.integration.reliability import matrix
from tests.integration.reliability import procs

os.environ.setdefault('TSS2_LOG', 'all+NONE')


@pytest.fixture(scope='session')
def tpm_hosts(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
              ) -> collections.abc.Iterator[dict[str, procs.TpmHost]]:
    """Three swtpm TPMs with distinct EKs: src, dst, third."""
    started = swtpm.make_hosts(swtpm_ca, 3, prefix='rel')
    try:
        yield {name: procs.TpmHost(sw, tempfile.mkdtemp(
                   prefix='tpmstate-', dir=sw.dir))
               for name, sw in zip(('src', 'dst', 'third'), started,
                                   strict=True)}
    finally:
        for sw in started:
            sw.stop()


@pytest.fixture(scope='session')
def policy_doc(swtpm_ca: swtpm.SwtpmCA,  # noqa: F811
               tpm_hosts: dict[str, procs.TpmHost]) -> dict[str, ty.Any]:
    """A policy with the (identical) PCRs of the fresh TPMs as golden."""
    sim = swtpm_fixtures.attach(tpm_hosts['src'].swtpm,
                                pcrs=procs.PCRS)
    try:
        values = sim.tpm.pcr_values()
    finally:
        sim.ctx.close()
    return procs.policy_document(swtpm_ca, values)


def pytest_terminal_summary(terminalreporter: ty.Any) -> None:
    if not matrix.RESULTS:
        return
    terminalreporter.write_sep('-', 'fault-injection matrix')
    text = matrix.table()
    for line in text.splitlines():
        terminalreporter.write_line(line)
    report = os.environ.get('NVM_MATRIX_REPORT')
    if report:
        with open(report, 'w') as f:
            json.dump({'table': text, 'cells': [
                {'step': r.step.label, 'fault': r.fault, 'passed': r.passed,
                 'outcome': r.outcome, 'seconds': round(r.seconds, 2),
                 'detail': r.detail} for r in matrix.RESULTS.values()]},
                f, indent=1)
