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

"""``make bench`` part 2: live migration, secured vs plain, side by side.

On real libvirt (:func:`on_libvirt`): Nova's in-process control plane with
two computes per mode, each on its own libvirtd
(:mod:`tests.nova.real_libvirt.bench_scenario`), in a child process
(``python -m tools.bench.live_migration``) so that Nova's functional-test
fixtures never meet the data-plane testbed of the other parts.

``plain``
    Upstream Nova's ``host``-mode vTPM live migration on the stock
    ``LibvirtDriver``.
``secured``
    This plugin's driver with ``vtpm_migration:attested=required``.

Where libvirt daemons cannot run (:func:`tests.support.libvirt.daemons.
unavailable_reason`), :func:`on_dataplane` measures the same comparison on
the data plane (QEMU, QMP and swtpm driven directly, no Nova and no
libvirt) and the report says why.

:func:`build` turns the per-run samples of either into the report's
``libvirt_migration`` section (milliseconds).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import typing as ty

from tools.bench import stats

PLAIN = 'plain'
SECURED = 'secured'
MODES = (PLAIN, SECURED)
#: Measured in both modes; their secured/plain ratios are reported.
COMMON_METRICS = ('end_to_end_ms', 'migration_ms', 'downtime_ms')
#: Measured in the secured mode only (the plugin's phases).
SECURED_METRICS = ('phase1_ms', 'phase2_ms', 'commit_ms')
SOURCE_LIBVIRT = 'libvirt'
SOURCE_DATAPLANE = 'dataplane'
#: Seconds one run of one mode may take, booting included (TCG guests).
CHILD_SECONDS_PER_RUN = 120
CHILD_SETUP_SECONDS = 600

Samples = dict[str, list[dict[str, float]]]


def rotation(repetition: int) -> tuple[str, ...]:
    """The order of the modes in *repetition*: plain then secured, then
    secured then plain, and so on (each mode goes first equally often)."""
    return MODES if repetition % 2 == 0 else MODES[::-1]


def build(samples: Samples, order: list[list[str]], source: str,
          unavailable_reason: str | None = None) -> dict[str, ty.Any]:
    """The report's section from per-run samples.

    :param samples: mode -> one dict per run, metric name -> ms; every run
        of a mode has the same metrics, each mode has
        :data:`COMMON_METRICS` and the secured mode also
        :data:`SECURED_METRICS` where the source measures them.
    :param order: the modes of each repetition in the order they ran.
    :param source: :data:`SOURCE_LIBVIRT` or :data:`SOURCE_DATAPLANE`.
    :param unavailable_reason: why libvirt daemons could not run (with
        :data:`SOURCE_DATAPLANE`).
    :raises ValueError: a mode has no run, or its runs differ in metrics.
    """
    out: dict[str, ty.Any] = {'source': source,
                              'unavailable_reason': unavailable_reason,
                              'order': order}
    for mode in MODES:
        runs = samples.get(mode) or []
        if not runs:
            raise ValueError(f'no {mode} run')
        names = set(runs[0])
        if any(set(run) != names for run in runs):
            raise ValueError(f'the {mode} runs do not all have the same '
                             'metrics')
        missing = set(COMMON_METRICS) - names
        if missing:
            raise ValueError(f'{mode} runs lack {sorted(missing)}')
        out[mode] = {name: stats.summarize([float(run[name])
                                            for run in runs]).as_dict()
                     for name in sorted(names)}
    out['runs'] = min(len(samples[mode]) for mode in MODES)
    out['ratio'] = {name: stats.ratio(out[SECURED][name]['median'],
                                      out[PLAIN][name]['median'])
                    for name in COMMON_METRICS}
    out['samples'] = {mode: samples[mode] for mode in MODES}
    return out


# -- on real libvirt ----------------------------------------------------------


def on_libvirt(runs: int) -> dict[str, ty.Any] | str:
    """Run the side-by-side comparison on real libvirt daemons.

    :returns: the report's section, or why libvirt daemons cannot run
        here (then nothing ran).
    :raises RuntimeError: the comparison ran and failed.
    """
    from tests.support.libvirt import daemons

    reason = daemons.unavailable_reason()
    if reason is not None:
        return reason
    with tempfile.TemporaryDirectory(prefix='bench-libvirt-') as tmp:
        path = pathlib.Path(tmp) / 'samples.json'
        env = dict(os.environ, PYTHONWARNINGS='ignore')
        env.setdefault('TSS2_LOG', 'all+NONE')
        proc = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, '-m', 'tools.bench.live_migration',
             '--runs', str(runs), '--output', str(path)],
            env=env, check=False,
            timeout=CHILD_SETUP_SECONDS + CHILD_SECONDS_PER_RUN * 2 * runs)
        if proc.returncode != 0 or not path.exists():
            raise RuntimeError('live migration on real libvirt failed '
                               f'(exit status {proc.returncode}; see above)')
        raw = json.loads(path.read_text())
    if raw.get('skipped'):
        return str(raw['skipped'])
    return build(raw['samples'], raw['order'], SOURCE_LIBVIRT)


# -- on the data plane --------------------------------------------------------


def on_dataplane(tb: ty.Any, runs: int, reason: str) -> dict[str, ty.Any]:
    """The comparison on the data-plane testbed *tb* (two guests, each
    migrated back and forth, the modes alternating as on libvirt).

    Phase 1 attests afresh on every secured run; ``migration_ms`` and
    ``downtime_ms`` are QEMU's own ``total-time`` and ``downtime``.

    :param reason: why libvirt daemons could not run (reported).
    :raises RuntimeError: a migration did not commit.
    """
    from tests.support.dataplane import migration

    hosts = tb.names[:2]
    instances = {mode: tb.new_instance(hosts[0], provision_vtpm=False)[0]
                 for mode in MODES}
    where = dict.fromkeys(MODES, 0)
    samples: Samples = {mode: [] for mode in MODES}
    order: list[list[str]] = []
    for rep in range(runs):
        order.append(list(rotation(rep)))
        for mode in order[-1]:
            src, dst = hosts[where[mode]], hosts[1 - where[mode]]
            result = tb.migrate(instances[mode], src, dst,
                                secured_mode=(mode == SECURED),
                                fresh_attestation=True)
            if not result.committed or result.qemu is None:
                raise RuntimeError(f'{mode} migration failed: '
                                   f'{result.error}')
            where[mode] = 1 - where[mode]
            run = {'end_to_end_ms': result.phases_ms[migration.PHASE_TOTAL],
                   'migration_ms': float(result.qemu.total_time_ms or 0),
                   'downtime_ms': float(result.qemu.downtime_ms or 0)}
            if mode == SECURED:
                run.update(
                    phase1_ms=result.phases_ms[migration.PHASE_ATTEST],
                    phase2_ms=result.phases_ms[migration.PHASE_TRANSFER],
                    commit_ms=result.phases_ms[migration.PHASE_COMMIT])
            samples[mode].append(run)
    return build(samples, order, SOURCE_DATAPLANE, reason)


def measure(tb: ty.Any, libvirt_runs: int,
            dataplane_runs: int) -> dict[str, ty.Any]:
    """Part 2 of ``make bench``: on real libvirt where its daemons can
    run, else on the data plane of *tb*."""
    section = on_libvirt(libvirt_runs)
    if isinstance(section, str):
        print(f'  real libvirt daemons cannot run here ({section}); '
              f'measuring on the data plane x{dataplane_runs}', flush=True)
        return on_dataplane(tb, dataplane_runs, section)
    return section


# -- the child process --------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the real-libvirt comparison; write its samples as JSON."""
    p = argparse.ArgumentParser(
        prog='python -m tools.bench.live_migration',
        description='Secured vs plain live migrations through Nova on real '
                    'libvirt daemons (make bench part 2).')
    p.add_argument('--runs', type=int, default=5,
                   help='runs of each mode (default 5)')
    p.add_argument('--output', required=True, type=pathlib.Path,
                   help='where the samples are written (JSON)')
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error('--runs must be >= 1')
    # Imported only here: it loads libvirt and Nova's test fixtures.
    from tests.nova.real_libvirt import bench_scenario

    outcome = bench_scenario.run(args.runs)
    if outcome is None:
        return 1
    args.output.write_text(json.dumps(outcome, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
