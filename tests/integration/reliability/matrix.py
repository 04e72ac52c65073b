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



"""The fault-injection matrix: one migration per (step, fault) cell with
real host processes, then recovery and the invariant check."""

import collections
import dataclasses
import os
import time
import typing as ty

from tests.integration.reliability import procs
from tests.support import faults

#: Cells run by ``make test`` (every fault kind, the critical steps); the
#: campaign (``NVM_FAULT_MATRIX=full``) runs all of :func:`faults.cells`.
SUBSET = (
    ('msg.transfer', 'kill_src'), ('msg.transfer', 'kill_dst'),
    ('msg.commit', 'kill_dst'), ('msg.commit', 'lost'),
    ('msg.transfer', 'timeout'), ('msg.prepare', 'duplicated'),
    ('msg.transfer', 'reordered'), ('msg.abort (abort)', 'lost'),
    ('dst.tpm.unwrap', 'tpm_error'), ('src.tpm.sign', 'kill_src'),
    ('src.journal.TRANSFERRING', 'kill_src'),
    ('src.journal.COMMITTING', 'disk_full'),
    ('dst.journal.INSTALLED', 'io_error'),
)


def selected_cells() -> list[tuple[faults.Step, str]]:
    """The cells of this run."""
    cells = faults.cells()
    if os.environ.get('NVM_FAULT_MATRIX') == 'full':
        return cells
    wanted = set(SUBSET)
    return [(s, f) for s, f in cells if (s.label, f) in wanted]


@dataclasses.dataclass
class CellResult:
    step: faults.Step
    fault: str
    passed: bool
    outcome: str
    seconds: float
    detail: str
    findings: list[str] = dataclasses.field(default_factory=list)


#: Undocumented exceptions seen at the engine API that are known and
#: reported (each pinned by a strict xfail test): text in "<host>.<op>:
#: <type>: <message>" -> description. A cell that keeps the invariant but
#: shows one survives, marked with ``*``. Empty: every one found so far is
#: fixed and has a regression test (``test_disk_errors.py``).
KNOWN: dict[str, str] = {}

#: Results of this run, for the printed table.
RESULTS: dict[tuple[str, str], CellResult] = collections.OrderedDict()


def run_cell(tpms: dict[str, procs.TpmHost], policy_doc: dict[str, ty.Any],
             step: faults.Step, fault: str) -> CellResult:
    """Run one cell: migrate with the fault, restart what died, heal,
    recover until settled, check the invariant."""
    started = time.monotonic()
    injecting, plan = faults.FaultPlan.for_cell(step, fault)
    cluster = procs.ProcCluster(tpms, policy_doc)
    events: list[str] = []
    try:
        fill = None
        if fault == 'disk_full' and not os.environ.get('NVM_FAKE_DISK_FULL'):
            fill = cluster.mount_tmpfs(injecting)
        events.append('real ENOSPC on tmpfs' if fill else
                      'SQLITE_FULL injected' if fault == 'disk_full' else
                      f'fault in {injecting}')
        for name in ('src', 'dst'):
            faulty = name == injecting
            cluster.start(name, plan if faulty else None, wait=False,
                          fill=fill if faulty else None)
        for name in ('src', 'dst'):
            cluster.wait_ready(name)
        inst, mid, secret = procs.new_ids()
        cluster.ctl('src', 'provision', instance=inst, secret=secret.hex())
        result = cluster.try_ctl('src', 'migrate', instance=inst,
                                 peer='dst', migration_id=mid)
        events.append(_event('migrate', result))
        if result.get('ok'):
            if step.flow == 'commit':
                # the VM migration completed: the guest runs on dst now
                cluster.hand_over(inst, 'dst')
            result = cluster.try_ctl('src', step.flow, migration_id=mid)
            events.append(_event(step.flow, result))
        fired = False
        for name in ('src', 'dst'):
            if cluster.responsive(name):
                fired |= (name == injecting and
                          cluster.ctl(name, 'ping')['fired'])
            else:
                fired |= name == injecting
                events.append(f'restart {name}')
                cluster.start(name)
        events.append('fault fired' if fired else 'FAULT NOT FIRED')
        cluster.free_space()
        for name in ('src', 'dst'):
            cluster.ctl(name, 'heal')
        for _round in range(3):
            for name in ('src', 'dst'):
                cluster.ctl(name, 'recover')
            states = [s for n in ('src', 'dst') for _m, _r, s in
                      cluster.ctl(n, 'migrations')['migrations']]
            if all(s in procs.FINAL for s in states):
                break
        checked = procs.check_invariant(cluster, ('src', 'dst'), inst,
                                        secret, mid)
        for name in ('src', 'dst'):
            cluster.undocumented += [
                f'{name}.handle: {e}' for e in
                cluster.ctl(name, 'internal_errors')['errors']]
        problems = list(checked.problems)
        findings = sorted({KNOWN[k] for u in cluster.undocumented
                           for k in KNOWN if k in u})
        unknown = [u for u in cluster.undocumented
                   if not any(k in u for k in KNOWN)]
        if unknown:
            problems.append('undocumented error: ' + '; '.join(unknown))
        if not fired:
            problems.append('the fault never fired (the step was not '
                            'reached): the cell tests nothing')
        detail = '; '.join(events + checked.notes + problems + findings)
        res = CellResult(step, fault, not problems, checked.outcome,
                         time.monotonic() - started, detail, findings)
    except Exception as exc:
        res = CellResult(step, fault, False, 'error',
                         time.monotonic() - started,
                         f'{"; ".join(events)}; {type(exc).__name__}: {exc}')
    finally:
        cluster.cleanup()
    RESULTS[(step.label, fault)] = res
    return res


def _event(what: str, result: dict[str, ty.Any]) -> str:
    if result.get('ok'):
        return f'{what} ok'
    if result.get('died'):
        return f'{what}: host killed'
    return f"{what}: {result.get('error')}"


def table() -> str:
    """The matrix as text: step x fault -> PASS / FAIL / n/a / (not run).
    """
    short = {'kill_src': 'kill src', 'kill_dst': 'kill dst',
             'lost': 'lost', 'duplicated': 'dup', 'reordered': 'reorder',
             'timeout': 'timeout', 'tpm_error': 'TPM err',
             'disk_full': 'disk full', 'io_error': 'I/O err'}
    width = max(len(s.label) for s in faults.STEPS) + 1
    head = 'step'.ljust(width) + ''.join(
        short[f].center(10) for f in faults.FAULTS)
    lines = [head, '-' * len(head)]
    for step in faults.STEPS:
        row = step.label.ljust(width)
        for fault in faults.FAULTS:
            if not faults.applicable(step, fault):
                mark = 'n/a'
            else:
                res = RESULTS.get((step.label, fault))
                mark = '.' if res is None else (
                    f'ok:{res.outcome[0].upper()}'
                    + ('*' if res.findings else '') if res.passed
                    else 'FAIL')
            row += mark.center(10)
        lines.append(row)
    done = list(RESULTS.values())
    passed = sum(r.passed for r in done)
    lines.append(f'cells survived: {passed}/{len(done)} run '
                 f'({len(faults.cells())} in the full matrix); '
                 f'ok:C = committed, ok:A = aborted, * = with a known '
                 f'finding, . = not run; {sum(r.seconds for r in done):.0f}'
                 f' s')
    for finding in sorted({f for r in done for f in r.findings}):
        cells = sum(finding in r.findings for r in done)
        lines.append(f'*: {finding} ({cells} cells)')
    for r in done:
        if not r.passed:
            lines.append(f'FAIL {r.step.label} x {r.fault}: {r.detail}')
    return '\n'.join(lines)
