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

"""How long each phase of a live migration takes, as Nova runs it.

:class:`PhaseTimer` wraps (does not replace) the calls that carry each
phase and records their wall-clock durations:

=======  ============================================  ====================
phase    what                                          call (host)
=======  ============================================  ====================
1        dual attestation, destination pre-check       ``ComputeHost.
                                                       attest_source`` (D)
2        key wrapped to the destination TPM, unwrapped ``ComputeHost.
         there, ``pre_live_migration``                 receive_key`` (D)
3        QEMU migration by libvirt (``migrateToURI3``) ``LibvirtDriver.
                                                       _live_migration_
                                                       operation`` (S)
3        commit: the destination key becomes ACTIVE,   ``ComputeHost.
         the source's is destroyed                     commit`` (S)
=======  ============================================  ====================

It also reads libvirt's own statistics of the finished migration job from
the destination daemon (``virsh domjobinfo --completed``).
"""

import dataclasses
import functools
import importlib
import threading
import time
import typing as ty

import fixtures
import libvirt

#: (dotted path of the wrapped call, phase, what it does).
PHASES = (
    ('nova_vtpm_migration.compute.host.ComputeHost.attest_source',
     'Phase 1', 'dual attestation (destination pre-check)'),
    ('nova_vtpm_migration.compute.host.ComputeHost.receive_key',
     'Phase 2', 'key wrapped to the destination TPM, unwrapped there'),
    ('nova.virt.libvirt.driver.LibvirtDriver._live_migration_operation',
     'Phase 3', 'QEMU live migration by libvirt (migrateToURI3)'),
    ('nova_vtpm_migration.compute.host.ComputeHost.commit',
     'Phase 3', 'commit: destination key ACTIVE, source key destroyed'),
)


@dataclasses.dataclass(frozen=True)
class Span:
    """One timed call."""

    phase: str
    what: str
    started: float
    seconds: float
    failed: bool


class PhaseTimer(fixtures.Fixture):
    """Records a :class:`Span` for every call of :data:`PHASES`."""

    def _setUp(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        for path, phase, what in PHASES:
            owner, name = path.rsplit('.', 1)
            module, cls = owner.rsplit('.', 1)
            real = getattr(importlib.import_module(module), cls)
            self.useFixture(fixtures.MonkeyPatch(
                path, self._timed(getattr(real, name), phase, what)))

    def _timed(self, real: ty.Callable[..., ty.Any], phase: str,
               what: str) -> ty.Callable[..., ty.Any]:
        @functools.wraps(real)
        def timed(*args: ty.Any, **kwargs: ty.Any) -> ty.Any:
            started = time.monotonic()
            failed = True
            try:
                result = real(*args, **kwargs)
                failed = False
                return result
            finally:
                span = Span(phase, what, started,
                            time.monotonic() - started, failed)
                with self._lock:
                    self.spans.append(span)
        return timed

    def mark(self) -> int:
        """A position to take the spans of the next migration from."""
        with self._lock:
            return len(self.spans)

    def since(self, mark: int) -> list[Span]:
        """The spans recorded after *mark*, in start order."""
        with self._lock:
            return sorted(self.spans[mark:], key=lambda s: s.started)

    def rows(self, mark: int) -> list[dict[str, ty.Any]]:
        """Table rows (phase, step, ms) of the spans after *mark*."""
        return [{'phase': s.phase,
                 'step': s.what + (' (failed)' if s.failed else ''),
                 'ms': round(s.seconds * 1000, 1)}
                for s in self.since(mark)]


def completed_job(conn: ty.Any, domain_uuid: str) -> dict[str, ty.Any]:
    """libvirt's statistics of the domain's last finished job on this
    daemon (for the destination: the incoming migration), as ``virsh
    domjobinfo --completed`` shows them; empty if there are none."""
    try:
        dom = conn.lookupByUUIDString(domain_uuid)
        return dict(dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
    except libvirt.libvirtError:
        return {}
