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

"""Markdown report and PNG plots of ``make bench`` results."""

import pathlib
import typing as ty

from tools.bench import commands
from tools.bench import table1_report
from tools.bench import targets


def _f(value: float, digits: int = 1) -> str:
    return f'{value:.{digits}f}'


def _verdict(ok: bool) -> str:
    return 'met' if ok else 'MISSED'


def _breakdown(b: ty.Mapping[str, ty.Any] | None) -> list[str]:
    """Where the host time of phase 1+2 goes (see :mod:`.breakdown`)."""
    if not b:
        return []
    cats = b['host_ms_by_category']
    return ['', f"Phase 1+2: {_f(b['wall_ms'])} ms = TPM {_f(b['tpm_ms'])} "
            f"ms + host work {_f(b['host_ms'])} ms, of which (cProfile "
            f"shares over {b['runs']} extra runs) " + ', '.join(
                f'{name} {_f(ms)}' for name, ms in
                sorted(cats.items(), key=lambda kv: -kv[1]))
            + f" ms; {b['fsyncs']:.0f} fsyncs and "
            f"{b['sqlite_statements']:.0f} SQLite statements per phase 1+2."]


#: Rows of the live migration table: metric, label on libvirt, label on
#: the data plane.
_LM_ROWS = (
    ('end_to_end_ms', 'end-to-end ms', 'end-to-end ms'),
    ('migration_ms', 'libvirt migration time ms (domjobinfo)',
     'QEMU total-time ms'),
    ('downtime_ms', 'libvirt downtime ms (domjobinfo)', 'QEMU downtime ms'),
    ('phase1_ms', 'phase 1 ms (attestation)', 'phase 1 ms (attestation)'),
    ('phase2_ms', 'phase 2 ms (key transfer)', 'phase 2 ms (key transfer)'),
    ('commit_ms', 'commit ms', 'commit ms'),
)


def _spread(row: ty.Mapping[str, float] | None) -> str:
    if row is None:
        return '-'
    return (f"{_f(row['median'])} [{_f(row['minimum'])}-"
            f"{_f(row['maximum'])}]")


def _live_migration(report: ty.Mapping[str, ty.Any]) -> list[str]:
    """Part 2: secured vs plain live migration, on libvirt or (where its
    daemons cannot run) on the data plane."""
    lm = report.get('libvirt_migration')
    if not lm:
        return []
    on_libvirt = lm['source'] == 'libvirt'
    if on_libvirt:
        lines = [
            '', '## Live migration through Nova on real libvirt, secured vs '
            'plain (alternating runs)', '',
            f"{lm['runs']} runs of each mode, alternating, the order rotating"
            " (plain first, then secured first, ...), measured side by side "
            "in this run: Nova's in-process control plane, two computes per "
            'mode on their own libvirtd (QEMU TCG guests, swtpm vTPMs, '
            'native TLS). **plain**: upstream Nova\'s `host`-mode vTPM live '
            'migration on the stock `LibvirtDriver`; **secured**: this '
            "plugin's driver with `vtpm_migration:attested=required`. "
            'End-to-end: `os-migrateLive` until Nova saves the migration '
            "`completed`; libvirt's migration time and downtime: `virsh "
            'domjobinfo --completed` on the destination; phases: the '
            "plugin's calls (PhaseTimer). Phase 1 reuses the attested "
            'session of the same two hosts while it lives (the plugin\'s '
            'default): only the first run in each direction attests '
            'afresh, later ones reuse its session (compare min and max).']
        if report.get('latency_profile'):
            lines += ['', 'The latency profile is not applied here (the '
                      'computes have their own swtpm host TPMs).']
    else:
        lines = [
            '', '## Live migration, secured vs plain, on the data plane '
            '(alternating runs)', '',
            'Real libvirt daemons cannot run on this machine: '
            f"{lm['unavailable_reason']}. This part falls back to the data "
            'plane (QEMU, QMP and swtpm driven directly, no Nova, no '
            f"libvirt): {lm['runs']} runs of each mode, alternating; plain "
            'hands the key to the destination directly as upstream `host` '
            'mode does; every secured run attests afresh.']
    lines += ['', '| metric | plain median [min-max] | secured median '
              '[min-max] | secured/plain |', '|---|---|---|---|']
    for key, libvirt_label, dataplane_label in _LM_ROWS:
        secured = lm['secured'].get(key)
        if secured is None:
            continue
        ratio = lm['ratio'].get(key)
        lines.append(
            f"| {libvirt_label if on_libvirt else dataplane_label} | "
            f"{_spread(lm['plain'].get(key))} | {_spread(secured)} | "
            f"{'-' if ratio is None else _f(ratio, 2)} |")
    return lines


def _targets(rows: list[dict[str, ty.Any]]) -> list[str]:
    lines = ['', '## Targets', '',
             '| target | key in report.json | goal | measured | | cause |',
             '|---|---|---|---|---|---|']
    for t in rows:
        got = 'n/a' if t['measured'] is None else _f(t['measured'], 2)
        unit = f" {t['unit']}" if t['unit'] else ''
        lines.append(f"| {t['name']} | `{t['key']}` | <= {t['goal']:g}"
                     f"{unit} | {got}{unit} | {_verdict(t['met'])} | "
                     f"{t['cause']} |")
    return lines


def markdown(report: ty.Mapping[str, ty.Any]) -> str:
    """Render the benchmark report as Markdown."""
    m = report['machine']
    lines = [
        '# nova-vtpm-migration benchmark',
        '',
        f"Machine: {m['machine']}, {m['cpus']} CPUs, Python {m['python']}, "
        f"kernel {m['kernel']}; swtpm 0.7.1 host TPMs, QEMU 7.2 TCG guests; "
        f"{m['date']}; {report['runs']} runs per measurement (medians, p95)"
        + (f"; every TPM command delayed to the {report['latency_profile']} "
           'profile.' if report.get('latency_profile') else '.'),
        '',
        '## Protocol phases and their TPM floor',
        '',
        '| phase | median ms | p95 ms | TPM ms (median) | TPM commands | '
        'ratio to TPM |',
        '|---|---|---|---|---|---|',
    ]
    proto = report['protocol']
    for name in ('phase1', 'phase2', 'commit', 'phase1+2'):
        row = proto[name]
        lines.append(
            f"| {name} | {_f(row['wall_ms']['median'])} | "
            f"{_f(row['wall_ms']['p95'])} | {_f(row['tpm_ms']['median'])} | "
            f"{row.get('tpm_commands', '')} | {_f(row['ratio_to_tpm'], 2)} |")
    lines += _breakdown(proto['phase1+2'].get('breakdown'))
    lines += commands.markdown(report)
    lines += _live_migration(report)
    lines += table1_report.markdown(report)
    rest = report.get('secret_at_rest')
    if rest:
        lines += [
            '', '## vTPM secret sealed at rest (per guest start)', '',
            '| operation | median ms | p95 ms |', '|---|---|---|',
            f"| open (every guest start) | {_f(rest['open']['median'])} | "
            f"{_f(rest['open']['p95'])} |",
            f"| of which TPM | {_f(rest['open_tpm_ms']['median'])} | "
            f"{_f(rest['open_tpm_ms']['p95'])} |",
            f"| adopt (once per instance and host) | "
            f"{_f(rest['adopt']['median'])} | {_f(rest['adopt']['p95'])} |",
            '', 'Upstream `host` mode reads a persistent libvirt secret '
            'instead (no TPM work, but plaintext at rest).']
    rss = report.get('rss')
    if rss:
        lines += ['', '## Memory', '',
                  f"Extra RSS of the plugin over nova's libvirt driver in one "
                  f"process: {_f(rss['extra_mib'])} MiB (that process holds "
                  f"two hosts' engines and TPM contexts)."]
    lines += _targets(report.get('targets') or targets.evaluate(report))
    durations = report.get('durations_s')
    if durations:
        lines += ['', 'Duration of this run (s): ' + ', '.join(
            f'{name} {sec:.0f}' for name, sec in durations.items()) + '.']
    return '\n'.join(lines) + '\n'


def plots(report: ty.Mapping[str, ty.Any], out: pathlib.Path) -> None:
    """Write ``phases.png`` and the Table I plots into *out*."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    proto = report['protocol']
    names = ['phase1', 'phase2', 'commit']
    wall = [proto[n]['wall_ms']['median'] for n in names]
    tpm = [proto[n]['tpm_ms']['median'] for n in names]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], wall, 0.4, label='protocol (wall)')
    ax.bar([i + 0.2 for i in x], tpm, 0.4, label='inside the TPMs')
    ax.set_xticks(list(x), names)
    ax.set_ylabel('ms (median)')
    ax.set_title('Protocol phases vs their TPM floor (swtpm)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'phases.png', dpi=100)
    plt.close(fig)

    table1_report.plot(report, out)
