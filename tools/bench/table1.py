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

"""The paper's Table I: K simultaneous live migrations between two hosts.

For every K and repetition, one run per column of :mod:`.modes` (P, T,
A), in an order that rotates between repetitions. A run:

1. starts K fresh guests (QEMU TCG, swtpm vTPM) on the source, their keys
   in its key store (not timed);
2. configures the engines for the mode and forgets every attestation
   (:func:`.modes.configure`): each run starts with a fresh dual
   attestation;
3. releases K threads at once (a barrier) and times until every
   migration is committed (wall time); meanwhile both host TPMs are
   metered at the TCTI and the engines' request handling is probed
   (:class:`.modes.RequestProbe`);
4. removes the guests and the keys (not timed).

Nothing in the harness serialises the K migrations: each has its thread,
its guest processes and its own call into the data plane.

With a latency profile, the profile's per-command delays are applied to
every host TPM command of the timed part (the meter's delay injection at
the TCTI, :class:`nova_vtpm_migration.tpm.meter.MeteredTcti`); P sends no
host TPM command and runs unchanged.

Ratios are paired: within a repetition the three runs ran back to back,
so ``a_over_t`` is the median over repetitions of A/T of that repetition
(``added_ms``: of A - P), and their ``*_range`` the smallest and largest
of them.
"""

import concurrent.futures
import statistics
import threading
import time
import typing as ty

from nova_vtpm_migration.protocol import states
from nova_vtpm_migration.tpm import meter
from nova_vtpm_migration.tpm import profiles
from tests.support.dataplane import migration
from tests.support.dataplane import testbed as testbed_mod
from tools.bench import modes
from tools.bench import stats

HOSTS = ('bench-a', 'bench-b')
#: ``[vtpm_migration] tpm_lock_timeout``'s default: how long a host waits
#: for its TPM (the test bed's own is shorter).
TPM_LOCK_TIMEOUT = 30.0
#: Seconds the QEMU part of one migration may take.
QEMU_TIMEOUT = 120.0
#: Guests started at once while preparing a run (not timed).
_STARTERS = 4
_PHASES = (migration.PHASE_ATTEST, migration.PHASE_TRANSFER,
           migration.PHASE_DEST_START, migration.PHASE_QEMU,
           migration.PHASE_COMMIT, migration.PHASE_TOTAL)
_ROLES = ('source', 'destination')


class RunSample:
    """What one run of one mode at one K measured.

    :ivar mode: the :class:`.modes.Mode`.
    :ivar k: simultaneous migrations.
    :ivar wall_ms: from the release of the K threads until all ended.
    :ivar failed: migrations not committed.
    :ivar errors: their error types.
    :ivar phases_ms: per phase, the median over the K migrations.
    :ivar tpm: ``source``/``destination`` -> that TPM's commands.
    :ivar endpoints: ``source``/``destination`` -> its engine's requests.
    """

    def __init__(self, mode: modes.Mode, k: int, wall_ms: float,
                 results: list[migration.MigrationResult],
                 tpm: meter.Measurement,
                 endpoints: dict[str, modes.EndpointStats]) -> None:
        self.mode = mode
        self.k = k
        self.wall_ms = wall_ms
        self.failed = sum(not r.committed for r in results)
        self.errors = sorted({r.error_type or 'unknown' for r in results
                              if not r.committed})
        self.phases_ms = {
            p: statistics.median([r.phases_ms.get(p, 0.0) for r in results])
            for p in _PHASES}
        self.tpm = {role: tpm[role] for role in _ROLES}
        self.endpoints = {role: endpoints[h]
                          for role, h in zip(_ROLES, HOSTS, strict=True)}


def _start_guests(tb: testbed_mod.Testbed, k: int) -> list[str]:
    with concurrent.futures.ThreadPoolExecutor(_STARTERS) as pool:
        return list(pool.map(
            lambda _: tb.new_instance(HOSTS[0], provision_vtpm=False)[0],
            range(k)))


def _remove(tb: testbed_mod.Testbed, instances: list[str]) -> None:
    gone = (None, states.KeyState.DESTROYED)
    for inst in instances:
        for name in HOSTS:
            tb.hosts[name].destroy_instance(inst)
            keystore = tb.engines[name].keystore
            if keystore.state(inst) not in gone:
                keystore.destroy(inst)


def _failure(inst: str, mode: modes.Mode,
             exc: Exception) -> migration.MigrationResult:
    return migration.MigrationResult(instance=inst, mode=mode.name,
                                     error=str(exc),
                                     error_type=type(exc).__name__)


def run_once(tb: testbed_mod.Testbed, probe: modes.RequestProbe,
             mode: modes.Mode, k: int, session_lifetime: float,
             profile: str | None = None) -> RunSample:
    """One run: K simultaneous migrations of *mode* from the first host
    to the second (see the module text).

    :param session_lifetime: the engines' session lifetime in A.
    :param profile: delay the host TPMs' commands to this profile.
    """
    instances = _start_guests(tb, k)
    ctxs = [tb.tpm_contexts[h] for h in HOSTS]
    try:
        modes.configure(tb.engines.values(), mode, session_lifetime)
        probe.fresh_epoch_per_handshake = mode is modes.TRADITIONAL
        released = [0.0]
        barrier = threading.Barrier(
            k, action=lambda: released.__setitem__(0, time.perf_counter()))

        def one(inst: str) -> migration.MigrationResult:
            barrier.wait()
            try:
                return modes.migrate(tb, mode, inst, HOSTS[0], HOSTS[1],
                                     QEMU_TIMEOUT)
            except Exception as exc:   # noqa: BLE001 - counted as failed
                return _failure(inst, mode, exc)

        previous = [ctx.meter.latency_profile for ctx in ctxs]
        if profile is not None:
            for ctx in ctxs:
                ctx.meter.set_latency_profile(profile)
        try:
            with meter.measure(dict(zip(_ROLES, (c.meter for c in ctxs),
                                        strict=True))) as tpm, \
                    probe.recording() as endpoints, \
                    concurrent.futures.ThreadPoolExecutor(k) as pool:
                results = list(pool.map(one, instances))
                wall_ms = (time.perf_counter() - released[0]) * 1000.0
        finally:
            for ctx, before in zip(ctxs, previous, strict=True):
                ctx.meter.latency_profile = before
    finally:
        probe.fresh_epoch_per_handshake = False
        _remove(tb, instances)
    return RunSample(mode, k, wall_ms, results, tpm, endpoints)


def _quotes(snap: meter.MeterSnapshot) -> int:
    return snap.counts.get('Quote', 0)


def _column(samples: list[RunSample]) -> dict[str, ty.Any]:
    """One mode's entry at one K (over its repetitions)."""
    k = samples[0].k
    total: meter.MeterSnapshot = meter.MeterSnapshot()
    for s in samples:
        for role in _ROLES:
            total = total + s.tpm[role]
    migrations = len(samples) * k
    per_migration = {c: n / migrations
                     for c, n in total.class_counts.items()}
    return {
        'wall_ms': stats.summarize([s.wall_ms for s in samples]).as_dict(),
        'failed': sum(s.failed for s in samples),
        'errors': sorted({e for s in samples for e in s.errors}),
        'phases_ms': {p: round(statistics.median(
            [s.phases_ms[p] for s in samples]), 1) for p in _PHASES},
        'tpm_commands_per_migration': round(total.total / migrations, 2),
        'tpm_commands': {c: round(n, 3) for c, n in per_migration.items()},
        'quotes_per_migration': round(_quotes(total) / migrations, 3),
        'tpm_busy_ms': {role: round(statistics.median(
            [s.tpm[role].total_seconds * 1000.0 for s in samples]), 1)
            for role in _ROLES},
        'tpm_ms_per_migration': {
            'measured': round(total.total_seconds * 1000.0 / migrations, 2),
            **{name: round(profiles.project(
                p, total.class_counts).ms / migrations, 1)
               for name, p in profiles.PROFILES.items()}},
        'destination_requests': {
            'requests': statistics.median(
                [s.endpoints['destination'].requests for s in samples]),
            'max_in_flight': max(s.endpoints['destination'].max_in_flight
                                 for s in samples),
            'state_lock_taken': statistics.median(
                [s.endpoints['destination'].state_lock_taken
                 for s in samples]),
            'busy_ms': round(statistics.median(
                [s.endpoints['destination'].busy_seconds * 1000.0
                 for s in samples]), 1),
        },
    }


def _paired(reps: list[dict[str, RunSample]], fn: ty.Callable[
        [dict[str, RunSample]], float]) -> tuple[float | None,
                                                 list[float]]:
    """Median and [min, max] of *fn* over the repetitions in which no
    migration failed (``None`` and ``[]`` if there is none)."""
    values = [fn(r) for r in reps if not any(s.failed for s in r.values())]
    if not values:
        return None, []
    summary = stats.summarize(values)
    return summary.median, [summary.minimum, summary.maximum]


def level(reps: list[dict[str, RunSample]]) -> dict[str, ty.Any]:
    """The report entry of one K from its repetitions (mode name ->
    sample of each)."""
    out: dict[str, ty.Any] = {
        m.name: _column([r[m.name] for r in reps]) for m in modes.MODES}
    a, t, p = (modes.ATTESTED.name, modes.TRADITIONAL.name,
               modes.PLAIN.name)
    for key, fn in (
            ('a_over_t', lambda r: stats.ratio(r[a].wall_ms, r[t].wall_ms)),
            ('a_over_p', lambda r: stats.ratio(r[a].wall_ms, r[p].wall_ms)),
            ('t_over_p', lambda r: stats.ratio(r[t].wall_ms, r[p].wall_ms)),
            ('added_ms', lambda r: r[a].wall_ms - r[p].wall_ms),
            ('t_added_ms', lambda r: r[t].wall_ms - r[p].wall_ms)):
        median, spread = _paired(reps, fn)
        out[key] = None if median is None else round(median, 3)
        out[f'{key}_range'] = [round(v, 3) for v in spread]
    out['repetitions'] = len(reps)
    out['complete_repetitions'] = sum(
        not any(s.failed for s in r.values()) for r in reps)
    return out


def measure(tb: testbed_mod.Testbed, levels: list[int], runs: int, *,
            profile: str | None = None,
            progress: ty.Callable[[str], None] = print
            ) -> dict[str, ty.Any]:
    """Table I: for each K in *levels*, *runs* repetitions of P, T, A.

    :param profile: delay every host TPM command of the timed part to
        this :mod:`~nova_vtpm_migration.tpm.profiles` profile.
    :param progress: called with a line after each repetition.
    :returns: str(K) -> :func:`level`.
    """
    engines = list(tb.engines.values())
    session_lifetime = engines[0].session_lifetime
    ctxs = [tb.tpm_contexts[h] for h in HOSTS]
    lock_timeouts = [c.lock_timeout for c in ctxs]
    probe = modes.RequestProbe(tb)
    probe.install()
    for ctx in ctxs:
        ctx.lock_timeout = TPM_LOCK_TIMEOUT
    out: dict[str, ty.Any] = {}
    try:
        # Not recorded: keys, sessions and caches that exist after the
        # first secured migration of a host pair exist in every run.
        run_once(tb, probe, modes.ATTESTED, 1, session_lifetime)
        for k in levels:
            reps: list[dict[str, RunSample]] = []
            for rep in range(runs):
                row: dict[str, RunSample] = {}
                for mode in modes.rotation(rep):
                    row[mode.name] = run_once(tb, probe, mode, k,
                                              session_lifetime, profile)
                reps.append(row)
                progress(f'  K={k} rep {rep + 1}/{runs}: ' + ', '.join(
                    f'{m.letter} {row[m.name].wall_ms:.0f} ms'
                    + (f' ({row[m.name].failed} failed)'
                       if row[m.name].failed else '')
                    for m in modes.rotation(rep)))
            out[str(k)] = level(reps)
            out[str(k)]['order'] = [''.join(m.letter for m in
                                            modes.rotation(r))
                                    for r in range(runs)]
    finally:
        probe.uninstall()
        modes.configure(engines, modes.ATTESTED, session_lifetime)
        for ctx, timeout in zip(ctxs, lock_timeouts, strict=True):
            ctx.lock_timeout = timeout
    return out


def setup(runs: int, slow_runs: int, slow_profile: str) -> dict[str, ty.Any]:
    """The ``table1_setup`` section: what the columns are and how the
    tables were measured."""
    prof = profiles.get(slow_profile)
    return {
        'modes': {m.name: {'letter': m.letter,
                           'description': m.description}
                  for m in modes.MODES},
        'runs': runs,
        'slow_runs': slow_runs,
        'slow_profile': slow_profile,
        'slow_profile_description': prof.description,
        'slow_profile_sources': prof.sources(),
        'tpm_lock_timeout_s': TPM_LOCK_TIMEOUT,
        'definition': (
            'K simultaneous live migrations from one host to the other, '
            'wall time from their release until all are committed. Each '
            '(mode, K, repetition) run starts with fresh guests and without '
            'any attested session or responder epoch. Ratios and added_ms '
            'are medians over repetitions of the values of one repetition '
            '(P, T and A back to back, order rotating); *_range: smallest '
            'and largest.'),
    }
