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

"""Markdown and plots of the Table I sections of a ``make bench`` report
(see :mod:`tools.bench.table1`)."""

import collections.abc
import pathlib
import typing as ty

from tools.bench import modes
from tools.bench import targets

_Report = collections.abc.Mapping[str, ty.Any]
_LETTERS = {m.name: m.letter for m in modes.MODES}


def _ms(summary: _Report) -> str:
    return (f"{summary['median']:.0f} [{summary['minimum']:.0f}-"
            f"{summary['maximum']:.0f}]")


def _ratio(row: _Report, key: str, digits: int = 2) -> str:
    value = row[key]
    if value is None:
        return 'n/a'
    spread = row.get(f'{key}_range') or []
    if not spread:
        return f'{value:.{digits}f}'
    return (f'{value:.{digits}f} [{spread[0]:.{digits}f}-'
            f'{spread[1]:.{digits}f}]')


def _table(table: _Report) -> list[str]:
    lines = ['| K | P ms | T ms | A ms | A/T | A/P | A - P ms | '
             'failed P/T/A | orders |',
             '|---|---|---|---|---|---|---|---|---|']
    for k in sorted(table, key=int):
        row = table[k]
        failed = '/'.join(str(row[m.name]['failed']) for m in modes.MODES)
        lines.append(
            f"| {k} | {_ms(row['plain']['wall_ms'])} | "
            f"{_ms(row['traditional']['wall_ms'])} | "
            f"{_ms(row['attested']['wall_ms'])} | {_ratio(row, 'a_over_t')} "
            f"| {_ratio(row, 'a_over_p')} | {_ratio(row, 'added_ms', 0)} | "
            f"{failed} | {' '.join(row.get('order', []))} |")
    return lines


def _calibration(table: _Report) -> list[str]:
    """At K=1, A and T do the same work: their ratio is the noise."""
    row = table.get('1')
    if row is None or row['a_over_t'] is None:
        return []
    t, a = row['traditional'], row['attested']
    t_cmds = t['tpm_commands_per_migration']
    return ['', f"At K=1 A and T do the same work (one full dual "
            f"attestation and one transfer: {t_cmds:.0f} and "
            f"{a['tpm_commands_per_migration']:.0f} TPM commands, "
            f"{t['quotes_per_migration']:.0f} and "
            f"{a['quotes_per_migration']:.0f} quotes), so their ratio there, "
            f"{_ratio(row, 'a_over_t')}, is the noise of the machine."]


def _per_migration(table: _Report) -> list[str]:
    k = targets.top_level(table)
    row = table[k]
    profiles_ = [p for p in row['attested']['tpm_ms_per_migration']
                 if p != 'measured']
    lines = [
        '', f'TPM work per migration at K={k} (both hosts, counted at the '
        'TCTI) and its projection onto the hardware profiles; phase medians '
        'of the run\'s migrations (T runs phase 1 inside phase 2):', '',
        '| column | TPM commands | quotes | swtpm TPM ms | '
        + ' | '.join(f'{p} ms (projected)' for p in profiles_)
        + ' | phase 1 ms | phase 2 ms | QEMU ms | commit ms |',
        '|---|---|---|---|' + '---|' * len(profiles_) + '---|---|---|---|']
    for m in (modes.TRADITIONAL, modes.ATTESTED):
        c = row[m.name]
        tpm = c['tpm_ms_per_migration']
        ph = c['phases_ms']
        lines.append(
            f"| {m.letter} | {c['tpm_commands_per_migration']:.1f} | "
            f"{c['quotes_per_migration']:.2f} | {tpm['measured']:.1f} | "
            + ' | '.join(f'{tpm[p]:.0f}' for p in profiles_)
            + f" | {ph['phase1_attest']:.1f} | {ph['phase2_transfer']:.1f} | "
            f"{ph['qemu_migration']:.1f} | {ph['commit']:.1f} |")
    return lines


def _serialisation(table: _Report) -> list[str]:
    k = targets.top_level(table)
    row = table[k]
    lines = [
        '', f'How the destination handled the requests of K={k} migrations '
        '(medians over the runs; "in flight": requests inside its engine '
        'at once; "state lock taken": requests that arrived while another '
        'request held the host\'s state lock):', '',
        '| column | requests | max in flight | state lock taken | '
        'destination busy ms | run wall ms |', '|---|---|---|---|---|---|']
    for m in (modes.TRADITIONAL, modes.ATTESTED):
        d = row[m.name]['destination_requests']
        lines.append(
            f"| {m.letter} | {d['requests']:.0f} | {d['max_in_flight']} | "
            f"{d['state_lock_taken']:.0f} | {d['busy_ms']:.0f} | "
            f"{row[m.name]['wall_ms']['median']:.0f} |")
    lines += ['', 'Where concurrent migrations wait for each other:', '']
    lines += [f'- {where}: {what}'
              for where, what in targets.SERIALISATION_POINTS]
    return lines


#: Why Table I stays on the data plane while part 2 runs on libvirt.
WHY_DATAPLANE = (
    'Table I runs on the data plane (QEMU, QMP and swtpm driven directly, '
    'the engines in-process), not through Nova on libvirt: up to 30 '
    'simultaneous TCG guests of 128 MiB each next to four libvirtd and '
    "Nova's in-process services would saturate the 2-core machine and time "
    "the harness; Nova runs one live migration per compute at a time by "
    'default (`max_concurrent_live_migrations = 1`); and column T (every '
    "amortisation off, a new responder per handshake) has no setting in the "
    "plugin's driver. The single-migration comparison through Nova on real "
    'libvirt is the live migration section above.')


def markdown(report: _Report) -> list[str]:
    """The Table I sections of the report (empty without them)."""
    t1 = report.get('table1')
    setup = report.get('table1_setup')
    if not t1 or not setup:
        return []
    lines = ['', "## The paper's Table I: K simultaneous migrations between "
             'two hosts', '']
    lines += [f"- **{m['letter']}** ({name}): {m['description']}"
              for name, m in setup['modes'].items()]
    lines += ['', setup['definition'] + ' Cells: median [min-max] over '
              f"{setup['runs']} repetitions (wall ms until all K are "
              'committed); orders: the column order of each repetition.',
              '', WHY_DATAPLANE, '', '### On swtpm', '']
    lines += _table(t1)
    lines += _calibration(t1)
    lines += _per_migration(t1)
    lines += _serialisation(t1)
    profile = setup['slow_profile']
    slow = report.get(f'table1_{profile}')
    if slow:
        lines += ['', f'### Under the {profile} profile', '',
                  f"Every host TPM command of the timed part delayed to the "
                  f"{profile} figure ({setup['slow_profile_description']}; "
                  f"injected at the TCTI by the TPM meter), "
                  f"repetitions: {setup['slow_runs']}; P sends no host TPM "
                  "command. `added_ms` = A - P of each repetition. TPM lock "
                  'timeout: the product default, '
                  f"{setup['tpm_lock_timeout_s']:g} s. Sources of the "
                  'figures:', '']
        lines += [f'- **{key}**: {text}' for key, text in
                  sorted(setup['slow_profile_sources'].items())]
        lines += ['']
        lines += _table(slow)
        lines += _calibration(slow)
        k = targets.top_level(slow)
        a = slow[k]['attested']
        lines += ['', f"At K={k} the destination TPM was busy "
                  f"{a['tpm_busy_ms']['destination']:.0f} ms of the A run "
                  f"({a['wall_ms']['median']:.0f} ms wall), the source TPM "
                  f"{a['tpm_busy_ms']['source']:.0f} ms."]
    return lines


def plot(report: _Report, out: pathlib.Path) -> None:
    """Write ``table1.png`` (and ``table1_<profile>.png``) into *out*."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    profile = report.get('table1_setup', {}).get('slow_profile', '')
    for key, title in (('table1', 'swtpm'),
                       (f'table1_{profile}', f'{profile} profile')):
        table = report.get(key)
        if not table:
            continue
        levels = sorted(table, key=int)
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        width = 0.27
        for i, m in enumerate(modes.MODES):
            med = [table[k][m.name]['wall_ms']['median'] for k in levels]
            low = [med[j] - table[k][m.name]['wall_ms']['minimum']
                   for j, k in enumerate(levels)]
            high = [table[k][m.name]['wall_ms']['maximum'] - med[j]
                    for j, k in enumerate(levels)]
            ax.bar([j + (i - 1) * width for j in range(len(levels))], med,
                   width, yerr=[low, high], capsize=3,
                   label=f'{m.letter}: {m.name}')
        ax.set_xticks(list(range(len(levels))), levels)
        ax.set_xlabel('simultaneous migrations (K)')
        ax.set_ylabel('ms until all committed (median, min-max)')
        ax.set_title(f'Table I on {title}')
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f'{key}.png', dpi=100)
        plt.close(fig)
