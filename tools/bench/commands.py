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

"""TPM command histograms of one migration and their hardware projection.

The benchmark measures every protocol phase with a
:func:`~nova_vtpm_migration.tpm.meter.measure` window on the source's and
the destination's TPM. :func:`histograms` turns the windows of the last
run into the report's ``tpm_commands`` (per phase and side, and summed over
both hosts for one migration) and :func:`projections` into ``projection``:
what the same commands would take on the
:mod:`~nova_vtpm_migration.tpm.profiles` hardware profiles.
"""

import collections.abc
import typing as ty

from nova_vtpm_migration.tpm import meter
from nova_vtpm_migration.tpm import profiles

PHASES = ('phase1', 'phase2', 'commit')
SIDES = ('source', 'destination')
_SHORT = {'source': 'src', 'destination': 'dst'}
#: Which phases one migration consists of: what it costs before the VM
#: migration starts (over an established session, or with a fresh phase 1),
#: and the commit after it.
MIGRATION = {'cached': ('phase2',),
             'fresh': ('phase1', 'phase2'),
             'commit': ('commit',)}
DEFINITION = (
    'TPM commands of one migration on both hosts, counted at the TCTI: '
    'cached = phase 2 (wrapped transfer to the session\'s binding key, '
    'everything before the VM migration starts) over an established '
    'attested session; fresh = phase 1 (dual attestation) + phase 2; '
    'commit = the commit after the VM migration. From the last run '
    '(steady state: keys exist).')

_Run = collections.abc.Mapping[str, meter.Measurement]


def _sum(snaps: collections.abc.Iterable[meter.MeterSnapshot]
         ) -> meter.MeterSnapshot:
    out = meter.MeterSnapshot()
    for snap in snaps:
        out = out + snap
    return out


def _migration(run: _Run, kind: str) -> meter.MeterSnapshot:
    return _sum(run[phase].total for phase in MIGRATION[kind])


def histograms(runs: collections.abc.Sequence[_Run]) -> dict[str, ty.Any]:
    """The ``tpm_commands`` section from per-run phase measurements.

    :param runs: per run, phase name -> the :class:`meter.Measurement`
        with ``source`` and ``destination`` windows.
    """
    last = runs[-1]
    same = sum(1 for run in runs
               if all(run[p].total.class_counts == last[p].total.class_counts
                      for p in PHASES))
    out: dict[str, ty.Any] = {
        'definition': DEFINITION,
        'runs_like_the_last': f'{same} of {len(runs)}',
        'phases': {
            phase: {**{side: last[phase][side].as_dict() for side in SIDES},
                    'both': last[phase].total.as_dict()}
            for phase in PHASES},
    }
    for kind in MIGRATION:
        out[kind] = _migration(last, kind).as_dict()
    return out


def projections(runs: collections.abc.Sequence[_Run]
                ) -> dict[str, ty.Any]:
    """The ``projection`` section: each profile's ms for the last run's
    cached and fresh migration, per phase, with the figures' sources."""
    last = runs[-1]
    out: dict[str, ty.Any] = {}
    for name, profile in profiles.PROFILES.items():
        entry: dict[str, ty.Any] = {'description': profile.description}
        for kind in MIGRATION:
            proj = profiles.project(
                profile, _migration(last, kind).class_counts)
            entry[f'{kind}_ms'] = round(proj.ms, 1)
            if kind == 'fresh':
                entry['fresh_top'] = [
                    {'class': r.command_class, 'count': r.count,
                     'ms': round(r.ms, 1), 'source': r.source}
                    for r in proj.rows[:8]]
        entry['phases_ms'] = {
            phase: {side: round(profiles.project(
                profile, last[phase][side].class_counts).ms, 1)
                for side in SIDES}
            for phase in PHASES}
        entry['sources'] = profile.sources()
        out[name] = entry
    return out


def markdown(report: collections.abc.Mapping[str, ty.Any]) -> list[str]:
    """Report lines: the per-command histogram per phase and side, the
    projections and the sources of their figures."""
    cmds = report.get('tpm_commands')
    proj = report.get('projection')
    if not cmds or not proj:
        return []
    cols = [(p, s) for p in PHASES for s in SIDES]
    names = sorted({n for p, s in cols
                    for n in cmds['phases'][p][s]['commands']})
    head = ' | '.join(f'{p} {_SHORT[s]}' for p, s in cols)
    lines = [
        '', '## TPM commands of one migration (counted at the TCTI)', '',
        cmds['definition'] + f" Runs like the last: "
        f"{cmds['runs_like_the_last']}.", '',
        f'| command | {head} | cached | fresh |',
        '|---|' + '---|' * (len(cols) + 2),
    ]

    def count(section: ty.Mapping[str, ty.Any], name: str) -> str:
        return str(section['commands'].get(name, {}).get('count', '') or '')

    for name in names:
        row = [count(cmds['phases'][p][s], name) for p, s in cols]
        lines.append(f'| {name} | ' + ' | '.join(row) + ' | '
                     + count(cmds['cached'], name) + ' | '
                     + count(cmds['fresh'], name) + ' |')
    totals = [str(cmds['phases'][p][s]['total']) for p, s in cols]
    lines.append('| **total** | ' + ' | '.join(totals) + ' | '
                 f"{cmds['cached']['total']} | {cmds['fresh']['total']} |")
    measured = {k: cmds[k]['ms'] for k in ('cached', 'fresh')}
    lines += [
        '', '### Projected TPM time of one migration on hardware TPMs', '',
        '| TPM | cached ms | fresh ms | commit ms |', '|---|---|---|---|',
        f"| swtpm, measured at the TCTI (this run) | "
        f"{measured['cached']:.1f} | {measured['fresh']:.1f} | "
        f"{cmds['commit']['ms']:.1f} |",
    ]
    for name, entry in proj.items():
        lines.append(f"| {name}: {entry['description']} | "
                     f"{entry['cached_ms']:.0f} | {entry['fresh_ms']:.0f} | "
                     f"{entry['commit_ms']:.0f} |")
    lines += ['', 'Sources of the profile figures '
              '(`nova_vtpm_migration/tpm/profiles.py` gives each command\'s '
              'figure and derivation):', '']
    sources: dict[str, str] = {}
    for entry in proj.values():
        sources.update(entry['sources'])
    lines += [f'- **{key}**: {text}' for key, text in sorted(sources.items())]
    return lines
