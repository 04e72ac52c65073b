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
import typing as ty

import pytest

from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401
from tests.integration.reliability import inproc
from tests.integration.reliability import matrix
from tests.integration.reliability import procs
from tests.support import cluster
from tests.support import rabbitmq
from tests.support import swtpm

os.environ.setdefault('TSS2_LOG', 'all+NONE')


@pytest.fixture(scope='session')
def tpm_hosts(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
              ) -> collections.abc.Iterator[dict[str, procs.TpmHost]]:
    """Three swtpm TPMs with distinct EKs: src, dst, third."""
    names = ('src', 'dst', 'third')
    with cluster.SimCluster(swtpm_ca, pcrs=procs.PCRS, label='rel') as sims:
        yield dict(zip(names, sims.start(names), strict=True))


@pytest.fixture(scope='session')
def policy_doc(swtpm_ca: swtpm.SwtpmCA  # noqa: F811
               ) -> dict[str, ty.Any]:
    """A policy with the (identical) PCRs of the fresh TPMs as golden."""
    return cluster.policy_document(swtpm_ca, procs.PCRS)


@pytest.fixture(scope='session')
def broker() -> collections.abc.Iterator[rabbitmq.RabbitBroker]:
    """A private RabbitMQ node on loopback, started by the tests."""
    with rabbitmq.RabbitBroker() as b:
        yield b


@pytest.fixture(scope='module')
def rabbit_cluster(tpm_hosts: dict[str, procs.TpmHost],
                   policy_doc: dict[str, ty.Any],
                   broker: rabbitmq.RabbitBroker
                   ) -> collections.abc.Iterator[inproc.RabbitCluster]:
    """Engines on the three TPMs, over the broker (closed at the end of
    the module: the host processes of the matrix need the TPMs)."""
    cluster = inproc.RabbitCluster(tpm_hosts, policy_doc,
                                   broker.transport_url, rpc_timeout=12)
    yield cluster
    cluster.close()


#: Load figures of this run, printed at the end.
LOAD_REPORT: dict[str, ty.Any] = {}


def pytest_terminal_summary(terminalreporter: ty.Any) -> None:
    if LOAD_REPORT:
        terminalreporter.write_sep('-', 'load over RabbitMQ')
        for key, value in LOAD_REPORT.items():
            terminalreporter.write_line(f'{key:32s} {value}')
        if os.environ.get('NVM_LOAD_REPORT'):
            with open(os.environ['NVM_LOAD_REPORT'], 'w') as f:
                json.dump(LOAD_REPORT, f, indent=1)
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
                 'detail': r.detail, 'findings': r.findings}
                for r in matrix.RESULTS.values()]},
                f, indent=1)
