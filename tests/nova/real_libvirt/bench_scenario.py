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

"""``make bench`` part 2: secured vs plain live migration through Nova on
real libvirt daemons, alternating runs.

One Nova control plane (:class:`~tests.nova.real_libvirt.base.
RealLibvirtPluginBase`) with four computes, each on its own libvirtd:

* ``plain-a`` and ``plain-b`` run Nova's stock ``LibvirtDriver``; their
  guest has a host-secured vTPM flavor, so it moves as upstream Nova's
  ``host`` mode does it (``tests/nova/real_libvirt/test_upstream_driver.
  py``);
* ``secured-a`` and ``secured-b`` run this plugin's driver; their guest's
  flavor also has ``vtpm_migration:attested=required`` (as ``make demo``).

Both guests run for the whole measurement. Each repetition live-migrates
both once (to the other host of their pair), the order of the two modes
rotating (:func:`tools.bench.live_migration.rotation`). Per run:

``end_to_end_ms``
    from ``os-migrateLive`` until Nova saves the migration as
    ``completed`` (:class:`CompletionTimes`; no polling in the timing);
``migration_ms``, ``downtime_ms``
    libvirt's statistics of the finished job on the destination (``virsh
    domjobinfo --completed``: ``time_elapsed``, ``downtime``);
``phase1_ms``, ``phase2_ms``, ``commit_ms`` (secured only)
    the plugin's calls timed by :class:`~tests.nova.real_libvirt.phases.
    PhaseTimer`.

After the last run each guest must still read back what it wrote into its
vTPM. The module name does not start with ``test_``: :func:`run` runs it
for ``python -m tools.bench.live_migration``.
"""

import io
import logging
import sys
import time
import typing as ty
import unittest

import fixtures

from nova_vtpm_migration.virt.libvirt import driver as plugin_driver
from tests.nova import base as nova_base
from tests.nova.real_libvirt import base
from tests.nova.real_libvirt import phases
from tests.support.libvirt import guest
from tools.bench import live_migration as lm

HOSTS = {lm.PLAIN: ('plain-a', 'plain-b'),
         lm.SECURED: ('secured-a', 'secured-b')}
STOCK_DRIVER = 'libvirt.LibvirtDriver'
#: PhaseTimer step -> sample name (the QEMU migration is libvirt's own
#: job statistics instead).
SPAN_METRICS = {phases.PHASES[0][2]: 'phase1_ms',
                phases.PHASES[1][2]: 'phase2_ms',
                phases.PHASES[3][2]: 'commit_ms'}
#: Pause between two runs, so that one's clean-up is not in the next.
SETTLE_SECONDS = 1.0


class CompletionTimes(fixtures.Fixture):
    """When Nova saved each migration as ``completed``.

    Wraps (does not replace) ``Migration.save``: the source compute's
    ``_post_live_migration`` saves the status ``completed`` after the
    driver's ``post_live_migration`` (for the plugin: the commit).
    """

    def _setUp(self) -> None:
        from nova.objects import migration as migration_obj
        #: migration UUID -> time.monotonic() of its first completed save.
        self.completed: dict[str, float] = {}
        real = migration_obj.Migration.save

        def save(migration: ty.Any, *args: ty.Any, **kwargs: ty.Any
                 ) -> ty.Any:
            result = real(migration, *args, **kwargs)
            if (migration.obj_attr_is_set('status')
                    and migration.status == 'completed'
                    and migration.obj_attr_is_set('uuid')):
                self.completed.setdefault(migration.uuid, time.monotonic())
            return result

        self.useFixture(fixtures.MonkeyPatch(
            'nova.objects.migration.Migration.save', save))


class LibvirtMigrationBench(base.RealLibvirtPluginBase):
    """Alternating plain and secured live migrations (see the module)."""

    #: Runs of each mode; :func:`run` sets it.
    runs = 5
    #: What :meth:`test_side_by_side` measured (``order``, ``samples``).
    outcome: dict[str, ty.Any] | None = None

    def setUp(self) -> None:
        super().setUp()
        self.phases = self.useFixture(phases.PhaseTimer())
        self.completion = self.useFixture(CompletionTimes())

    def timed(self, label: str, started: float) -> None:
        print(f'  {label}: {time.monotonic() - started:.1f} s', flush=True)

    def start_pairs(self) -> None:
        """Start the two computes of each mode with its driver."""
        if not nova_base.shim_installed():
            self.fail('the plugin\'s driver shim is not installed (make '
                      'install): plain and secured computes cannot run '
                      'side by side')
        for mode, driver in ((lm.PLAIN, STOCK_DRIVER),
                             (lm.SECURED, nova_base.PLUGIN_DRIVER)):
            self.flags(compute_driver=driver)
            for host in HOSTS[mode]:
                compute = self.start_compute(host)
                self.assertEqual(
                    mode == lm.SECURED,
                    isinstance(compute.driver, plugin_driver.LibvirtDriver),
                    f'{host} runs {type(compute.driver)}')

    def boot(self, mode: str) -> tuple[dict[str, ty.Any], guest.CheckLine]:
        """Boot the guest of *mode* on the first host of its pair."""
        host = HOSTS[mode][0]
        if mode == lm.SECURED:
            return self.boot_vtpm_server(host)
        return base.RealLibvirtTestBase.boot_vtpm_server(self, host)

    def migrate(self, mode: str, server: dict[str, ty.Any], src: str,
                dst: str) -> dict[str, float]:
        """Live-migrate *server* from *src* to *dst*; return the run's
        samples (ms)."""
        earlier = {m['id'] for m in self._live_migrations(server)}
        mark = self.phases.mark()
        started = time.monotonic()
        self.admin_api.post_server_action(
            server['id'],
            {'os-migrateLive': {'host': dst, 'block_migration': 'auto'}})
        deadline = started + base.TIMEOUT
        while True:
            new = [m for m in self._live_migrations(server)
                   if m['id'] not in earlier]
            if new and new[-1]['status'] in (
                    'completed', 'error', 'failed', 'cancelled'):
                break
            if time.monotonic() > deadline:
                self.fail(f'{mode} migration {src} -> {dst} not finished '
                          f'within {base.TIMEOUT} s: {new}')
            time.sleep(0.2)
        migration = new[-1]
        self.assertEqual('completed', migration['status'], migration)
        self.wait_for_server(server, host=dst)
        job = phases.completed_job(self.daemon(dst).conn, server['id'])
        self.assertIn('time_elapsed', job, f'no completed job on {dst}')
        self.assertIn('downtime', job, f'no downtime on {dst}: {job}')
        run = {'end_to_end_ms': round(
            (self.completion.completed[migration['uuid']] - started) * 1000,
            1),
            'migration_ms': float(job['time_elapsed']),
            'downtime_ms': float(job['downtime'])}
        spans = self.phases.since(mark)
        self.assertFalse([s for s in spans if s.failed], spans)
        measured = [s for s in spans if s.what in SPAN_METRICS]
        if mode == lm.SECURED:
            self.assertEqual(sorted(SPAN_METRICS.values()),
                             sorted(SPAN_METRICS[s.what] for s in measured),
                             spans)
            run.update({SPAN_METRICS[s.what]: round(s.seconds * 1000, 1)
                        for s in measured})
        else:
            self.assertEqual([], measured, 'the plugin ran in a plain run')
        return run

    def test_side_by_side(self) -> None:
        """Alternate plain and secured migrations; keep the samples in
        :attr:`outcome`."""
        self.start_pairs()
        servers = {mode: self.boot(mode) for mode in lm.MODES}
        where = dict.fromkeys(lm.MODES, 0)
        samples: dict[str, list[dict[str, float]]] = {m: [] for m in lm.MODES}
        order = []
        for rep in range(self.runs):
            order.append(list(lm.rotation(rep)))
            for mode in order[-1]:
                src, dst = (HOSTS[mode][where[mode]],
                            HOSTS[mode][1 - where[mode]])
                time.sleep(SETTLE_SECONDS)
                run = self.migrate(mode, servers[mode][0], src, dst)
                where[mode] = 1 - where[mode]
                samples[mode].append(run)
                print(f'  run {rep + 1} {mode} {src} -> {dst}: ' + ', '.join(
                    f'{k} {v:.0f}' for k, v in run.items()), flush=True)
        for mode, (server, before) in servers.items():
            host = HOSTS[mode][where[mode]]
            seq = guest.parse_console(self.console(server))[-1].seq
            after = self.wait_for_checks(server, count=1, after=seq)[-1]
            self.assertEqual([], guest.mismatches(before, after),
                             f'{mode} guest on {host}')
            self.assertEqual([server['id']], self.domains(host))
        self.assertEqual({servers[lm.SECURED][0]['id']: 'ACTIVE'},
                         self.keys(HOSTS[lm.SECURED][where[lm.SECURED]]))
        type(self).outcome = {'order': order, 'samples': samples}


def run(runs: int) -> dict[str, ty.Any] | None:
    """Run :class:`LibvirtMigrationBench` with *runs* runs of each mode.

    :returns: ``{'order', 'samples'}``, ``{'skipped': reason}`` if the
        test skipped itself, or ``None`` if it failed (the failure went to
        stderr).
    """
    logging.getLogger('nova.thread_pool_factory').setLevel(logging.WARNING)
    LibvirtMigrationBench.runs = runs
    LibvirtMigrationBench.outcome = None
    suite = unittest.TestSuite([LibvirtMigrationBench('test_side_by_side')])
    out = io.StringIO()
    result = unittest.TextTestRunner(stream=out, verbosity=0).run(suite)
    if result.skipped:
        return {'skipped': result.skipped[0][1]}
    if not result.wasSuccessful() or LibvirtMigrationBench.outcome is None:
        sys.stderr.write(out.getvalue())
        return None
    return LibvirtMigrationBench.outcome
