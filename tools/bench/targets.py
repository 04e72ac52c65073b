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
import typing as ty

#: The goals (upper bounds).
GOALS = {
    'downtime_ratio': 1.05,
    'phase12_to_tpm': 3.0,
    'phase12_p50_ms': 15.0,
    'table1_a_over_t': 0.5,
    'table1_a_over_p': 1.3,
    'table1_slow_added_ms': 1000.0,
    'rss_mib': 30.0,
}

#: Where the plugin serialises concurrent migrations (at main 2282452).
SERIALISATION_POINTS = (
    ('nova_vtpm_migration/protocol/channel.py:262',
     '`with sess.call_lock:` in Channel._exchange holds the session\'s call '
     'lock across the whole request and the destination\'s handler: the '
     'migrations sharing a session (A) send one request at a time'),
    ('nova_vtpm_migration/protocol/destination.py:84',
     '`with self.ctx.state_lock:` in DestinationRole.dispatch holds the '
     'host\'s state lock across every handler (TPM certify/unwrap/sign, '
     'journal fsyncs): requests on different sessions (T) are handled one '
     'at a time'),
    ('nova_vtpm_migration/protocol/channel.py:153',
     '`with self._peer_lock(peer):` in Channel.attest: one handshake per '
     'peer at a time (shared in A, one per migration in T)'),
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


def _a_over_t_cause(row: _Report, k: str) -> str:
    a, t, p = row['attested'], row['traditional'], row['plain']
    dst = a['destination_requests']
    n = int(k)
    t_minus_a = (t['wall_ms']['median'] - a['wall_ms']['median']) / n
    return (f"T - A is only {_f(t_minus_a)} ms per migration "
            f"(its own phase 1: {t['quotes_per_migration']:.2f} quotes per "
            f"migration vs {a['quotes_per_migration']:.2f}); both pay QEMU "
            f"(P {_f(p['wall_ms']['median'], 0)} ms) and the per-migration "
            f"phase 2 + commit ({a['tpm_commands_per_migration']:.0f} TPM "
            f"commands per migration in A), handled one request at a time "
            f"at the destination (A: {dst['busy_ms']:.0f} ms busy, at most "
            f"{dst['max_in_flight']} in flight)")


def _a_over_p_cause(row: _Report, k: str) -> str:
    a = row['attested']
    per = row['added_ms'] / int(k) if row['added_ms'] is not None else None
    return (f"A - P = {_f(row['added_ms'], 0)} ms at K={k} ({_f(per)} ms "
            f"per migration): the K phase 2 + commit exchanges share the "
            f"run's one session and go one at a time (at most "
            f"{a['destination_requests']['max_in_flight']} request in flight "
            f"at the destination, channel.py:262), keeping the destination "
            f"busy {a['destination_requests']['busy_ms']:.0f} ms")


def _slow_cause(row: _Report, k: str, profile: str) -> str:
    a = row['attested']
    n = int(k)
    busy = a['tpm_busy_ms']['destination']
    goal = GOALS['table1_slow_added_ms']
    return (f"the destination TPM was busy {busy:.0f} ms of the A run at "
            f"K={k} ({busy / n:.0f} ms per migration; "
            f"{a['tpm_commands_per_migration']:.0f} TPM commands per "
            f"migration on both hosts, projected "
            f"{a['tpm_ms_per_migration'][profile]:.0f} ms on {profile}) and "
            f"a TPM runs one command at a time; <= {goal:g} ms at K={k} "
            f"leaves {goal / n:.0f} ms of TPM time per migration")


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
    rss = report.get('rss')
    if rss:
        add('extra RSS', 'rss.extra_mib', GOALS['rss_mib'],
            rss['extra_mib'], unit='MiB')
    return out
