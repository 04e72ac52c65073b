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

"""Reusable pytest fixtures of simulated host TPMs (real swtpm processes).

Import the fixtures you need into a ``conftest.py``::

    from tests.functional.swtpm_fixtures import swtpm_ca  # noqa: F401

``swtpm_ca`` / ``untrusted_ca`` are session-wide private ``swtpm_localca``
CAs; ``swtpm_factory`` starts hosts that are stopped after the test;
:func:`attach` gives a started swtpm a ``HostTpm`` with its own state dir.
The hosts are built by :mod:`tests.support.cluster`.
"""

import collections.abc
import os

import pytest

from tests.support import cluster
from tests.support import swtpm

os.environ.setdefault('TSS2_LOG', 'all+NONE')

#: PCRs quoted in the tests (16 is the debug PCR tests extend).
PCRS = (0, 1, 2, 3, 7, 16)

#: A running swtpm with a TpmContext and a HostTpm on it.
SimHost = cluster.SimTpm


def attach(sw: swtpm.SwtpmHostTpm, pcrs: collections.abc.Sequence[int]
           = PCRS, **kwargs: object) -> SimHost:
    """Wrap a started swtpm in a TpmContext and a HostTpm."""
    return cluster.attach(sw, pcrs, **kwargs)


@pytest.fixture(scope='session')
def swtpm_ca() -> collections.abc.Iterator[swtpm.SwtpmCA]:
    """The trusted EK CA of the simulated hosts."""
    with swtpm.SwtpmCA('trusted-ca') as ca:
        yield ca


@pytest.fixture(scope='session')
def untrusted_ca() -> collections.abc.Iterator[swtpm.SwtpmCA]:
    """A second CA with the same subject names but other keys."""
    with swtpm.SwtpmCA('untrusted-ca') as ca:
        yield ca


@pytest.fixture
def swtpm_factory(swtpm_ca: swtpm.SwtpmCA
                  ) -> collections.abc.Iterator[
                      collections.abc.Callable[..., SimHost]]:
    """Start hosts on demand: ``make(name, ca=None, clone=True, **kw)``.

    ``clone=True`` (fast) shares the EK with other clones; pass
    ``clone=False`` where identity matters.
    """
    with cluster.SimCluster(swtpm_ca, pcrs=PCRS, label='factory',
                            clone=True) as hosts:
        yield hosts.tpm


@pytest.fixture(scope='module')
def host_pair(swtpm_ca: swtpm.SwtpmCA
              ) -> collections.abc.Iterator[tuple[SimHost, SimHost]]:
    """Two hosts with distinct EKs, shared by a test module.

    Tests using them must not change their PCRs.
    """
    with cluster.SimCluster(swtpm_ca, pcrs=PCRS, label='pair') as hosts:
        a, b = hosts.start(('pair0', 'pair1'))
        yield a, b
