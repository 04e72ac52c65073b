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

"""``make bench``: the numbers, measured side by side in one run.

1. Protocol phases without QEMU: phase 1 (fresh dual attestation), phase 2
   (binding key, wrapped transfer, receipt) and commit, each with the time
   spent inside the host TPMs (the physical floor of the protocol), the
   per-command histogram of one migration per phase and side (counted at
   the TCTI) and its projection onto hardware TPM profiles.
2. Live migration through Nova on real libvirt daemons, secured (this
   plugin's driver, ``vtpm_migration:attested=required``) vs plain
   (upstream Nova's ``host`` mode on the stock ``LibvirtDriver``),
   alternating runs (:mod:`tools.bench.live_migration`): end-to-end time,
   libvirt's migration time and downtime, and the plugin's phases. Where
   libvirt daemons cannot run, the same comparison on the data plane.
3. The paper's Table I (:mod:`tools.bench.table1`): 1/10/20/30
   simultaneous migrations between two hosts, plain (P) vs the traditional
   secured protocol (T) vs this plugin (A), alternating repetitions, each
   run with a fresh attestation; on swtpm and again with every host TPM
   command delayed to the slow discrete TPM profile.
4. Extra resident memory of the plugin in a compute-like process.

Writes ``report.md``, ``report.json`` and PNG plots to the results
directory and prints the Markdown report.
"""

import argparse
import datetime
import json
import logging
import os
import pathlib
import platform
import subprocess
import sys
import time
import typing as ty
import uuid

from nova_vtpm_migration.tpm import meter
from nova_vtpm_migration.tpm import profiles
from tests.support.dataplane import testbed as testbed_mod
from tools.bench import breakdown
from tools.bench import commands
from tools.bench import live_migration
from tools.bench import stats
from tools.bench import table1
from tools.bench import targets

HOSTS = table1.HOSTS
#: Extra fresh phase 1+2 run under the profiler (see :mod:`.breakdown`).
PROFILED_RUNS = 5


def _meters(tb: testbed_mod.Testbed) -> dict[str, meter.TpmMeter]:
    """The source's and the destination's TPM meter."""
    ctxs = tb.tpm_contexts
    return {'source': ctxs[HOSTS[0]].meter,
            'destination': ctxs[HOSTS[1]].meter}


def protocol_phases(tb: testbed_mod.Testbed, runs: int
                    ) -> dict[str, ty.Any]:
    """Phase 1, phase 2 and commit without QEMU, with their TPM time and
    commands (``histograms``/``projection``: the last run's, see
    :mod:`tools.bench.commands`)."""
    a, b = (tb.engines[h] for h in HOSTS)
    samples: dict[str, list[float]] = {}
    tpm: dict[str, list[float]] = {}
    cmds: dict[str, list[int]] = {}
    windows: list[dict[str, meter.Measurement]] = []

    def measure(name: str, fn: ty.Callable[[], ty.Any]) -> ty.Any:
        with meter.measure(_meters(tb)) as m:
            start = time.perf_counter()
            out = fn()
            wall = (time.perf_counter() - start) * 1000.0
        samples.setdefault(name, []).append(wall)
        tpm.setdefault(name, []).append(m.total.total_seconds * 1000.0)
        cmds.setdefault(name, []).append(m.total.total)
        windows[-1][name] = m
        return out

    src, dst, peer = a, b, HOSTS[1]
    for _ in range(runs):
        windows.append({})
        inst = str(uuid.uuid4())
        src.keystore.add(inst, os.urandom(32))
        def phase1() -> ty.Any:
            return src.attest_peer(peer, fresh=True)

        def phase2(i: str = inst) -> ty.Any:
            return src.migrate_key(i, peer)

        measure('phase1', phase1)
        handle = measure('phase2', phase2)

        def commit(m: str = handle.migration_id) -> ty.Any:
            return src.commit(m)

        measure('commit', commit)
        dst.keystore.destroy(inst)
    out: dict[str, ty.Any] = {}
    for name, values in samples.items():
        wall = stats.summarize(values)
        floor = stats.summarize(tpm[name])
        out[name] = {'wall_ms': wall.as_dict(), 'tpm_ms': floor.as_dict(),
                     'tpm_commands': stats.summarize(
                         [float(c) for c in cmds[name]]).median,
                     'ratio_to_tpm': stats.ratio(wall.median, floor.median)}
    both = [p1 + p2 for p1, p2 in zip(samples['phase1'], samples['phase2'],
                                      strict=True)]
    both_tpm = [p1 + p2 for p1, p2 in zip(tpm['phase1'], tpm['phase2'],
                                          strict=True)]
    out['phase1+2'] = {
        'wall_ms': stats.summarize(both).as_dict(),
        'tpm_ms': stats.summarize(both_tpm).as_dict(),
        'ratio_to_tpm': stats.ratio(stats.summarize(both).median,
                                    stats.summarize(both_tpm).median)}
    out['phase1+2']['breakdown'] = breakdown.profile_phase12(
        src, dst, peer, PROFILED_RUNS, out['phase1+2']['wall_ms']['median'],
        out['phase1+2']['tpm_ms']['median'])
    out['histograms'] = commands.histograms(windows)
    out['projection'] = commands.projections(windows)
    return out


def secret_at_rest(tb: testbed_mod.Testbed, runs: int
                   ) -> dict[str, ty.Any]:
    """What ``libvirt_secret_storage = sealed`` costs a guest start.

    ``adopt`` seals a new instance's secret (once per instance and host);
    ``open`` is the work added to every guest start (unseal the key with
    the TPM, decrypt the envelope). Upstream reads a persistent libvirt
    secret instead, so there is no side-by-side ratio here.
    """
    from nova_vtpm_migration.compute import vault as secret_vault

    engine = tb.engines[HOSTS[0]]
    vault = secret_vault.SecretVault(engine.keystore, engine.state_lock,
                                     HOSTS[0])
    secret = os.urandom(384).hex().encode()  # Nova's passphrase size
    samples: dict[str, list[float]] = {'adopt': [], 'open': []}
    tpm: list[float] = []
    for _ in range(runs):
        inst = str(uuid.uuid4())
        start = time.perf_counter()
        vault.adopt(inst, secret)
        samples['adopt'].append((time.perf_counter() - start) * 1000.0)
        with meter.measure(_meters(tb)) as m:
            start = time.perf_counter()
            if vault.open(inst) != secret:
                raise RuntimeError('the vault returned another secret')
            samples['open'].append((time.perf_counter() - start) * 1000.0)
        tpm.append(m.total.total_seconds * 1000.0)
        vault.forget(inst)
    out: dict[str, ty.Any] = {
        name: stats.summarize(values).as_dict()
        for name, values in samples.items()}
    out['open_tpm_ms'] = stats.summarize(tpm).as_dict()
    return out


_RSS_SNIPPET = '''
import os, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
import nova.virt.libvirt.driver  # the compute driver nova-compute loads
base = rss()
if sys.argv[1] == 'plugin':
    import importlib.util
    if importlib.util.find_spec('nova_vtpm_migration.virt'):
        import nova_vtpm_migration.virt.libvirt.driver  # noqa
    import nova_vtpm_migration.rpc.server  # noqa
    from tests.support.dataplane import testbed
    tb = testbed.Testbed(('r-a', 'r-b'))
    for _ in range(5):
        inst = str(__import__('uuid').uuid4())
        tb.engines['r-a'].keystore.add(inst, os.urandom(32))
        h = tb.engines['r-a'].migrate_key(inst, 'r-b')
        tb.engines['r-a'].commit(h.migration_id)
    print(rss() - base)
    tb.close()
else:
    print(rss() - base)
'''


def plugin_rss() -> dict[str, float]:
    """Extra RSS (MiB) of the plugin on top of nova's libvirt driver."""
    out = {}
    for mode in ('baseline', 'plugin'):
        proc = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, '-c', _RSS_SNIPPET, mode], capture_output=True,
            text=True, timeout=300, check=True,
            env=dict(os.environ, TSS2_LOG='all+NONE'))
        out[mode] = int(proc.stdout.strip().splitlines()[-1]) / 1024.0
    # The "plugin" process holds two hosts' engines (it acts
    # as both source and destination), so this over-counts one host.
    out['extra_mib'] = out['plugin'] - out['baseline']
    return out


def _machine() -> dict[str, str]:
    return {'machine': platform.machine(), 'cpus': str(os.cpu_count()),
            'python': platform.python_version(),
            'kernel': platform.release(),
            'date': datetime.datetime.now(datetime.UTC).isoformat(
                timespec='seconds')}


def _step(report: dict[str, ty.Any], name: str, started: float) -> None:
    seconds = time.monotonic() - started
    report.setdefault('durations_s', {})[name] = round(seconds, 1)
    print(f'  ... {name}: {seconds:.0f} s', flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; write and print the report."""
    p = argparse.ArgumentParser(prog='make bench')
    p.add_argument('--runs', type=int, default=20,
                   help='runs per measurement (default 20)')
    p.add_argument('--libvirt-runs', type=int, default=5,
                   help='runs of each mode of the live migration through '
                        'Nova on real libvirt (default 5)')
    p.add_argument('--levels', default='1,10,20,30',
                   help='concurrency levels of Table I')
    p.add_argument('--table1-runs', type=int, default=5,
                   help='repetitions of P, T and A per level of Table I '
                        '(default 5)')
    p.add_argument('--slow-runs', type=int, default=2,
                   help='repetitions per level of Table I under the slow '
                        'profile (default 2; 0 skips it)')
    p.add_argument('--slow-profile', default='dtpm_slow',
                   choices=sorted(profiles.PROFILES),
                   help='hardware profile of the second Table I')
    p.add_argument('--output', default='results/bench',
                   help='results directory')
    p.add_argument('--skip-rss', action='store_true')
    p.add_argument('--latency-profile', choices=sorted(profiles.PROFILES),
                   help='delay every command of both hosts\' TPMs to this '
                        'hardware profile (end-to-end at hardware speed; '
                        'seconds per migration)')
    args = p.parse_args(argv)
    if args.table1_runs < 1 or args.slow_runs < 0 or args.libvirt_runs < 1:
        p.error('--table1-runs and --libvirt-runs must be >= 1 and '
                '--slow-runs >= 0')
    os.environ.setdefault('TSS2_LOG', 'all+NONE')
    logging.getLogger('nova_vtpm_migration').setLevel(logging.ERROR)
    levels = [int(x) for x in args.levels.split(',') if x]
    began = time.monotonic()
    report: dict[str, ty.Any] = {'machine': _machine(), 'runs': args.runs,
                                 'libvirt_runs': args.libvirt_runs,
                                 'latency_profile': args.latency_profile}
    report['table1_setup'] = table1.setup(args.table1_runs, args.slow_runs,
                                          args.slow_profile)
    with testbed_mod.Testbed(HOSTS) as tb:
        for ctx in tb.tpm_contexts.values():
            ctx.meter.set_latency_profile(args.latency_profile)
        print(f'protocol phases x{args.runs} ...', flush=True)
        t = time.monotonic()
        report['protocol'] = protocol_phases(tb, args.runs)
        report['tpm_commands'] = report['protocol'].pop('histograms')
        report['projection'] = report['protocol'].pop('projection')
        _step(report, 'protocol', t)
        print(f'live migration through Nova on real libvirt, secured vs '
              f'plain x{args.libvirt_runs} ...', flush=True)
        t = time.monotonic()
        report['libvirt_migration'] = live_migration.measure(
            tb, args.libvirt_runs, args.runs)
        _step(report, 'libvirt_migration', t)
        print(f'Table I {levels} x{args.table1_runs} (P, T, A) on swtpm ...',
              flush=True)
        t = time.monotonic()
        report['table1'] = table1.measure(tb, levels, args.table1_runs)
        _step(report, 'table1', t)
        if args.slow_runs:
            print(f'Table I {levels} x{args.slow_runs} under '
                  f'{args.slow_profile} ...', flush=True)
            t = time.monotonic()
            report[f'table1_{args.slow_profile}'] = table1.measure(
                tb, levels, args.slow_runs, profile=args.slow_profile)
            _step(report, f'table1_{args.slow_profile}', t)
        print(f'sealed secret at rest x{args.runs} ...', flush=True)
        t = time.monotonic()
        report['secret_at_rest'] = secret_at_rest(tb, args.runs)
        _step(report, 'secret_at_rest', t)
    if not args.skip_rss:
        print('plugin RSS ...', flush=True)
        t = time.monotonic()
        report['rss'] = plugin_rss()
        _step(report, 'rss', t)
    report['targets'] = targets.evaluate(report)
    report['durations_s']['total'] = round(time.monotonic() - began, 1)
    from tools.bench import report as report_mod
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'report.json').write_text(json.dumps(report, indent=2))
    markdown = report_mod.markdown(report)
    (out / 'report.md').write_text(markdown)
    report_mod.plots(report, out)
    print(markdown)
    print(f"make bench took {report['durations_s']['total']:.0f} s",
          flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
