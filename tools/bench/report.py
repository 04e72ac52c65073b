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

#: The performance goals (reported, not asserted by tests).
TARGETS = {
    'downtime_ratio': 1.05,
    'phase12_to_tpm': 3.0,
    'phase12_p50_ms': 25.0,
    'table1_ratio_30': 1.3,
    'rss_mib': 30.0,
}


def _f(value: float, digits: int = 1) -> str:
    return f'{value:.{digits}f}'


def _verdict(ok: bool) -> str:
    return 'met' if ok else 'MISSED'


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
    lines += commands.markdown(report)
    q = report['qemu']
    lines += [
        '',
        '## QEMU live migration, secured vs plain (alternating runs)',
        '',
        '| metric | plain median | secured median | secured p95 | ratio |',
        '|---|---|---|---|---|',
    ]
    for key, label in (('downtime_ms', 'QEMU downtime ms'),
                       ('qemu_total_ms', 'QEMU total-time ms'),
                       ('end_to_end_ms', 'end-to-end ms')):
        lines.append(
            f"| {label} | {_f(q['plain'][key]['median'])} | "
            f"{_f(q['secured'][key]['median'])} | "
            f"{_f(q['secured'][key]['p95'])} | {_f(q['ratio'][key], 2)} |")
    t1 = report['table1']
    levels = list(t1)
    lines += [
        '',
        "## The paper's Table I: simultaneous migrations between two hosts",
        '',
        '| | ' + ' | '.join(levels) + ' |',
        '|---|' + '---|' * len(levels),
        '| plain (P) wall ms | ' + ' | '.join(
            _f(t1[k]['plain']['wall_ms'], 0) for k in levels) + ' |',
        '| secured (S) wall ms | ' + ' | '.join(
            _f(t1[k]['secured']['wall_ms'], 0) for k in levels) + ' |',
        '| S / P | ' + ' | '.join(_f(t1[k]['ratio'], 2)
                                  for k in levels) + ' |',
        '| failed (P / S) | ' + ' | '.join(
            f"{t1[k]['plain']['failed']} / {t1[k]['secured']['failed']}"
            for k in levels) + ' |',
    ]
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
    p12 = proto['phase1+2']
    top = levels[-1]
    rows = [
        ('QEMU downtime secured/plain', f"<= {TARGETS['downtime_ratio']}",
         _f(q['ratio']['downtime_ms'], 2),
         q['ratio']['downtime_ms'] <= TARGETS['downtime_ratio']),
        ('phase 1+2 / TPM floor', f"<= {TARGETS['phase12_to_tpm']}",
         _f(p12['ratio_to_tpm'], 2),
         p12['ratio_to_tpm'] <= TARGETS['phase12_to_tpm']),
        ('phase 1+2 p50 on swtpm', f"<= {TARGETS['phase12_p50_ms']} ms",
         _f(p12['wall_ms']['median']) + ' ms',
         p12['wall_ms']['median'] <= TARGETS['phase12_p50_ms']),
        (f'Table I S/P at {top}', f"<= {TARGETS['table1_ratio_30']}",
         _f(t1[top]['ratio'], 2),
         t1[top]['ratio'] <= TARGETS['table1_ratio_30']),
    ]
    if rss:
        rows.append(('extra RSS', f"<= {TARGETS['rss_mib']} MiB",
                     _f(rss['extra_mib']) + ' MiB',
                     rss['extra_mib'] <= TARGETS['rss_mib']))
    lines += ['', '## Targets', '', '| target | goal | measured | |',
              '|---|---|---|---|']
    lines += [f'| {name} | {goal} | {got} | {_verdict(ok)} |'
              for name, goal, got, ok in rows]
    return '\n'.join(lines) + '\n'


def plots(report: ty.Mapping[str, ty.Any], out: pathlib.Path) -> None:
    """Write ``phases.png`` and ``table1.png`` into *out*."""
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

    t1 = report['table1']
    levels = list(t1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = range(len(levels))
    ax.bar([i - 0.2 for i in x], [t1[k]['plain']['wall_ms'] for k in levels],
           0.4, label='plain (key handed over)')
    ax.bar([i + 0.2 for i in x],
           [t1[k]['secured']['wall_ms'] for k in levels], 0.4,
           label='secured (attested, wrapped)')
    ax.set_xticks(list(x), levels)
    ax.set_xlabel('simultaneous migrations')
    ax.set_ylabel('ms until all done')
    ax.set_title("Table I: concurrent live migrations")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'table1.png', dpi=100)
    plt.close(fig)
