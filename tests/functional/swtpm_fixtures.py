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
"""

import collections.abc
import dataclasses
import os
import pathlib
import tempfile

import pytest

from nova_vtpm_migration.tpm import context
from nova_vtpm_migration.tpm import host as host_mod
from tests.support import swtpm

os.environ.setdefault('TSS2_LOG', 'all+NONE')

#: PCRs quoted in the tests (16 is the debug PCR tests extend).
PCRS = (0, 1, 2, 3, 7, 16)


@dataclasses.dataclass
class SimHost:
    """A running swtpm with a TpmContext and a HostTpm on it."""

    swtpm: swtpm.SwtpmHostTpm
    ctx: context.TpmContext
    tpm: host_mod.HostTpm

    def stop(self) -> None:
        self.ctx.close()
        self.swtpm.stop()


def attach(sw: swtpm.SwtpmHostTpm, pcrs: collections.abc.Sequence[int]
           = PCRS, **kwargs: object) -> SimHost:
    """Wrap a started swtpm in a TpmContext and a HostTpm."""
    ctx = context.TpmContext(sw.tcti, lock_timeout=10)
    state = pathlib.Path(tempfile.mkdtemp(prefix='state-', dir=sw.dir))
    return SimHost(sw, ctx, host_mod.HostTpm(ctx, state, pcr_selection=pcrs,
                                             **kwargs))  # type: ignore


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
    started: list[SimHost] = []

    def make(name: str = 'host', ca: swtpm.SwtpmCA | None = None,
             clone: bool = True, **kwargs: object) -> SimHost:
        sw = swtpm.SwtpmHostTpm(ca or swtpm_ca, name, clone=clone)
        try:
            sim = attach(sw, **kwargs)  # type: ignore[arg-type]
        except BaseException:
            sw.stop()
            raise
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture(scope='module')
def host_pair(swtpm_ca: swtpm.SwtpmCA
              ) -> collections.abc.Iterator[tuple[SimHost, SimHost]]:
    """Two hosts with distinct EKs, shared by a test module.

    Tests using them must not change their PCRs.
    """
    hosts = swtpm.make_hosts(swtpm_ca, 2, prefix='pair')
    sims = [attach(h) for h in hosts]
    try:
        yield sims[0], sims[1]
    finally:
        for sim in sims:
            sim.stop()
