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


def _one(rabbit: inproc.RabbitCluster, src: str, dst: str, inst: str
         ) -> tuple[str, float]:
    started = time.monotonic()
    engine = rabbit.nodes[src].engine
    try:
        handle = engine.migrate_key(inst, dst)
        engine.commit(handle.migration_id)
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
    rss_before = inproc.rss_kb()
    work = []
    for i in range(COUNT):
        src, dst = names[i % 3], names[(i + 1) % 3]
        inst, secret = rabbit.provision(src)
        work.append((src, dst, inst, secret))
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=COUNT) as pool:
        futures = [pool.submit(_one, rabbit, src, dst, inst)
                   for src, dst, inst, _secret in work]
        done, pending = concurrent.futures.wait(futures, timeout=BOUND)
    elapsed = time.monotonic() - started
    assert not pending, f'{len(pending)} migrations still running after '\
                        f'{BOUND} s (deadlock?)'
    results = [f.result() for f in futures]
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
    gc.collect()
    rss_after = inproc.rss_kb()
    times = sorted(t for _o, t in results)
    outcomes = collections.Counter(o for o, _t in results)
    conftest.LOAD_REPORT.update({
        'migrations': COUNT, 'hosts': len(names),
        'outcomes': dict(outcomes),
        'wall time (s)': round(elapsed, 1),
        'throughput (migrations/s)': round(COUNT / elapsed, 2),
        'latency median / p95 / max (s)': (
            f'{statistics.median(times):.2f} / '
            f'{times[int(0.95 * (len(times) - 1))]:.2f} / '
            f'{times[-1]:.2f}'),
        'TPM objects loaded after': loaded,
        'RSS before / after (MiB)': (f'{rss_before / 1024:.0f} / '
                                     f'{rss_after / 1024:.0f}'),
        'TPM commands (per host, whole module)': {
            n.name: sum(c.count for c in n.ctx.stats.values())
            for n in rabbit.nodes.values()},
    })
    assert not problems, problems
    assert all(v == 0 for v in loaded.values()), loaded
    assert rss_after - rss_before < MAX_RSS_GROWTH_KB
    assert outcomes['committed'] >= COUNT // 2, outcomes

