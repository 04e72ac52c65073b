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

"""The performance goals of ``make bench``, judged on its report.

:func:`evaluate` returns one entry per goal for the report's ``targets``
(goal, measured value, met or not, and for a missed goal its cause, from
the numbers of the same run). Reported, never asserted by a test.
"""

import collections.abc
import functools
import typing as ty

from nova_vtpm_migration.tpm import profiles

#: The goals (upper bounds).
GOALS = {
    'downtime_ratio': 1.05,
    'phase12_to_tpm': 3.0,
    'phase12_p50_ms': 15.0,
    'table1_a_over_t': 0.5,
    'table1_a_over_p': 1.3,
    'table1_slow_added_ms': 1000.0,
    'rss_mib': 30.0,
    'tpm_commands.cached': 8,
    'tpm_commands.fresh': 20,
    'tpm_commands.commit': 2,
    'projection.dtpm_slow.cached_ms': 300.0,
    'projection.dtpm_slow.fresh_ms': 1000.0,
    'projection.ftpm.cached_ms': 50.0,
    'projection.ftpm.fresh_ms': 150.0,
}

#: Where concurrent migrations between two hosts wait for each other.
SERIALISATION_POINTS = (
    ('`Coalescer` (`nova_vtpm_migration/protocol/batch_source.py`)',
     'one phase-2 (or commit) exchange towards a peer at a time, by '
     'design: the migrations that arrive while it is in flight leave '
     'together as the next batch (one unwrap and one signature per host '
     'and batch)'),
    ('The host TPM',
     'one command at a time; per instance the source unseals the sealed '
     'secret (Load, PolicyPCR, Unseal, FlushContext) and the destination '
     'seals the received one (Create): kept, they are the per-instance '
     'sealed custody at rest'),
)

_Report = collections.abc.Mapping[str, ty.Any]


def _f(value: float | None, digits: int = 1) -> str:
    return 'n/a' if value is None else f'{value:.{digits}f}'


def top_level(table: _Report) -> str:
    """The largest K of a Table I section."""
    return max(table, key=int)


def _phase12_cause(report: _Report) -> str:
    p12 = report['protocol']['phase1+2']
    b = p12.get('breakdown', {})
    cmds = sum(report['protocol'][p]['tpm_commands']
               for p in ('phase1', 'phase2'))
    cats = b.get('host_ms_by_category', {})
    parts = ', '.join(f'{name} {cats[name]:.1f}' for name in
                      sorted(cats, key=lambda n: -cats[n]))
    return (f"TPM {_f(p12['tpm_ms']['median'])} ms ({cmds:.0f} commands at "
            f"the TCTI) + host work {_f(b.get('host_ms'))} ms: {parts} ms "
            f"({b.get('fsyncs', 0):.0f} fsyncs, "
            f"{b.get('sqlite_statements', 0):.0f} SQLite statements per "
            'phase 1+2; host work split by cProfile)')


def _per_instance(a: _Report) -> str:
    cmds = a.get('tpm_commands', {})
    kept = ('Load', 'PolicyPCR', 'Unseal', 'FlushContext', 'Create/KEYEDHASH')
    per = sum(cmds.get(name, 0.0) for name in kept)
    return (f"{per:.1f} of A's {a['tpm_commands_per_migration']:.1f} TPM "
            'commands per migration are per instance and kept (the source '
            'unseals its sealed copy, the destination seals the received '
            'one: per-instance sealed custody)')


def _a_over_t_cause(row: _Report, k: str) -> str:
    a, t, p = row['attested'], row['traditional'], row['plain']
    n = int(k)
    t_minus_a = (t['wall_ms']['median'] - a['wall_ms']['median']) / n
    return (f"T - A is {_f(t_minus_a)} ms per migration (T: "
            f"{t['quotes_per_migration']:.2f} quotes per migration, A: "
            f"{a['quotes_per_migration']:.2f}); on swtpm a phase 1 costs "
            f"milliseconds while every column pays QEMU (P "
            f"{_f(p['wall_ms']['median'], 0)} ms at K={k}); "
            + _per_instance(a))


def _a_over_p_cause(row: _Report, k: str) -> str:
    a = row['attested']
    per = row['added_ms'] / int(k) if row['added_ms'] is not None else None
    dst = a['destination_requests']
    return (f"A - P = {_f(row['added_ms'], 0)} ms at K={k} ({_f(per)} ms "
            f"per migration): the migrations leave in batches behind the "
            f"exchange in flight ({dst['requests']:.0f} requests at the "
            f"destination for {k} migrations, busy {dst['busy_ms']:.0f} "
            f"ms); " + _per_instance(a))


def _slow_cause(row: _Report, k: str, profile: str) -> str:
    a = row['attested']
    n = int(k)
    busy = a['tpm_busy_ms']['destination']
    goal = GOALS['table1_slow_added_ms']
    return (f"the destination TPM was busy {busy:.0f} ms of the A run at "
            f"K={k}; {a['tpm_commands_per_migration']:.1f} TPM commands "
            f"per migration on both hosts, projected "
            f"{a['tpm_ms_per_migration'][profile]:.0f} ms on {profile}, "
            f"and a TPM runs one command at a time; <= {goal:g} ms at "
            f"K={k} leaves {goal / n:.0f} ms of TPM time per migration. "
            + _per_instance(a))


def _projection_cause(report: _Report, profile: str, kind: str) -> str:
    classes = report['tpm_commands'][kind]['classes']
    proj = profiles.project(profiles.PROFILES[profile], classes)
    rows = ', '.join(f'{r.command_class} x{r.count} {r.ms:.0f} ms'
                     for r in proj.rows)
    return (f'{kind} migration on {profile}: {rows}; what each command is '
            'kept for is in the budget test '
            '(tests/functional/protocol/test_tpm_budget.py)')


def evaluate(report: _Report) -> list[dict[str, ty.Any]]:
    """The goals judged on *report* (see the module text)."""
    out: list[dict[str, ty.Any]] = []

    def add(name: str, key: str, goal: float, measured: float | None,
            cause: ty.Callable[[], str] | None = None,
            unit: str = '') -> None:
        met = measured is not None and measured <= goal
        out.append({'name': name, 'key': key, 'goal': goal, 'unit': unit,
                    'measured': measured, 'met': met,
                    'cause': '' if met or cause is None else cause()})

    lm = report.get('libvirt_migration')
    if lm:
        where = 'libvirt' if lm['source'] == 'libvirt' else 'data plane'
        add(f'live migration downtime secured/plain ({where})',
            'libvirt_migration.ratio.downtime_ms', GOALS['downtime_ratio'],
            lm['ratio']['downtime_ms'])
    p12 = report['protocol']['phase1+2']
    add('phase 1+2 / TPM floor', 'protocol.phase1+2.ratio_to_tpm',
        GOALS['phase12_to_tpm'], p12['ratio_to_tpm'],
        lambda: _phase12_cause(report))
    add('phase 1+2 p50 on swtpm', 'protocol.phase1+2.wall_ms.median',
        GOALS['phase12_p50_ms'], p12['wall_ms']['median'],
        lambda: _phase12_cause(report), 'ms')
    t1 = report.get('table1')
    if t1:
        k = top_level(t1)
        row = t1[k]
        add(f'Table I A/T at {k} (swtpm)', f'table1.{k}.a_over_t',
            GOALS['table1_a_over_t'], row['a_over_t'],
            lambda: _a_over_t_cause(row, k))
        add(f'Table I A/P at {k} (swtpm)', f'table1.{k}.a_over_p',
            GOALS['table1_a_over_p'], row['a_over_p'],
            lambda: _a_over_p_cause(row, k))
    profile = report.get('table1_setup', {}).get('slow_profile', '')
    slow = report.get(f'table1_{profile}')
    if slow:
        k = top_level(slow)
        srow = slow[k]
        add(f'Table I added wall time of A over P at {k} ({profile})',
            f'table1_{profile}.{k}.added_ms', GOALS['table1_slow_added_ms'],
            srow['added_ms'], lambda: _slow_cause(srow, k, profile), 'ms')
    cmds = report.get('tpm_commands')
    if cmds:
        for kind in ('cached', 'fresh', 'commit'):
            key = f'tpm_commands.{kind}'
            add(f'TPM commands, {kind} migration (both hosts)', key,
                GOALS[key], cmds[kind]['total'])
    for profile_name, entry in report.get('projection', {}).items():
        for kind in ('cached', 'fresh'):
            key = f'projection.{profile_name}.{kind}_ms'
            if key in GOALS:
                add(f'projected TPM time, {kind} migration '
                    f'({profile_name})', key, GOALS[key],
                    entry[f'{kind}_ms'],
                    functools.partial(_projection_cause, report,
                                      profile_name, kind), 'ms')
    rss = report.get('rss')
    if rss:
        add('extra RSS', 'rss.extra_mib', GOALS['rss_mib'],
            rss['extra_mib'], unit='MiB')
    return out
