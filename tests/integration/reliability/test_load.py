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



"""Load: concurrent migrations across three hosts over a real RabbitMQ
broker. All complete or abort cleanly, no TPM object is left loaded (no
transient-slot exhaustion), everything finishes within a bound (no
deadlock), and memory stays bounded. ``NVM_LOAD_MIGRATIONS`` sets the
number (``make test``: 10; the campaign: 50); figures are printed at the
end of the run (and written to ``NVM_LOAD_REPORT``)."""

import collections
import concurrent.futures
import gc
import os
import statistics
import time

import pytest

from nova_vtpm_migration import exception
from tests.integration.reliability import conftest
from tests.integration.reliability import inproc

COUNT = int(os.environ.get('NVM_LOAD_MIGRATIONS', '10'))
#: No deadlock: everything must finish within this many seconds.
BOUND = 60 + 6 * COUNT
#: Bounded memory: growth of this process over the run (KiB).
MAX_RSS_GROWTH_KB = 150 * 1024


#: Rounds of COUNT concurrent migrations (memory must not keep growing).
ROUNDS = 2


def _round_of(rabbit: inproc.RabbitCluster, names: list[str]
              ) -> tuple[list[tuple[str, str, str, bytes]],
                         list[tuple[str, float]], float]:
    """COUNT concurrent migrations host i -> i+1; returns the work, the
    (outcome, seconds) of each and the wall time."""
    work = []
    for i in range(COUNT):
        src, dst = names[i % 3], names[(i + 1) % 3]
        inst, secret = rabbit.provision(src)
        work.append((src, dst, inst, secret))
    started = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=COUNT)
    futures = [pool.submit(_one, rabbit, src, dst, inst)
               for src, dst, inst, _secret in work]
    _done, pending = concurrent.futures.wait(futures, timeout=BOUND)
    # NOTE: never wait for a deadlocked thread; fail instead.
    pool.shutdown(wait=not pending, cancel_futures=True)
    assert not pending, (f'{len(pending)} migrations still running '
                         f'after {BOUND} s (deadlock?)')
    elapsed = time.monotonic() - started
    return work, [f.result() for f in futures], elapsed


def _one(rabbit: inproc.RabbitCluster, src: str, dst: str, inst: str
         ) -> tuple[str, float]:
    started = time.monotonic()
    try:
        rabbit.migrate(src, dst, inst)
        outcome = 'committed'
    except exception.VtpmMigrationException as exc:
        outcome = f'aborted: {type(exc).__name__}'
    return outcome, time.monotonic() - started


@pytest.mark.slow
def test_concurrent_migrations(rabbit_cluster: inproc.RabbitCluster
                               ) -> None:
    rabbit = rabbit_cluster
    names = sorted(rabbit.nodes)
    # warm up: one migration per host pair direction (sessions, caches)
    for i, src in enumerate(names):
        inst, _secret = rabbit.provision(src)
        _one(rabbit, src, names[(i + 1) % 3], inst)
    gc.collect()
    rss = [inproc.rss_kb()]
    work: list[tuple[str, str, str, bytes]] = []
    results: list[tuple[str, float]] = []
    walls = []
    for _round in range(ROUNDS):
        round_work, round_results, elapsed = _round_of(rabbit, names)
        work += round_work
        results += round_results
        walls.append(elapsed)
        gc.collect()
        rss.append(inproc.rss_kb())
    rabbit.recover_all()
    assert not rabbit.in_doubt()
    problems = []
    for (src, dst, inst, secret), (outcome, _t) in zip(work, results,
                                                       strict=True):
        holder, bad = rabbit.check(inst, secret)
        problems.extend(bad)
        want = dst if outcome == 'committed' else src
        if holder != want:
            problems.append(f'{inst}: {outcome} but key on {holder}')
        leaks = rabbit.leaks(secret)
        if leaks:
            problems.append(f'plaintext secret in {leaks}')
    loaded = rabbit.loaded_handles()
    times = sorted(t for _o, t in results)
    outcomes = collections.Counter(o for o, _t in results)
    conftest.LOAD_REPORT.update({
        'concurrent migrations': f'{COUNT} x {ROUNDS} rounds',
        'hosts': len(names),
        'outcomes': dict(outcomes),
        'wall time per round (s)': [round(w, 1) for w in walls],
        'throughput (migrations/s)': round(COUNT / min(walls), 2),
        'latency median / p95 / max (s)': (
            f'{statistics.median(times):.2f} / '
            f'{times[int(0.95 * (len(times) - 1))]:.2f} / '
            f'{times[-1]:.2f}'),
        'TPM objects loaded after': loaded,
        'RSS before / after each round (MiB)': [round(r / 1024)
                                                for r in rss],
        'TPM commands (per host, whole module)': {
            n.name: sum(c.count for c in n.ctx.stats.values())
            for n in rabbit.nodes.values()},
    })
    assert not problems, problems
    assert all(v == 0 for v in loaded.values()), loaded
    assert rss[-1] - rss[0] < MAX_RSS_GROWTH_KB
    # bounded: the second round grows much less than the first
    assert rss[-1] - rss[-2] < max(32 * 1024, rss[1] - rss[0])
    assert outcomes['committed'] >= COUNT // 2, outcomes
